from projects.MSPN.mspn import build_model  # noqa: F401
