from projects.HSRNet.hsrnet import build_model  # noqa: F401
