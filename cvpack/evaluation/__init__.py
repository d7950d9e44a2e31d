"""Evaluation: COCO keypoint AP (pycocotools), OKS-NMS, MPII PCKh, ``build_evaluator``."""
from .build import build_evaluator  # noqa: F401
from .coco import STAT_NAMES, evaluate_keypoints, format_table, instances_to_coco_results  # noqa: F401
from .nms import oks_iou, oks_matrix, oks_nms, soft_oks_nms  # noqa: F401
from .pckh import evaluate_pckh, pckh_table  # noqa: F401
