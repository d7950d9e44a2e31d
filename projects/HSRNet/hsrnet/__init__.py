"""HSRNet / HSR-MSNet pose networks: Simple Baselines with a stride-16 DetNet-style backbone."""
from .config import IMAGENET_URLS, add_hsrnet_config  # noqa: F401
from .model import HSRNetPose, build_model, load_imagenet  # noqa: F401
