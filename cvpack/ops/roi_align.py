"""RoIAlign in plain torch (replaces torchvision's / Detectron2's compiled ROIAlign), plus FPN level assignment.

Semantics follow the compiled kernel (docs/reference/mlpe_hsrnet_gcpose.md §4.4):
start = x1 * s - 0.5 (aligned) or x1 * s; roi_w = (x2 - x1) * s (not aligned: at least 1);
bin = roi_w / out_w; grid g = sampling_ratio if > 0 else ceil(roi_w / out_w); samples at
start + p * bin + (i + 0.5) * bin / g; the output is the mean of the g_y * g_x bilinear samples.

Border rules:
* ``'kernel'``: the compiled kernel's rule: a sample with y < -1 or y > H (likewise x) contributes 0,
  negative coordinates clamp to 0, and a sample at or beyond row H - 1 reads row H - 1 only.
* ``'zeros'``: every pixel outside the map is 0 and interpolation is ordinary bilinear. This is what
  GCPose gets by zero-padding P2 before aligning its x1.3-enlarged boxes (docs/reference/mlpe_hsrnet_gcpose.md §3.1 item
  3), without allocating the padded map.
* a tuple (left, top, right, bottom) of those two names: the rule per side of the map. GCPose pads only the
  sides some enlarged box of the batch crosses; the other sides keep the kernel's rule
  (docs/reference/defects.md F#12).

Vectorisation: RoIs are grouped by (g_y, g_x, image) (a loop over distinct grid sizes, not over
boxes) and chunked to bound memory; each chunk's sample points go through one ``F.grid_sample`` call
(plain torch's bilinear sampler, zero padding), after the kernel rule has been applied to the
coordinates, and bins average their g_y * g_x samples. The op is linear in the features, so autograd
gives the exact backward.
"""
import math

import torch
import torch.nn.functional as F

# Elements (RoIs x samples x channels) gathered per chunk: bounds memory to a few hundred MB.
_CHUNK_ELEMENTS = 1 << 24


_BORDERS = ('kernel', 'zeros')


def _border_sides(border):
    """'kernel' / 'zeros' / (left, top, right, bottom) of those -> the 4-tuple."""
    if isinstance(border, str) and border in _BORDERS:
        return (border,) * 4
    if isinstance(border, (tuple, list)) and len(border) == 4 and all(b in _BORDERS for b in border):
        return tuple(border)
    raise ValueError("roi_align border must be 'kernel', 'zeros' or a (left, top, right, bottom) tuple of them, "
                     "got %r" % (border,))


def _grid_axis(coords, size, low, high):
    """Sample coordinates along one axis -> (normalised grid coordinate, validity weight or None).

    'kernel' at an end: samples beyond -1 (low end) / size (high end) are dropped (weight 0) and the rest
    clamped into [0, size - 1], after which plain bilinear interpolation is exactly the compiled kernel's
    rule (negative -> 0, beyond the last row -> last row). 'zeros': coordinates stay as they are and
    ``grid_sample``'s zero padding makes every outside pixel 0.
    """
    valid = None
    if low == 'kernel':
        valid = coords >= -1.0
        coords = coords.clamp(min=0)
    if high == 'kernel':
        valid = (coords <= size) if valid is None else valid & (coords <= size)
        coords = coords.clamp(max=size - 1)
    # grid_sample, align_corners=False: pixel coordinate c (pixel i centred at i) -> (2c + 1) / size - 1.
    return (2 * coords + 1) / size - 1, (None if valid is None else valid.to(coords.dtype))


def _sample_coords(start, bin_size, out, grid):
    """(n,) starts and bin sizes -> (n, out * grid) sample coordinates."""
    p = torch.arange(out, device=start.device, dtype=start.dtype)
    i = torch.arange(grid, device=start.device, dtype=start.dtype)
    offs = p[:, None] + (i[None, :] + 0.5) / grid          # (out, grid), in bins
    return start[:, None] + bin_size[:, None] * offs.reshape(1, -1)


