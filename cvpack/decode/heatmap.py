"""Heatmap decoders, batched over images and joints (no Python loop per joint).

Top-down code decodes through a codec (:mod:`cvpack.codecs`), which states each decoder's frame and score rule
(``DECODER_CONVENTIONS``) and checks ``TEST.DECODER`` against the targets.

Every decoder takes heatmaps (N, K, h, w) as a torch tensor (any device) or a numpy array and returns
``(coords, scores)`` as numpy arrays: coords (N, K, 2) float64 (x, y) in **input-crop pixels**, scores
(N, K) float64. Map them to image pixels with :func:`cvpack.decode.coords.to_image_coords`.
``stride`` is the input/heatmap size ratio, a number or an (sx, sy) pair.

Decoders:
  * :func:`decode_megvii` - RSN/MSPN ``get_results`` (``docs/reference/rsn_mspn.md`` §5.3) and MLPE
    (kernel 21, ``docs/reference/mlpe_hsrnet_gcpose.md`` §1.9), bit-for-bit including ties (the two maxima
    come from :mod:`cvpack.decode.megvii`).
  * :func:`decode_quarter` - Simple Baselines ``get_final_preds`` (argmax + quarter offset,
    docs/reference/mlpe_hsrnet_gcpose.md §2.7).
  * :func:`decode_argmax` - plain argmax.
  * :func:`decode_dark` - DARK (Zhang et al. 2020; mmpose ``refine_keypoints_dark``, in its ``x * stride`` frame,
    not DarkPose's (w-1)-aligned one: docs/reference/defects.md F#4).
"""
import cv2
import numpy as np

from ..utils import to_numpy

from .megvii import MEGVII_PAD, blur_stack, megvii_peaks


class NonFiniteHeatmaps(ValueError):
    """Heatmaps holding NaN/inf; ``samples`` lists the batch positions of the samples with such a map (callers
    that know the images and boxes of a batch name them: :class:`cvpack.inference.topdown.TopDownPredictor`)."""

    def __init__(self, message, samples=()):
        super().__init__(message)
        self.samples = [int(n) for n in samples]


def _to_numpy(heatmaps):
    heatmaps = to_numpy(heatmaps)
    if heatmaps.ndim != 4:
        raise ValueError('decoders expect heatmaps (N, K, h, w), got shape %s' % (heatmaps.shape,))
    if heatmaps.dtype not in (np.float32, np.float64):
        heatmaps = heatmaps.astype(np.float32)
    # NaN/inf never decode to a keypoint: argmax and the blurs turn them into finite cells (an all-NaN map gave
    # the megvii decoder's cell (0, 0), a map with one NaN a plausible peak with score 0.5), so a diverged model
    # or an fp16 overflow scored as a poor one (MPII PCKh 0, exit 0)
    if not np.isfinite(heatmaps).all():
        finite = np.isfinite(heatmaps).all(axis=(2, 3))
        n, k = np.argwhere(~finite)[0]
        raise NonFiniteHeatmaps('heatmaps hold NaN/inf in %d of %d maps (first: sample %d, joint %d): the model '
                                'output is not finite' % ((~finite).sum(), finite.size, n, k),
                                np.nonzero(~finite.all(axis=1))[0])
    return heatmaps


def _stride_xy(stride):
    sx, sy = (stride, stride) if np.isscalar(stride) else stride
    return float(sx), float(sy)


