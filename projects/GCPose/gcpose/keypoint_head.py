"""Keypoint R-CNN keypoint head (stock Detectron2 and GCPose), its targets, loss and heatmap decoding.

docs/reference/mlpe_hsrnet_gcpose.md §3.2 (GCPose head), §4.1 "Keypoint pooler / head" (stock head, target
encoding, loss, decoding).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .gcm import GCM


class KeypointHead(nn.Module):
    """8 x [3x3 conv 512 + ReLU] -> ConvTranspose 512 -> K (k4 s2 p1) -> bilinear x2 (logits at 4 x pool size).

    Args:
        in_channels: pooled feature channels (256 from FPN).
        num_keypoints: K (17).
        gcm_positions: conv indices (0-based) preceded by a GCM; GCPose uses (0, 4) ("index = 1 mod 4"
            in the original numbering, docs/reference/mlpe_hsrnet_gcpose.md §3.2); () gives the stock Detectron2 head.
        pool_size: RoI feature size (14); the GCM relative tables are tied to it.
    With GCMs the input first goes through a 1x1 conv in_channels -> 512 + ReLU (the original adds it
    because the GCM residual needs 512 channels), and all 8 convs are 512 -> 512.
    """

    def __init__(self, in_channels=256, num_keypoints=17, channels=512, num_convs=8, gcm_positions=(),
                 pool_size=14, gcm_heads=4):
        super().__init__()
        self.gcm_positions = tuple(gcm_positions)
        self.input_proj = nn.Conv2d(in_channels, channels, 1) if self.gcm_positions else None
        ch = channels if self.gcm_positions else in_channels
        self.gcms = nn.ModuleDict()
        self.convs = nn.ModuleList()
        for i in range(num_convs):
            if i in self.gcm_positions:
                self.gcms[str(i)] = GCM(channels, (pool_size, pool_size), gcm_heads, channels // gcm_heads)
            self.convs.append(nn.Conv2d(ch, channels, 3, 1, 1))
            ch = channels
        self.score_lowres = nn.ConvTranspose2d(channels, num_keypoints, 4, 2, 1)
        self._init_weights()

    def _init_weights(self):
        # docs/reference/mlpe_hsrnet_gcpose.md §3.3 init: norm weights U(0, 1), every bias 0, other weights
        # Kaiming-normal fan_out;
        # the relative-position tables keep their N(0, 1) / sqrt(d) init.
        for name, p in self.named_parameters():
            if name.endswith('bias'):
                nn.init.zeros_(p)
            elif 'norm' in name:
                nn.init.uniform_(p, 0.0, 1.0)
            elif 'rel_' in name:
                continue
            else:
                nn.init.kaiming_normal_(p, mode='fan_out', nonlinearity='relu')

    def forward(self, x):
        """Args: x (R, C_in, P, P) RoIAlign features (P = 14) sampled over each keypoint RoI (GCPose: the x1.3
            box); R may be 0 (every layer still runs, so training keeps all parameters in the graph).
        Returns: (R, K, 4P, 4P) heatmap logits (56 x 56, spatial-softmax targets): cell (i, j) covers the RoI
            fraction [j / 4P, (j + 1) / 4P) x [i / 4P, (i + 1) / 4P) of its box (see keypoint_targets and
            heatmaps_to_keypoints for the mapping to image pixels).
        """
        if self.input_proj is not None:
            x = F.relu(self.input_proj(x))
        for i, conv in enumerate(self.convs):
            if str(i) in self.gcms:
                x = self.gcms[str(i)](x)
            x = F.relu(conv(x))
        x = self.score_lowres(x)
        return F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)


def keypoint_targets(keypoints, rois, size):
    """Detectron2 ``keypoints_to_heatmap``: flat target index per (RoI, keypoint) on a size x size grid.

    Args:
        keypoints: (R, K, 3) x, y (continuous image pixels), v. rois: (R, 4) xyxy (GCPose: the enlarged box).
    Returns:
        (labels (R, K) int64 = y_h * size + x_h, valid (R, K) bool); x_h = floor((x - x1) * size / w),
        a keypoint exactly on the right/bottom edge maps to size - 1; valid iff inside and v > 0.
    """
    if rois.numel() == 0:
        k = keypoints.shape[1]
        return rois.new_zeros((0, k), dtype=torch.long), rois.new_zeros((0, k), dtype=torch.bool)
    x1, y1, x2, y2 = [rois[:, i:i + 1] for i in range(4)]
    x, y = keypoints[..., 0], keypoints[..., 1]
    xh = ((x - x1) * (size / (x2 - x1))).floor().long()
    yh = ((y - y1) * (size / (y2 - y1))).floor().long()
    xh = torch.where(x == x2, torch.full_like(xh, size - 1), xh)
    yh = torch.where(y == y2, torch.full_like(yh, size - 1), yh)
    valid = (xh >= 0) & (yh >= 0) & (xh < size) & (yh < size) & (keypoints[..., 2] > 0)
    return torch.where(valid, yh * size + xh, torch.zeros_like(xh)), valid


def keypoint_loss(logits, labels, valid):
    """Spatial-softmax cross-entropy summed over valid keypoints / number of valid keypoints
    (docs/reference/mlpe_hsrnet_gcpose.md §4.1).

    Args: logits (R, K, S, S); labels, valid (R, K). Returns a scalar (0 * sum(logits) when none is valid).
    """
    R, K, S, _ = logits.shape
    flat_valid = valid.reshape(-1)
    if R == 0 or not bool(flat_valid.any()):
        return logits.sum() * 0
    flat = logits.reshape(R * K, S * S)[flat_valid]
    return F.cross_entropy(flat, labels.reshape(-1)[flat_valid], reduction='sum') / flat_valid.sum()


def heatmaps_to_keypoints(maps, rois):
    """Detectron2 decoding (docs/reference/mlpe_hsrnet_gcpose.md §4.1): bicubic-resize each RoI's logits to ceil(h) x
    ceil(w), argmax, centre +0.5.

    Args:
        maps: (R, K, S, S) logits; rois: (R, 4) xyxy continuous image pixels (GCPose: enlarged boxes).
    Returns:
        (R, K, 4) float: x, y (continuous image pixels), raw peak logit, score = softmax probability of
        the peak normalised at pool resolution (1 / sum exp(logit_SxS - max_resized)).
    The loop runs over RoIs because each gets its own output size (at most 100 detections per image).
    """
    R, K = maps.shape[:2]
    out = maps.new_zeros((R, K, 4))
    if R == 0:
        return out
    maps = maps.detach().float()
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    for i in range(R):
        ow, oh = int(math.ceil(widths[i].item())), int(math.ceil(heights[i].item()))
        roi_map = F.interpolate(maps[i:i + 1], size=(oh, ow), mode='bicubic', align_corners=False)[0]
        peak, pos = roi_map.reshape(K, -1).max(dim=1)
        score = 1.0 / (maps[i] - peak[:, None, None]).exp().sum(dim=(1, 2))
        ix, iy = (pos % ow).float(), (pos // ow).float()
        out[i, :, 0] = (ix + 0.5) * (widths[i] / ow) + rois[i, 0]
        out[i, :, 1] = (iy + 0.5) * (heights[i] / oh) + rois[i, 1]
        out[i, :, 2] = peak
        out[i, :, 3] = score
    return out