def _align_group(fmap, x0, y0, bw, bh, out_hw, gy, gx, border):
    """RoIAlign for n RoIs of one image sharing a (gy, gx) grid.

    fmap (1, C, H, W); the n sample grids are stacked into one (1, n * Sy, Sx, 2) grid so a single
    ``grid_sample`` call (bilinear, compiled in torch itself) gathers every sample. Returns (n, oh, ow, C).
    """
    oh, ow = out_hw
    _, C, H, W = fmap.shape
    n = x0.shape[0]
    left, top, right, bottom = border
    gyc, vy = _grid_axis(_sample_coords(y0, bh, oh, gy).to(fmap.dtype), H, top, bottom)   # (n, Sy)
    gxc, vx = _grid_axis(_sample_coords(x0, bw, ow, gx).to(fmap.dtype), W, left, right)   # (n, Sx)
    Sy, Sx = gyc.shape[1], gxc.shape[1]
    grid = torch.stack([gxc[:, None, :].expand(n, Sy, Sx), gyc[:, :, None].expand(n, Sy, Sx)], dim=-1)
    vals = F.grid_sample(fmap, grid.reshape(1, n * Sy, Sx, 2), mode='bilinear', padding_mode='zeros',
                         align_corners=False)
    # (1, C, n*Sy, Sx) with channels-last memory -> (n, oh, gy, ow, gx, C) view; weighted sum over the grid.
    vals = vals[0].permute(1, 2, 0).reshape(n, oh, gy, ow, gx, C)
    if gy == gx == 1 and vy is None and vx is None:
        return vals.reshape(n, oh, ow, C)
    wy = (vy if vy is not None else torch.ones_like(gyc)).reshape(n, oh, gy) / gy
    wx = (vx if vx is not None else torch.ones_like(gxc)).reshape(n, ow, gx) / gx
    w = wy[:, :, :, None, None] * wx[:, None, None, :, :]
    return (vals * w[..., None]).sum(dim=(2, 4))