def decode_megvii(heatmaps, kernel=5, shift_ratio=0.25, stride=4):
    """Megvii decoder: blur, argmax, 0.25 px toward the second maximum, ``x * stride + stride / 2``.

    Exactly the original ``get_results`` per joint (``docs/reference/rsn_mspn.md`` §5.3), batched: zero-pad
    the map by 10 px, ``cv2.GaussianBlur((k, k), 0)`` in float64, take the first argmax (raster order),
    set it to 0, take the next argmax; if the vector between them is longer than 1e-3 move the first
    by ``shift_ratio`` heatmap px along it; clip to the map; x_in = x * sx + sx / 2.
    Score = the *unblurred* heatmap at the rounded position / 255 + 0.5 (computed in the heatmap dtype).
    MLPE uses the same logic with kernel 21. Its test also divides each map by its maximum before blurring; we
    do not (docs/reference/defects.md F#3, a deliberate fix): for a positive maximum the result is the same bit
    for bit, but a negative maximum flips the map and the original decodes its *minimum*, where ours decodes the
    undivided map (an all-negative map gives the zero padding's maximum: cell (0, 0), score below 0.5).

    Args:
        heatmaps: (N, K, h, w) torch or numpy, peak ~255 (megvii/cpn targets).
        kernel: odd Gaussian kernel size (cfg.TEST.GAUSSIAN_KERNEL: 5 COCO, 9 MPII, 21 MLPE).
        shift_ratio: cfg.TEST.SHIFT_RATIOS[0].
        stride: input/heatmap ratio, number or (sx, sy).

    Returns:
        coords (N, K, 2) input-crop pixels, scores (N, K).
    """
    if kernel % 2 != 1 or kernel < 1:
        raise ValueError('decode_megvii: kernel must be a positive odd size, got %r' % (kernel,))
    hm = _to_numpy(heatmaps)
    n, k, h, w = hm.shape
    sx, sy = _stride_xy(stride)
    y1, x1, y2, x2 = megvii_peaks(hm.reshape(n * k, h, w), kernel)

    dx, dy = x2 - x1, y2 - y1
    length = (dx ** 2 + dy ** 2) ** 0.5         # same operations as the original, for identical rounding
    move = length > 1e-3
    safe = np.where(move, length, 1.0)
    x = (x1 - MEGVII_PAD).astype(np.float64)
    y = (y1 - MEGVII_PAD).astype(np.float64)
    x = np.where(move, x + shift_ratio * dx / safe, x)
    y = np.where(move, y + shift_ratio * dy / safe, y)
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)

    raw = hm.reshape(n * k, h, w)[np.arange(n * k), np.round(y).astype(np.int64), np.round(x).astype(np.int64)]
    scores = raw / 255 + 0.5                    # heatmap dtype, as the original's score_map
    coords = np.stack([x * sx + sx / 2, y * sy + sy / 2], axis=-1).reshape(n, k, 2)
    return coords, scores.astype(np.float64).reshape(n, k)


def _max_preds(hm):
    """Simple Baselines ``get_max_preds``: integer argmax (x, y) per map, zeroed where the max <= 0.

    Returns coords (N, K, 2) float64 heatmap px, maxvals (N, K) (heatmap dtype), flat index (N, K).
    """
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, h * w)
    idx = flat.argmax(axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float64)
    coords *= (maxvals > 0)[..., None]
    return coords, maxvals, idx


def decode_argmax(heatmaps, stride=4):
    """Plain argmax: coords = (x, y) * stride (input-crop px), scores = heatmap max (N, K)."""
    hm = _to_numpy(heatmaps)
    coords, maxvals, _ = _max_preds(hm)
    return coords * np.array(_stride_xy(stride)), maxvals.astype(np.float64)


def _gather(hm, ys, xs):
    """hm (N, K, h, w) values at integer (ys, xs) (N, K), indices clipped into the map."""
    n, k, h, w = hm.shape
    ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    return hm[np.arange(n)[:, None], np.arange(k)[None, :], ys, xs]


def decode_quarter(heatmaps, stride=4):
    """Simple Baselines ``get_final_preds``: argmax + 0.25 px toward the higher neighbour.

    The offset is ``sign(hm[y, x+1] - hm[y, x-1]) * 0.25`` (same for y) and applies only when
    ``1 < x < w - 1`` and ``1 < y < h - 1`` (the original's condition, x = floor(x + 0.5)).
    Coords = x * stride (no half-pixel term, matching Simple Baselines' centre ``int(x / stride + 0.5)``).

    Returns coords (N, K, 2) input-crop pixels, scores = heatmap max (N, K).
    """
    hm = _to_numpy(heatmaps)
    h, w = hm.shape[2:]
    coords, maxvals, _ = _max_preds(hm)
    px = np.floor(coords[..., 0] + 0.5).astype(np.int64)
    py = np.floor(coords[..., 1] + 0.5).astype(np.int64)
    inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    diff_x = _gather(hm, py, px + 1) - _gather(hm, py, px - 1)
    diff_y = _gather(hm, py + 1, px) - _gather(hm, py - 1, px)
    offset = np.stack([np.sign(diff_x), np.sign(diff_y)], axis=-1) * 0.25
    coords = coords + np.where(inside[..., None], offset, 0.0)
    return coords * np.array(_stride_xy(stride)), maxvals.astype(np.float64)


