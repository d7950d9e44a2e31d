"""The two maxima of the Megvii decoder (blurred, 10-px zero-padded maps), batched and bit-exact.

The original (``docs/reference/rsn_mspn.md`` §5.3) pads each map with 10 zeros, blurs it in float64 with
``cv2.GaussianBlur((k, k), 0)`` (reflect-101 border), takes the first argmax in raster order, zeroes
it and takes the next argmax. :func:`megvii_peaks` returns the same two positions for many maps:

* local path (k <= 11): cv2 blurs, in float64, only a small region R around each map's raw
  maximum (bit-identical to the full-image blur: cv2's value at a pixel depends only on its
  k x k neighbourhood, checked in tests/decode). A bound on every blurred value outside R proves
  that both maxima lie in R; maps where it does not hold (several peaks, plateaus, empty or negative
  maps) take the exact path;
* exact path: one cv2 call on all maps stacked into a tall float64 image (bit-identical values).
"""
import cv2
import numpy as np

MEGVII_PAD = 10          # zero border added before blurring in the original get_results
EXACT_CHUNK = 32         # maps per full-blur pass: ~1 MB of float64, stays in cache (2-3x faster)


def blur_stack(canvas, kernel):
    """cv2.GaussianBlur (k, k, sigma 0) of many maps in one call.

    ``canvas`` (M, Hc, Wc) holds each map with at least r = k // 2 rows/cols of the wanted border
    around the region to keep; the maps are stacked into one tall image, so a row of one map never
    reaches another map's kept rows. Returns the blurred canvas cropped by r on every side (a view).
    """
    r = kernel // 2
    m, hc, wc = canvas.shape
    if m == 0:                                   # cv2 rejects empty images
        return canvas[:, r:hc - r, r:wc - r]
    out = cv2.GaussianBlur(canvas.reshape(m * hc, wc), (kernel, kernel), 0)
    return out.reshape(m, hc, wc)[:, r:hc - r, r:wc - r]


def _blurred_window(hm, kernel):
    """Blur of the 10-px zero-padded maps (float64, as the original), on a window of the padded map.

    Args: hm (M, h, w) maps (copied into float64 like the original's ``dr``).
    Returns ``(window (M, Hr, Wr), lo)``: ``window`` equals rows/cols ``lo .. Hp - lo`` of the original
    padded, blurred map; when ``lo > 0`` the padded map is exactly 0 outside the window.
    """
    m, h, w = hm.shape
    pad, r = MEGVII_PAD, kernel // 2
    if 2 * r <= pad:
        # Window = map + 2r zeros per side. The blur is non-zero only within r of the map, and the
        # outer r rows/cols of the window read only zeros (also across stacked maps), so they are
        # exactly 0 as in the original and no crop (copy) is needed.
        canvas = np.zeros((m, h + 4 * r, w + 4 * r))
        canvas[:, 2 * r:2 * r + h, 2 * r:2 * r + w] = hm
        out = cv2.GaussianBlur(canvas.reshape(-1, w + 4 * r), (kernel, kernel), 0)
        return out.reshape(canvas.shape), pad - 2 * r
    # large kernels (MLPE's 21): the reflect-101 border of the padded map reaches the map itself
    padded = np.zeros((m, h + 2 * pad, w + 2 * pad))
    padded[:, pad:pad + h, pad:pad + w] = hm
    canvas = np.pad(padded, ((0, 0), (r, r), (r, r)), mode='reflect')  # numpy 'reflect' = reflect-101
    return np.ascontiguousarray(blur_stack(canvas, kernel)), 0


def _padded_argmax(flat, width, lo):
    """First (raster order) argmax of each padded map, given its window ``flat`` (M, Hr*Wr).

    Outside the window the padded map is 0 and the window starts at row/col ``lo``; if the window's
    max is <= 0 (and lo > 0) the original's argmax is padded pixel (0, 0), the first zero in raster order.
    Returns (y, x) in padded coordinates and the flat index in the window (-1 when outside).
    """
    idx = flat.argmax(axis=1)
    y, x = idx // width + lo, idx % width + lo
    if lo > 0:
        outside = flat[np.arange(flat.shape[0]), idx] <= 0
        y, x = np.where(outside, 0, y), np.where(outside, 0, x)
        idx = np.where(outside, -1, idx)
    return y, x, idx


def _peaks_exact(hm, kernel):
    """(4, M) maxima from the full float64 blur, in cache-sized chunks of maps."""
    return np.concatenate([np.stack(_peaks_exact_chunk(hm[i:i + EXACT_CHUNK], kernel))
                           for i in range(0, hm.shape[0], EXACT_CHUNK)], axis=1)