def roi_align(features, rois, output_size, spatial_scale, sampling_ratio=0, aligned=True,
              border='kernel', max_grid=None):
    """Pool fixed-size features for boxes.

    Args:
        features: (B, C, H, W) feature map of a batch.
        rois: (R, 5) rows (batch_index, x1, y1, x2, y2) in input-image pixels.
        output_size: int or (oh, ow).
        spatial_scale: feature pixels per image pixel (1 / stride).
        sampling_ratio: samples per bin and axis; <= 0 = adaptive ceil(roi / out) (Detectron2 default 0).
        aligned: half-pixel shift (ROIAlignV2); False = legacy torchvision behaviour.
        border: 'kernel' (compiled op), 'zeros' (zero-padded map) or a (left, top, right, bottom) tuple of them
            (GCPose pads the sides its boxes cross).
        max_grid: optional cap on the adaptive grid (a speed knob; None = exact parity).
    Returns:
        (R, C, oh, ow) pooled features in the dtype of ``features``.
    """
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    border = _border_sides(border)
    B, C, H, W = features.shape
    R = rois.shape[0]
    out = features.new_zeros((R, oh, ow, C))     # channels-last rows: cheap scatter of each group
    if R == 0:
        return out.permute(0, 3, 1, 2)
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError('rois must be (R, 5) [batch_index, x1, y1, x2, y2], got %s' % (tuple(rois.shape),))
    rois = rois.to(torch.float32)
    offset = 0.5 if aligned else 0.0
    x0 = rois[:, 1] * spatial_scale - offset
    y0 = rois[:, 2] * spatial_scale - offset
    rw = (rois[:, 3] - rois[:, 1]) * spatial_scale
    rh = (rois[:, 4] - rois[:, 2]) * spatial_scale
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    bw, bh = rw / ow, rh / oh
    if sampling_ratio > 0:
        gys = torch.full((R,), sampling_ratio, dtype=torch.long)
        gxs = gys.clone()
    else:  # the kernel's ceil(roi / out); a zero grid (degenerate box) gives a zero output
        gys = torch.ceil(rh / oh).long().cpu()
        gxs = torch.ceil(rw / ow).long().cpu()
    if max_grid is not None:
        gys, gxs = gys.clamp(max=max_grid), gxs.clamp(max=max_grid)
    # grid_sample reads all channels of a sample point: channels-last makes them contiguous (~4x faster on CPU).
    fm = features.contiguous(memory_format=torch.channels_last)
    bidx = rois[:, 0].long().cpu()
    keys = (gys * 100003 + gxs) * (B + 1) + bidx          # one group per (grid, image)
    for key in torch.unique(keys).tolist():
        idx = torch.nonzero(keys == key).flatten()
        gy, gx, b = int(gys[idx[0]]), int(gxs[idx[0]]), int(bidx[idx[0]])
        if gy <= 0 or gx <= 0:
            continue
        if not 0 <= b < B:
            raise ValueError('roi batch index %d outside the batch of %d feature maps' % (b, B))
        per_roi = oh * gy * ow * gx * C
        step = max(1, _CHUNK_ELEMENTS // per_roi)
        for s in range(0, len(idx), step):
            sel = idx[s:s + step].to(features.device)
            out[sel] = _align_group(fm[b:b + 1], x0[sel], y0[sel], bw[sel], bh[sel],
                                    (oh, ow), gy, gx, border).to(out.dtype)
    return out.permute(0, 3, 1, 2).contiguous()


def assign_fpn_levels(boxes, min_level=2, max_level=5, canonical_size=224, canonical_level=4):
    """Detectron2's level mapper: floor(4 + log2(sqrt(area) / 224 + 1e-8)) clamped to [min, max].

    Args: boxes (R, 4) xyxy image pixels. Returns: (R,) int64 level indices relative to ``min_level``.
    """
    size = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    level = torch.floor(canonical_level + torch.log2(size / canonical_size + 1e-8))
    return (level.clamp(min=min_level, max=max_level) - min_level).long()


def multilevel_roi_align(features, boxes_per_image, output_size, strides, sampling_ratio=0,
                         aligned=True, border='kernel'):
    """RoIAlign over FPN levels (one level per box; a single map when ``len(features) == 1``).

    Args:
        features: list of (B, C, H_l, W_l) maps with ``strides`` (e.g. p2..p5, 4..32).
        boxes_per_image: list of B (R_i, 4) xyxy tensors in image pixels.
    Returns:
        (sum R_i, C, oh, ow), RoIs in image order.
    """
    rois = boxes_to_rois(boxes_per_image)
    if len(features) == 1:
        return roi_align(features[0], rois, output_size, 1.0 / strides[0], sampling_ratio, aligned, border)
    min_level = int(round(math.log2(strides[0])))
    levels = assign_fpn_levels(rois[:, 1:], min_level, min_level + len(features) - 1)
    C = features[0].shape[1]
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    out = features[0].new_zeros((rois.shape[0], C, oh, ow))
    for lvl, (feat, stride) in enumerate(zip(features, strides)):
        idx = torch.nonzero(levels == lvl).flatten()
        if idx.numel():
            out[idx] = roi_align(feat, rois[idx], (oh, ow), 1.0 / stride, sampling_ratio, aligned, border)
    return out


def boxes_to_rois(boxes_per_image):
    """List of (R_i, 4) boxes -> (sum R_i, 5) rows (batch_index, x1, y1, x2, y2)."""
    rows = [torch.cat([torch.full((b.shape[0], 1), float(i), dtype=b.dtype, device=b.device), b], dim=1)
            for i, b in enumerate(boxes_per_image)]
    return torch.cat(rows, dim=0) if rows else torch.zeros((0, 5))
