"""Whole-image detection data path (GCPose): COCO person boxes + keypoints, resize, flip, padded batches."""
from .dataset import DetectionDataset  # noqa: F401
from .records import load_person_records  # noqa: F401
from .transforms import (  # noqa: F401
    drop_outside_keypoints, hflip_instances, pad_batch, resize_instances, shortest_edge_size,
)
