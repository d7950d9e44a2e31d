"""Model of this exp: the shared GCPose / Keypoint R-CNN builder (projects/GCPose/gcpose)."""
from projects.GCPose.gcpose import build_model  # noqa: F401
