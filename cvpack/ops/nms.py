"""Exact greedy NMS in plain torch (replaces torchvision's compiled ``nms`` / ``batched_nms``).

Semantics (reference_mlpe_hsrnet_gcpose.md §4.5): sort by score, descending (stable, so ties keep the
input order); a box is suppressed when its IoU with an already *kept* higher-scored box is strictly
greater than the threshold. IoU uses areas without "+1".

Vectorised solution of the greedy recursion ``keep[j] = not any(keep[i] and S[i, j] for i < j)``
(S = IoU > thresh, upper triangle): Jacobi iteration from ``keep = all``. Each sweep is one boolean
matrix product; after t sweeps every box whose suppression chain is shorter than t is final, so the
iteration reaches the unique fixed point (the greedy answer) in (chain depth + 1) sweeps, typically a
handful. Past ``max_sweeps`` the remaining boxes are finished by the sequential scan (one vectorised
OR per kept box) so the result stays exact on adversarial chains.
"""
import numpy as np
import torch

from .boxes import pairwise_iou


def _greedy_from_matrix(suppress, max_sweeps=8):
    """Greedy keep mask for boxes already sorted by score; ``suppress[i, j]`` for i < j only."""
    n = suppress.shape[0]
    s = suppress.float()
    keep = torch.ones(n, dtype=torch.bool, device=suppress.device)
    for _ in range(max_sweeps):
        new = (keep.float() @ s) == 0
        if torch.equal(new, keep):
            return keep
        keep = new
    sup = suppress.cpu().numpy()
    removed = np.zeros(n, dtype=bool)
    for i in range(n):  # fallback scan (one vectorised OR per kept box): exact on any chain
        if not removed[i]:
            removed |= sup[i]
    return torch.from_numpy(~removed).to(suppress.device)


def nms(boxes, scores, iou_threshold: float, max_sweeps: int = 8):
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
    keep = _greedy_from_matrix(suppress, max_sweeps)
    return order[keep]


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
