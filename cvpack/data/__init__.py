"""Datasets, top-down transforms and heatmap targets.

``build_dataset`` / ``collate`` are cheap to import (datasets are resolved lazily, see :mod:`.build`).
"""
from .build import TOP_DOWN_PIPELINES, build_dataset, collate, dataset_class  # noqa: F401
from .meta import COCO, MPII, DatasetMeta, get_dataset_meta  # noqa: F401
