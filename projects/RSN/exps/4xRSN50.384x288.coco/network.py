from projects.RSN.rsn import build_model  # noqa: F401
