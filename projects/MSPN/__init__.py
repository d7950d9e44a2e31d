"""MSPN: Multi-Stage Pose Network (Li et al., 2019)."""
