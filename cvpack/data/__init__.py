"""Datasets, top-down transforms and heatmap targets."""
from .meta import COCO, MPII, DatasetMeta, get_dataset_meta  # noqa: F401
