"""Heatmap targets: Megvii/CPN blurred one-hot peaks and Simple Baselines unit Gaussians.

Both functions reproduce the originals bit for bit (the per-joint loops in :mod:`cvpack.data.reference`;
spec sections cited below) without the originals' per-joint blur and full-map work.
Coordinates: ``joints`` (K, 2+) are in input-crop pixels (x, y); maps are (h, w) = ``output_hw``.
"""
import cv2
import numpy as np

__all__ = ['blurred_peak_targets', 'gaussian_targets']


def _peak_cells(joints, input_hw, output_hw):
    """Heatmap cell (row, col) of each joint: ``int(y * h / H)``, ``int(x * w / W)`` (Megvii floor placement)."""
    j = np.asarray(joints, np.float64)
    # The original computes y * out / in as Python/numpy floats, then int() truncates toward zero.
    rows = np.trunc(j[:, 1] * output_hw[0] / input_hw[0]).astype(np.int64)
    cols = np.trunc(j[:, 0] * output_hw[1] / input_hw[1]).astype(np.int64)
    return rows, cols


# (h, w, ksize, border class) -> (patch, row offset, col offset); filled on first use, a few hundred entries.
_PATCHES = {}


def _blurred_patch(h, w, r, c, ksize):
    """The non-zero window of ``cv2.GaussianBlur(one-hot at (r, c), ksize, 0)`` rescaled to peak 255.

    Why a cache is exact: OpenCV's separable filter does the same float32 arithmetic for every pixel, so the
    blurred one-hot is the same up to translation for every (r, c) with the same distances to the four map
    edges, where a distance > half the kernel cannot matter (BORDER_REFLECT_101 folds a tap back onto the window
    only when the peak is <= half a kernel from an edge). So the class key caps each distance at ``half + 1``,
    and the patch is taken from OpenCV's own output for the first peak of that class.
    """
    hx, hy = ksize[0] // 2, ksize[1] // 2
    key = (h, w, ksize, min(r, hy + 1), min(h - 1 - r, hy + 1), min(c, hx + 1), min(w - 1 - c, hx + 1))
    hit = _PATCHES.get(key)
    if hit is None:
        onehot = np.zeros((h, w), np.float32)
        onehot[r, c] = 1
        blurred = cv2.GaussianBlur(onehot, ksize, 0)
        maxi = np.amax(blurred)   # the true max: near an edge the folded taps can exceed the peak cell
        if maxi > 1e-8:
            blurred /= maxi / 255   # float32 divide, as the original
        y0, x0 = max(0, r - hy), max(0, c - hx)
        hit = (blurred[y0:r + hy + 1, x0:c + hx + 1].copy(), y0 - r, x0 - c)
        _PATCHES[key] = hit
    return hit


# (h, w, ksizes, border class) -> (stack, row 0, col 0): the L levels of one joint, a few hundred entries.
_STACKS = {}


def _blurred_stack(h, w, r, c, ksizes, hy, hx):
    """All levels' maps of a one-hot at (r, c), as one (L, wy, wx) window of the (L, h, w) maps at (row 0, col 0).

    The window is the largest kernel's (clipped to the map); levels with a smaller kernel are zero outside their
    own :func:`_blurred_patch`, as a blur's support is its kernel. The window's content depends on (r, c) only
    through the distances to the four edges capped at the largest half kernel + 1 (the class of every level's
    patch), so it is cached per such class and translated, exact by the same argument as the patches.
    ``hy``, ``hx``: the largest half kernel per axis (``max(k) // 2`` over ``ksizes``).
    """
    top, bottom, left, right = min(r, hy + 1), min(h - 1 - r, hy + 1), min(c, hx + 1), min(w - 1 - c, hx + 1)
    key = (h, w, ksizes, top, bottom, left, right)
    hit = _STACKS.get(key)
    if hit is None:
        y0, x0 = max(0, r - hy), max(0, c - hx)
        stack = np.zeros((len(ksizes), min(h, r + hy + 1) - y0, min(w, c + hx + 1) - x0), np.float32)
        for li, ksize in enumerate(ksizes):
            patch, dy, dx = _blurred_patch(h, w, r, c, ksize)
            py, px = r + dy - y0, c + dx - x0
            stack[li, py:py + patch.shape[0], px:px + patch.shape[1]] = patch
        hit = (stack, y0 - r, x0 - c)
        _STACKS[key] = hit
    stack, dy, dx = hit
    return stack, r + dy, c + dx


def blurred_peak_targets(joints, valid, input_hw, output_hw, kernels):
    """Megvii / CPN targets (``docs/reference/rsn_mspn.md`` §3.4 step 7).

    For every joint with ``valid >= 1`` a one-hot at ``(int(y * h / H), int(x * w / W))`` is blurred by
    ``cv2.GaussianBlur(img, (k, k), 0)`` (BORDER_REFLECT_101, OpenCV's sigma for k) and rescaled so the
    max is exactly 255; other channels are 0.

    Args:
        joints: (K, 2+) joint coordinates in input-crop pixels (x, y); valid joints must lie inside the crop
            (the pipeline sets v = 0 outside [0, W-1] x [0, H-1], as the original).
        valid: (K,) or (K, 1) visibility (0, 1, 2); joints with valid < 1 get an all-zero map.
        input_hw: (H, W) network input; output_hw: (h, w) heatmap.
        kernels: list of kernel sizes, each an int k or a cv2 ``ksize`` pair (kw, kh); one target level each.
    Returns:
        float32 (L, K, h, w), L = len(kernels).

    Speed: each joint's L maps are pasted at once from a cache of OpenCV's own blurred one-hots (see
    :func:`_blurred_stack`), equal bit for bit to the original per-joint loop (tests/data check every cell of a
    64x48 map, every kernel, and the pipeline against the original's loop).
    """
    valid = np.asarray(valid).reshape(-1)
    h, w = int(output_hw[0]), int(output_hw[1])
    out = np.zeros((len(kernels), valid.shape[0], h, w), np.float32)
    ids = np.nonzero(valid >= 1)[0]
    if ids.size == 0:
        return out
    rows, cols = _peak_cells(np.asarray(joints)[ids], input_hw, output_hw)
    if rows.min() < 0 or cols.min() < 0 or rows.max() >= h or cols.max() >= w:
        bad = ids[(rows < 0) | (cols < 0) | (rows >= h) | (cols >= w)]
        raise ValueError('blurred_peak_targets: valid joints %s fall outside the %dx%d heatmap; '
                         'set their visibility to 0 first' % (bad.tolist(), h, w))
    ksizes = tuple((int(k), int(k)) if np.isscalar(k) else (int(k[0]), int(k[1])) for k in kernels)
    hy, hx = max(k[1] for k in ksizes) // 2, max(k[0] for k in ksizes) // 2
    for i, r, c in zip(ids.tolist(), rows.tolist(), cols.tolist()):
        stack, y0, x0 = _blurred_stack(h, w, r, c, ksizes, hy, hx)
        out[:, i, y0:y0 + stack.shape[1], x0:x0 + stack.shape[2]] = stack
    return out


def gaussian_targets(joints, visible, input_hw, output_hw, sigma):
    """Simple Baselines ``generate_target`` (gaussian type), ``docs/reference/mlpe_hsrnet_gcpose.md`` §2.6.

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
