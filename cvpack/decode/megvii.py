"""The two maxima of the Megvii decoder (blurred, 10-px zero-padded maps), batched and bit-exact.

The original (``reference_rsn_mspn.md`` §5.3) pads each map with 10 zeros, blurs it in float64 with
``cv2.GaussianBlur((k, k), 0)`` (reflect-101 border), takes the first argmax in raster order, zeroes
it and takes the next argmax. :func:`megvii_peaks` returns the same two positions for many maps:

* exact path: one cv2 call on all maps stacked into a tall float64 image (bit-identical values);
* fast path (float32 maps, k <= 11): a float32 blur only *selects candidates* - every position whose
  float32 value is within 2 eps of the second-largest value, eps bounding the float32 rounding -
  and the float64 values of those few candidates are computed by cv2 on (2r+1)^2 patches, which gives
  the same bits as the full-image blur (checked in tests/decode). Maps with many candidates (plateaus,
  empty maps) or a non-positive second maximum go through the exact path.
"""
import cv2
import numpy as np

MEGVII_PAD = 10          # zero border added before blurring in the original get_results
MAX_CANDIDATES = 64      # per map, above this the exact path is cheaper
CHUNK = 64               # maps per pass: keeps the float32 canvas and its blur (~2 MB) in L2 cache


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
    window, lo = _blurred_window(hm, kernel)
    width = window.shape[2]
    flat = window.reshape(hm.shape[0], -1)      # our own array: zeroing in place is safe
    y1, x1, idx1 = _padded_argmax(flat, width, lo)
    rows = np.nonzero(idx1 >= 0)[0]
    flat[rows, idx1[rows]] = 0                  # the original zeroes the first maximum
    y2, x2, _ = _padded_argmax(flat, width, lo)
    return y1, x1, y2, x2


def _candidates(hm, kernel):
    """Float32 screening. Returns (canvas, fast map mask, candidate map ids, flat canvas positions)."""
    m, h, w = hm.shape
    r = kernel // 2
    canvas = np.zeros((m, h + 4 * r, w + 4 * r), np.float32)
    canvas[:, 2 * r:2 * r + h, 2 * r:2 * r + w] = hm
    b32 = cv2.GaussianBlur(canvas.reshape(-1, w + 4 * r), (kernel, kernel), 0).reshape(m, -1)
    # float32 rounding of a separable k x k blur is < 2k * 2^-24 * max|x| per value; eps is ~16x that
    flat_hm = hm.reshape(m, -1)
    eps = 2e-6 * kernel * np.maximum(flat_hm.max(axis=1), -flat_hm.min(axis=1))
    rows = np.arange(m)
    i1 = b32.argmax(axis=1)
    v1 = b32[rows, i1]
    b32[rows, i1] = -np.inf
    v2 = b32.max(axis=1)                        # 2nd largest value (= v1 on ties)
    b32[rows, i1] = v1
    # The true first and second maxima (any p1) are >= v2 - 2 eps in float32.
    thresh = v2 - 2 * eps
    flat_pos = np.flatnonzero(b32 >= thresh[:, None])
    map_ids, pos = np.divmod(flat_pos, b32.shape[1])
    fast = (thresh > 0) & (np.bincount(map_ids, minlength=m) <= MAX_CANDIDATES)
    keep = fast[map_ids]
    return canvas, fast, map_ids[keep], pos[keep]


def _peaks_fast(hm, kernel):
    """(y1, x1, y2, x2) padded coords for the maps that pass screening (else -1) and the fast mask."""
    m, h, w = hm.shape
    r = kernel // 2
    canvas, fast, map_ids, pos = _candidates(hm, kernel)
    wc = w + 4 * r
    cy, cx = pos // wc, pos % wc               # positive blur => within r of the map: patches fit
    offs = np.arange(-r, r + 1)
    patches = canvas[map_ids[:, None, None], cy[:, None, None] + offs[:, None], cx[:, None, None] + offs]
    patches = patches.astype(np.float64)
    exact = cv2.GaussianBlur(patches.reshape(-1, 2 * r + 1), (kernel, kernel), 0)
    exact = exact.reshape(patches.shape)[:, r, r]
    # per map: highest value first, ties by raster order (= canvas order); 1st and 2nd entries
    order = np.lexsort((pos, -exact, map_ids))
    ids_sorted = map_ids[order]
    first = np.nonzero(np.r_[True, ids_sorted[1:] != ids_sorted[:-1]])[0]
    out = np.full((4, m), -1, dtype=np.int64)
    lo = MEGVII_PAD - 2 * r                     # canvas -> padded coordinates
    for slot, at in ((0, first), (2, first + 1)):  # each fast map has >= 2 candidates (p1 and v2's)
        sel = order[at]
        out[slot, map_ids[sel]] = cy[sel] + lo
        out[slot + 1, map_ids[sel]] = cx[sel] + lo
    return out, fast


def _peaks_chunk(hm, kernel):
    if hm.dtype != np.float32 or 2 * (kernel // 2) > MEGVII_PAD:
        return np.stack(_peaks_exact(hm, kernel))
    out, fast = _peaks_fast(hm, kernel)
    slow = np.nonzero(~fast)[0]
    if slow.size:
        out[:, slow] = np.stack(_peaks_exact(hm[slow], kernel))
    return out


def megvii_peaks(hm, kernel):
    """First and second argmax (padded coordinates, as the original) of each blurred, padded map.

    Args: hm (M, h, w) float32/float64 maps; kernel odd.
    Returns: y1, x1, y2, x2 int arrays (M,) in the 10-px padded frame (subtract 10 for map pixels).
    """
    if hm.shape[0] == 0:
        return tuple(np.zeros((4, 0), np.int64))
    out = np.concatenate([_peaks_chunk(hm[i:i + CHUNK], kernel) for i in range(0, hm.shape[0], CHUNK)], axis=1)
    return out[0], out[1], out[2], out[3]