def _dark_modulate(hm, kernel):
    """DARK distribution modulation without the log: zero-border Gaussian blur of each map (float32, as
    mmpose stores it), rescaled so its max equals the raw max. Returns (blurred (N, K, h, w), ratio (N, K));
    the log is taken only at the few pixels the Taylor step reads.
    """
    n, k, h, w = hm.shape
    r = kernel // 2
    canvas = np.zeros((n * k, h + 4 * r, w + 4 * r), np.float32)   # 2r zero rows between stacked maps
    canvas[:, 2 * r:2 * r + h, 2 * r:2 * r + w] = hm.reshape(n * k, h, w)
    blurred = blur_stack(canvas, kernel)[:, r:r + h, r:r + w].reshape(n, k, h, w)
    origin_max = hm.reshape(n, k, h * w).max(axis=2).astype(np.float64)
    new_max = blurred.max(axis=(2, 3)).astype(np.float64)
    ratio = np.where(new_max > 0, origin_max / np.where(new_max > 0, new_max, 1.0), 1.0)
    return blurred, ratio


def decode_dark(heatmaps, kernel=11, stride=4):
    """DARK: argmax refined by a second-order Taylor step on the log of the modulated heatmap.

    As mmpose ``refine_keypoints_dark``: blur (kernel 11 for sigma-2 targets, 17 for sigma 3), rescale
    to the original max, log; at the integer argmax (x, y) with ``1 < x < w - 2`` and ``1 < y < h - 2``,
    offset = -H^-1 g with central differences (g with step 1, H with step 2), skipped when det(H) = 0.

    Frame: ``x * stride`` as mmpose's DARK refinement, not DarkPose's ``get_final_preds``, which maps through its
    (w - 1)-aligned affine: results differ from DarkPose's by up to 16 image px (docs/reference/defects.md F#4).

    Returns coords (N, K, 2) input-crop pixels (x * stride), scores = raw heatmap max (N, K).
    """
    if kernel % 2 != 1:
        raise ValueError('decode_dark: kernel must be odd, got %r' % (kernel,))
    hm = _to_numpy(heatmaps)
    h, w = hm.shape[2:]
    coords, maxvals, _ = _max_preds(hm)
    blurred, ratio = _dark_modulate(hm, kernel)
    x, y = coords[..., 0].astype(np.int64), coords[..., 1].astype(np.int64)
    ok = (maxvals > 0) & (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)

    def at(dy, dx):
        return np.log(np.maximum(_gather(blurred, y + dy, x + dx) * ratio, 1e-10))
    centre = at(0, 0)
    gx = 0.5 * (at(0, 1) - at(0, -1))
    gy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    dyy = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    det = dxx * dyy - dxy ** 2
    ok &= det != 0
    det = np.where(ok, det, 1.0)
    off_x = -(dyy * gx - dxy * gy) / det           # -H^-1 g with H^-1 = [[dyy, -dxy], [-dxy, dxx]] / det
    off_y = -(dxx * gy - dxy * gx) / det
    coords = coords + np.where(ok[..., None], np.stack([off_x, off_y], axis=-1), 0.0)
    return coords * np.array(_stride_xy(stride)), maxvals.astype(np.float64)


