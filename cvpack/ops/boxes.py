"""Box utilities for the detection stack (GCPose): areas, pairwise IoU, clipping, the box coder.

Boxes are (x1, y1, x2, y2) in continuous pixel coordinates, areas are (x2 - x1) * (y2 - y1) with no
"+1" (Detectron2 v0.5 convention, docs/reference/mlpe_hsrnet_gcpose.md §4.1 / §4.5).
"""
import math
from typing import Sequence

import torch

# Detectron2's default clamp of dw/dh before exp(): log(1000 / 16) (docs/reference/mlpe_hsrnet_gcpose.md §4.1 RPN).
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def box_area(boxes):
    """Area of (N, 4) xyxy boxes -> (N,)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def pairwise_iou(a, b):
    """IoU matrix between (N, 4) and (M, 4) xyxy boxes -> (N, M); 0 where the union is empty."""
    # per-coordinate (N, 1) x (1, M) broadcasts: much faster than (N, M, 2) tensors on CPU
    iw = (torch.min(a[:, 2:3], b[:, 2].unsqueeze(0)) - torch.max(a[:, 0:1], b[:, 0].unsqueeze(0))).clamp_(min=0)
    ih = (torch.min(a[:, 3:4], b[:, 3].unsqueeze(0)) - torch.max(a[:, 1:2], b[:, 1].unsqueeze(0))).clamp_(min=0)
    inter = iw * ih
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp(min=1e-12)   # union 0 implies inter 0 -> IoU 0 (degenerate boxes)


def clip_boxes(boxes, image_hw):
    """Clamp (N, 4) xyxy boxes to the image (h, w): x in [0, w], y in [0, h] (Detectron2 ``Boxes.clip``)."""
    h, w = image_hw
    x = boxes[:, 0::2].clamp(min=0, max=w)
    y = boxes[:, 1::2].clamp(min=0, max=h)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)


def nonempty(boxes, threshold=0.0):
    """Mask of boxes with width and height > threshold and finite coordinates."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return (w > threshold) & (h > threshold) & torch.isfinite(boxes).all(dim=1)


def scale_boxes(boxes, factor):
    """Enlarge (N, 4) xyxy boxes by ``factor`` about their centres (GCPose x1.3, docs/reference/mlpe_hsrnet_gcpose.md
    §3.1 item 2: not squared).

    Each side moves out by ``w * (factor - 1) / 2`` (``h`` likewise), in the original's order of operations
    (``resizeBoxesTrain``): the same float32 boxes bit for bit (docs/reference/defects.md F#12).
    """
    w_ext = (boxes[:, 2] - boxes[:, 0]) * (factor - 1) / 2
    h_ext = (boxes[:, 3] - boxes[:, 1]) * (factor - 1) / 2
    return boxes + torch.stack([-w_ext, -h_ext, w_ext, h_ext], dim=1)


class Box2BoxTransform:
    """Detectron2's box coder: deltas (dx, dy, dw, dh) between a source box and a target box.

    dx = wx * (tx_ctr - sx_ctr) / s_w, dw = ww * log(t_w / s_w) (likewise y, h); ``decode`` inverts it,
    clamping dw, dh at ``scale_clamp`` before the exp. Weights: RPN (1, 1, 1, 1), box head (10, 10, 5, 5).
    """

    def __init__(self, weights: Sequence[float], scale_clamp: float = DEFAULT_SCALE_CLAMP):
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def encode(self, src, target):
        """Args: src, target (N, 4) xyxy. Returns: deltas (N, 4) mapping src onto target."""
        wx, wy, ww, wh = self.weights
        sw, sh = src[:, 2] - src[:, 0], src[:, 3] - src[:, 1]
        sx, sy = src[:, 0] + 0.5 * sw, src[:, 1] + 0.5 * sh
        tw, th = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1]
        tx, ty = target[:, 0] + 0.5 * tw, target[:, 1] + 0.5 * th
        return torch.stack([wx * (tx - sx) / sw, wy * (ty - sy) / sh,
                            ww * torch.log(tw / sw), wh * torch.log(th / sh)], dim=1)

    def decode(self, deltas, boxes):
        """Args: deltas (N, 4k), boxes (N, 4) xyxy. Returns: (N, 4k) xyxy boxes (k = classes)."""
        deltas = deltas.float()
        boxes = boxes.to(deltas.dtype)
        wx, wy, ww, wh = self.weights
        w = (boxes[:, 2] - boxes[:, 0])[:, None]
        h = (boxes[:, 3] - boxes[:, 1])[:, None]
        cx = boxes[:, 0:1] + 0.5 * w
        cy = boxes[:, 1:2] + 0.5 * h
        dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.scale_clamp)
        px, py = dx * w + cx, dy * h + cy
        pw, ph = torch.exp(dw) * w, torch.exp(dh) * h
        out = torch.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph], dim=2)
        return out.reshape(deltas.shape)
