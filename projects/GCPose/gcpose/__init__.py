"""GCPose: Keypoint R-CNN with P2-only x1.3 keypoint RoIs and Global Context Modules.

docs/reference/mlpe_hsrnet_gcpose.md §3.
"""
from .model import KeypointRCNN, build_model  # noqa: F401
from .config import add_gcpose_config  # noqa: F401
from .preset import detection_config  # noqa: F401
