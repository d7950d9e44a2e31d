"""Exact greedy NMS in plain torch + numpy (replaces torchvision's compiled ``nms`` / ``batched_nms``).

Semantics (docs/reference/mlpe_hsrnet_gcpose.md §4.5): sort by score, descending (stable, so ties keep the
input order); a box is suppressed when its IoU with an already *kept* higher-scored box is strictly
greater than the threshold. IoU uses areas without "+1".

The pairwise IoU of the sorted boxes is computed once and thresholded to an upper-triangular
"suppresses" matrix; the greedy scan then does one vectorised OR per *kept* box (docs/reference/mlpe_hsrnet_gcpose.md
§4.5), in numpy on the CPU (a few ms for 1000 boxes; a tensor-op loop would pay torch's per-op overhead per kept box).
"""
import numpy as np
import torch

from .boxes import pairwise_iou


def _greedy_keep(suppress):
    """Keep mask for boxes sorted by score, from ``suppress[i, j]`` (IoU > thresh, i < j only)."""
    sup = suppress.cpu().numpy()
    removed = np.zeros(sup.shape[0], dtype=bool)
    for i in range(sup.shape[0]):
        if not removed[i]:
            removed |= sup[i]
    return torch.from_numpy(~removed).to(suppress.device)


def nms(boxes, scores, iou_threshold: float):
    """Greedy NMS.

    Args:
        boxes: (N, 4) xyxy; scores: (N,); iou_threshold: suppress when IoU > threshold.
    Returns:
        int64 indices of kept boxes, sorted by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].float()
    suppress = torch.triu(pairwise_iou(b, b) > iou_threshold, diagonal=1)
    return order[_greedy_keep(suppress)]


def batched_nms(boxes, scores, idxs, iou_threshold: float):
    """NMS done independently per group (class or FPN level) ``idxs`` (N,) int.

    Groups are moved apart by ``idx * (max coordinate + 1)`` so they never overlap, then one NMS runs
    (the Detectron2 / torchvision trick). Returns kept indices sorted by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    b = boxes.float()
    span = b.max() - torch.minimum(b.min(), torch.zeros((), device=b.device)) + 1
    shifted = b + (idxs.to(b.dtype) * span)[:, None]
    return nms(shifted, scores, iou_threshold)
