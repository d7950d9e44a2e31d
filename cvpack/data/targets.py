"""Heatmap targets: Megvii/CPN blurred one-hot peaks and Simple Baselines unit Gaussians.

Both functions reproduce the originals value for value (see the spec sections cited below) but
avoid the per-joint Python loops of the originals where the result is provably the same.
Coordinates: ``joints`` (K, 2+) are in input-crop pixels (x, y); maps are (h, w) = ``output_hw``.
"""
import cv2
import numpy as np

__all__ = ['blurred_peak_targets', 'gaussian_targets']

_CV_MAX_CHANNELS = 512   # cv2 filters take at most CV_CN_MAX channels per call


def _peak_cells(joints, input_hw, output_hw):
    """Heatmap cell (row, col) of each joint: ``int(y * h / H)``, ``int(x * w / W)`` (Megvii floor placement)."""
    j = np.asarray(joints, np.float64)
    # The original computes y * out / in as Python/numpy floats, then int() truncates toward zero.
    rows = np.trunc(j[:, 1] * output_hw[0] / input_hw[0]).astype(np.int64)
    cols = np.trunc(j[:, 0] * output_hw[1] / input_hw[1]).astype(np.int64)
    return rows, cols


def blurred_peak_targets(joints, valid, input_hw, output_hw, kernels):
    """Megvii / CPN targets (``reference_rsn_mspn.md`` §3.4 step 7).

    For every joint with ``valid >= 1`` a one-hot at ``(int(y * h / H), int(x * w / W))`` is blurred by
    ``cv2.GaussianBlur(img, (k, k), 0)`` (BORDER_REFLECT_101, OpenCV's sigma for k) and rescaled so the
    peak is exactly 255; other channels are 0.

    Args:
        joints: (K, 2+) joint coordinates in input-crop pixels (x, y); valid joints must lie inside the crop
            (the pipeline sets v = 0 outside [0, W-1] x [0, H-1], as the original).
        valid: (K,) or (K, 1) visibility (0, 1, 2); joints with valid < 1 get an all-zero map.
        input_hw: (H, W) network input; output_hw: (h, w) heatmap.
        kernels: list of ``(kh, kw)`` (or ints) Gaussian kernel sizes, one target level each.
    Returns:
        float32 (L, K, h, w), L = len(kernels).

    Speed: the valid joints are blurred together as the channels of one (h, w, n) image per kernel; OpenCV's
    separable filter treats channels independently with the same arithmetic, so each channel equals the
    per-joint call bit for bit (tests/data_core check this against a per-joint reference).
    """
    valid = np.asarray(valid).reshape(-1)
    num_k = valid.shape[0]
    h, w = int(output_hw[0]), int(output_hw[1])
    out = np.zeros((len(kernels), num_k, h, w), np.float32)
    ids = np.nonzero(valid >= 1)[0]
    if ids.size == 0:
        return out
    rows, cols = _peak_cells(np.asarray(joints)[ids], input_hw, output_hw)
    if rows.min() < 0 or cols.min() < 0 or rows.max() >= h or cols.max() >= w:
        bad = ids[(rows < 0) | (cols < 0) | (rows >= h) | (cols >= w)]
        raise ValueError('blurred_peak_targets: valid joints %s fall outside the %dx%d heatmap; '
                         'set their visibility to 0 first' % (bad.tolist(), h, w))
    for start in range(0, ids.size, _CV_MAX_CHANNELS):
        sl = slice(start, start + _CV_MAX_CHANNELS)
        n = ids[sl].size
        onehot = np.zeros((h, w, n), np.float32)
        onehot[rows[sl], cols[sl], np.arange(n)] = 1
        for li, k in enumerate(kernels):
            ksize = (int(k), int(k)) if np.isscalar(k) else (int(k[0]), int(k[1]))
            blurred = cv2.GaussianBlur(onehot, ksize, 0)
            chans = np.ascontiguousarray(blurred.reshape(h, w, n).transpose(2, 0, 1))
            # the true max, not the peak cell: next to a border REFLECT_101 folds taps onto the edge row
            maxi = chans.reshape(n, -1).max(axis=1)
            # the original: heatmap /= maxi / 255 (float32 divide), skipped when the max is ~0 (dividing by 1)
            chans /= np.where(maxi > 1e-8, maxi / np.float32(255), np.float32(1))[:, None, None]
            out[li, ids[sl]] = chans
    return out


def gaussian_targets(joints, visible, input_hw, output_hw, sigma):
    """Simple Baselines ``generate_target`` (gaussian type), ``reference_mlpe_hsrnet_gcpose.md`` §2.6.

    Unnormalised ``exp(-d^2 / 2 sigma^2)`` (peak 1) centred at ``mu = int(x / stride + 0.5)`` (stride =
    input / output per axis), truncated to the (2 * 3sigma + 1)^2 window; the weight is the visibility
    flag, set to 0 when the window lies completely outside the heatmap.

    Args:
        joints: (K, 2+) input-crop pixels (x, y). visible: (K,) or (K, 1) 0/1 flags (values > 0.5 count).
        input_hw: (H, W); output_hw: (h, w); sigma: Gaussian sigma in heatmap cells.
    Returns:
        target float32 (K, h, w), weight float32 (K,).
    """
    j = np.asarray(joints, np.float64)
    weight = np.asarray(visible, np.float32).reshape(-1).copy()
    num_k = weight.shape[0]
    h, w = int(output_hw[0]), int(output_hw[1])
    target = np.zeros((num_k, h, w), np.float32)
    tmp = sigma * 3
    stride_x = input_hw[1] / output_hw[1]
    stride_y = input_hw[0] / output_hw[0]
    # int() truncation toward zero, as the original's int(...) on Python floats
    mu_x = np.trunc(j[:, 0] / stride_x + 0.5)
    mu_y = np.trunc(j[:, 1] / stride_y + 0.5)
    ul_x, ul_y = np.trunc(mu_x - tmp), np.trunc(mu_y - tmp)
    br_x, br_y = np.trunc(mu_x + tmp + 1), np.trunc(mu_y + tmp + 1)
    outside = (ul_x >= w) | (ul_y >= h) | (br_x < 0) | (br_y < 0)
    weight[outside] = 0
    size = int(2 * tmp + 1)
    # float32 grid as the original: g = exp(-((x - x0)^2 + (y - y0)^2) / (2 sigma^2)), x0 = y0 = size // 2
    x = np.arange(0, size, 1, np.float32)
    y = x[:, None]
    g = np.exp(-((x - size // 2) ** 2 + (y - size // 2) ** 2) / (2 * sigma ** 2))
    for k in np.nonzero(weight > 0.5)[0]:
        x0, y0, x1, y1 = int(ul_x[k]), int(ul_y[k]), int(br_x[k]), int(br_y[k])
        gx0, gx1 = max(0, -x0), min(x1, w) - x0
        gy0, gy1 = max(0, -y0), min(y1, h) - y0
        target[k, max(0, y0):min(y1, h), max(0, x0):min(x1, w)] = g[gy0:gy1, gx0:gx1]
    return target, weight
