"""HSRNet / HSR-MSNet project (see README.md)."""
