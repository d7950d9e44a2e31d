"""Anchor generation (Detectron2 ``DefaultAnchorGenerator`` semantics, docs/reference/mlpe_hsrnet_gcpose.md §4.1).

One size per FPN level, aspect ratios (0.5, 1, 2); for size s and ratio a: w = sqrt(s^2 / a), h = a * w,
cell anchor (-w/2, -h/2, w/2, h/2) with no rounding; centres at (x * stride + offset * stride, ...),
offset 0.0. Ordering: location-major (row, then column), anchor-minor, so it matches an RPN output
(N, A, H, W) permuted to (N, H, W, A) and flattened.
"""
import math
from typing import List, Sequence

import torch


def cell_anchors(size: float, aspect_ratios: Sequence[float]):
    """(A, 4) anchors centred on the origin for one size and several aspect ratios (h / w)."""
    rows = []
    for a in aspect_ratios:
        w = math.sqrt(size * size / a)
        h = a * w
        rows.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(rows, dtype=torch.float32)


def grid_anchors(cell, feature_hw, stride, offset=0.0, device=None):
    """Tile ``cell`` (A, 4) over a (H, W) grid of ``stride``. Returns (H * W * A, 4) xyxy image pixels."""
    h, w = feature_hw
    sy = torch.arange(h, dtype=torch.float32, device=device) * stride + offset * stride
    sx = torch.arange(w, dtype=torch.float32, device=device) * stride + offset * stride
    yy, xx = torch.meshgrid(sy, sx, indexing='ij')
    shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)
    return (shifts + cell.to(shifts.device).reshape(1, -1, 4)).reshape(-1, 4)


class AnchorGenerator:
    """Anchors for every level: ``sizes`` (one per level), ``aspect_ratios``, ``strides``."""

    def __init__(self, sizes=(32, 64, 128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0),
                 strides=(4, 8, 16, 32, 64), offset=0.0):
        if len(sizes) != len(strides):
            raise ValueError('anchor sizes %s and strides %s differ in length' % (sizes, strides))
        self.cells = [cell_anchors(s, aspect_ratios) for s in sizes]
        self.strides = list(strides)
        self.offset = offset

    @property
    def num_anchors(self) -> int:
        return self.cells[0].shape[0]

    def __call__(self, feature_hws, device=None) -> List[torch.Tensor]:
        """Args: list of (H_l, W_l). Returns: list of (H_l * W_l * A, 4) anchors, same for every image."""
        return [grid_anchors(c, hw, s, self.offset, device) for c, hw, s in zip(self.cells, feature_hws, self.strides)]
