"""Per-paper projects built on cvpack (importable as ``projects.<P>.<p>``)."""