def _peaks_exact_chunk(hm, kernel):
    window, lo = _blurred_window(hm, kernel)
    width = window.shape[2]
    flat = window.reshape(hm.shape[0], -1)      # our own array: zeroing in place is safe
    y1, x1, idx1 = _padded_argmax(flat, width, lo)
    rows = np.nonzero(idx1 >= 0)[0]
    flat[rows, idx1[rows]] = 0                  # the original zeroes the first maximum
    y2, x2, _ = _padded_argmax(flat, width, lo)
    return y1, x1, y2, x2


def _window_indices(centre, half, size):
    """Indices centre - half .. centre + half (M, 2 half + 1), clipped into [0, size), and a validity mask."""
    idx = centre[:, None] + np.arange(-half, half + 1)
    valid = (idx >= 0) & (idx < size)
    return np.clip(idx, 0, size - 1), valid


def _peaks_local(hm, kernel):
    """Both maxima from an exact float64 blur of a small region R around each map's raw maximum.

    R = positions within ``d = r + 3`` px of the raw argmax. Its blurred values are computed by cv2 on
    the zero-padded (R + r) patch, bit-identical to the full blur. Outside R every blurred value is at
    most U = max(0, raw values outside the inner (d - r) square of R), since the kernel is
    non-negative and sums to 1. If U < L, the 2nd-largest value in R (and L > 0), both maxima of
    the full map lie in R, and R's raster order is the padded map's. Returns (out (4, M), ok (M,)).
    """
    m, h, w = hm.shape
    r = kernel // 2
    d = r + 3
    rows = np.arange(m)
    py, px = np.divmod(hm.reshape(m, -1).argmax(axis=1), w)
    ys, vy = _window_indices(py, d + r, h)
    xs, vx = _window_indices(px, d + r, w)
    patch = hm[rows[:, None, None], ys[:, :, None], xs[:, None, :]].astype(np.float64)
    patch[~(vy[:, :, None] & vx[:, None, :])] = 0.0        # zero padding beyond the map
    side = 2 * (d + r) + 1
    blurred = cv2.GaussianBlur(patch.reshape(m * side, side), (kernel, kernel), 0).reshape(m, side, side)
    vals = blurred[:, r:side - r, r:side - r].reshape(m, -1)   # (M, (2d+1)^2), raster order of R
    a1 = vals.argmax(axis=1)
    vals[rows, a1] = -np.inf
    a2 = vals.argmax(axis=1)
    second = vals[rows, a2]
    # upper bound outside R: raw maximum with the inner square (half-size d - r) removed
    iy, ivy = _window_indices(py, d - r, h)
    ix, ivx = _window_indices(px, d - r, w)
    inner = ivy[:, :, None] & ivx[:, None, :]
    rest = hm.copy()
    sel = np.broadcast_to(rows[:, None, None], inner.shape)[inner]
    rest[sel, np.broadcast_to(iy[:, :, None], inner.shape)[inner],
         np.broadcast_to(ix[:, None, :], inner.shape)[inner]] = -np.inf
    bound = np.maximum(rest.reshape(m, -1).max(axis=1), 0.0).astype(np.float64)
    ok = (second > 0) & (bound * (1 + 1e-9) < second)
    width = 2 * d + 1
    base_y, base_x = py - d + MEGVII_PAD, px - d + MEGVII_PAD   # R's corner in padded coordinates
    out = np.stack([base_y + a1 // width, base_x + a1 % width, base_y + a2 // width, base_x + a2 % width])
    return out, ok


def megvii_peaks(hm, kernel):
    """First and second argmax (padded coordinates, as the original) of each blurred, padded map.

    Args: hm (M, h, w) float32/float64 maps; kernel odd.
    Returns: y1, x1, y2, x2 int arrays (M,) in the 10-px padded frame (subtract 10 for map pixels).
    """
    if hm.shape[0] == 0:
        return tuple(np.zeros((4, 0), np.int64))
    if 2 * (kernel // 2) > MEGVII_PAD:          # MLPE's 21: R would leave the zero padding
        out = _peaks_exact(hm, kernel)
    else:
        out, ok = _peaks_local(hm, kernel)
        slow = np.nonzero(~ok)[0]
        if slow.size:
            out[:, slow] = _peaks_exact(hm[slow], kernel)
    return out[0], out[1], out[2], out[3]