def decode_mmpose_megvii(heatmaps, kernel=5, stride=4):
    """mmpose 1.x's ``MegviiHeatmap.decode`` (the decoder of its RSN/MSPN configs), for imported mmpose weights.

    Not the Megvii original (:func:`decode_megvii`): per map (float32) the zero-bordered ``cv2.GaussianBlur`` is
    rescaled to the raw maximum, the first argmax is taken (set to -1 when the maximum is <= 0), and only when
    ``1 < x < w - 1`` and ``1 < y < h - 1`` it moves by ``sign(neighbour difference) * 0.25 + 0.5`` per axis (so
    border peaks get no half-pixel centring, as in mmpose). Coordinates are then multiplied by the stride;
    score = blurred maximum / 255 + 0.5. A map whose blurred maximum is 0 (all zeros; zeros and negatives) decodes
    to mmpose 1.3.2's cell (0, 0), with score 0.5 where mmpose's 0 / 0 rescaling gives NaN.

    Args:
        heatmaps: (N, K, h, w) torch or numpy. kernel: odd blur size (cfg.TEST.GAUSSIAN_KERNEL, 5 in mmpose).
        stride: input/heatmap ratio, number or (sx, sy).
    Returns:
        coords (N, K, 2) input-crop pixels, scores (N, K).
    """
    if kernel % 2 != 1 or kernel < 1:
        raise ValueError('decode_mmpose_megvii: kernel must be a positive odd size, got %r' % (kernel,))
    hm = _to_numpy(heatmaps).astype(np.float32)
    n, k, h, w = hm.shape
    sx, sy = _stride_xy(stride)
    border = (kernel - 1) // 2
    maps = hm.reshape(n * k, h, w)
    coords = np.zeros((n * k, 2), np.float32)
    scores = np.zeros(n * k, np.float32)
    for m, raw in enumerate(maps):
        padded = np.zeros((h + 2 * border, w + 2 * border), np.float32)
        padded[border:border + h, border:border + w] = raw
        blur = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:border + h, border:border + w].copy()
        if blur.max() == 0:   # mmpose rescales by 0 / 0 here: NaN map, argmax cell (0, 0), NaN score
            coords[m], scores[m] = (0, 0), 0.5          # its cell, and the finite score of a value 0
            continue
        blur *= raw.max() / blur.max()
        idx = int(np.argmax(blur))
        val = blur.reshape(-1)[idx]
        py, px = divmod(idx, w)
        xy = np.array([px, py], np.float32) if val > 0 else np.array([-1, -1], np.float32)
        if val > 0 and 1 < px < w - 1 and 1 < py < h - 1:
            diff = np.array([blur[py, px + 1] - blur[py, px - 1], blur[py + 1, px] - blur[py - 1, px]])
            xy += np.sign(diff) * 0.25 + 0.5
        coords[m], scores[m] = xy, val / 255.0 + 0.5
    coords = coords * np.array([sx, sy], np.float32)
    return coords.astype(np.float64).reshape(n, k, 2), scores.astype(np.float64).reshape(n, k)


DECODERS = {'megvii': decode_megvii, 'quarter': decode_quarter, 'argmax': decode_argmax, 'dark': decode_dark,
            'mmpose_megvii': decode_mmpose_megvii}


def decoder_kwargs(cfg):
    """Decoder name and keyword arguments from a config (cfg.TEST.DECODER, INPUT/OUTPUT_SHAPE ...)."""
    name = cfg.TEST.DECODER
    in_h, in_w = cfg.INPUT_SHAPE
    out_h, out_w = cfg.OUTPUT_SHAPE
    kwargs = {'stride': (in_w / out_w, in_h / out_h)}
    if name == 'megvii':
        kwargs.update(kernel=int(cfg.TEST.GAUSSIAN_KERNEL), shift_ratio=float(cfg.TEST.SHIFT_RATIOS[0]))
    elif name == 'dark':
        kwargs.update(kernel=int(cfg.TEST.DARK_KERNEL))
    elif name == 'mmpose_megvii':
        kwargs.update(kernel=int(cfg.TEST.GAUSSIAN_KERNEL))  # optional preset key; 11 = sigma 2
    return name, kwargs


def decode_heatmaps(cfg_or_name, heatmaps, **kwargs):
    """Dispatch to a decoder by name (see :data:`DECODERS`) or by ``cfg.TEST.DECODER``.

    With a config, stride and the decoder's parameters come from it; ``kwargs`` override them.
    Returns ``(coords (N, K, 2) input-crop px, scores (N, K))``.
    """
    if isinstance(cfg_or_name, str):
        name, params = cfg_or_name, {}
    else:
        name, params = decoder_kwargs(cfg_or_name)
    if name not in DECODERS:
        raise KeyError('unknown decoder %r (TEST.DECODER); known: %s' % (name, sorted(DECODERS)))
    params.update(kwargs)
    return DECODERS[name](heatmaps, **params)
