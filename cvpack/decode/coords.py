"""Coordinate frames: input-crop pixels <-> image pixels (top-down test crops have no rotation)."""
import numpy as np

from ..utils import to_numpy


def _np(x, name):
    x = to_numpy(x, np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError('%s contains NaN or inf' % name)
    return x


def _frames(coords, center, scale, input_hw, pixel_std):
    coords = _np(coords, 'coords')
    center = _np(center, 'center').reshape(-1, 1, 2)
    scale = _np(scale, 'scale').reshape(-1, 1, 2)
    if coords.ndim != 3 or coords.shape[-1] != 2 or center.shape[0] != coords.shape[0]:
        raise ValueError('expected coords (N, K, 2) with center/scale (N, 2); got %s, %s, %s'
                         % (coords.shape, center.shape, scale.shape))
    # crop size in image pixels (w, h), rounded to float32 as both originals do: Megvii's get_results multiplies the
    # dataset's float32 scales by 200 in place, Simple Baselines' get_affine_transform its float32 meta scale
    box = (scale.astype(np.float32) * np.float32(pixel_std)).astype(np.float64)
    size = np.array([input_hw[1], input_hw[0]], dtype=np.float64)  # input (W, H)
    return coords, center, box, size


def to_image_coords(coords, center, scale, input_hw, pixel_std=200):
    """Map keypoints from input-crop pixels to image pixels.

    Args:
        coords: (N, K, 2) (x, y) in input-crop pixels (what the decoders return).
        center: (N, 2) crop centre in image pixels.
        scale: (N, 2) crop size in units of ``pixel_std`` (so the crop is ``scale * pixel_std`` px).
        input_hw: (H, W) of the network input.

    Returns:
        (N, K, 2) float64 image pixels: ``u / W * box + center - box / 2`` with ``box = scale * pixel_std`` in
        float32 (the Megvii ``get_results`` formula and order of operations, bit for bit,
        ``docs/reference/rsn_mspn.md`` §5.3; Simple Baselines' ``transform_preds`` up to float32 rounding, which
        :func:`to_image_coords_affine` reproduces exactly).
    """
    coords, center, box, size = _frames(coords, center, scale, input_hw, pixel_std)
    return coords / size * box + center - box * 0.5


def to_image_coords_affine(coords, center, scale, input_hw, output_hw, pixel_std=200):
    """Simple Baselines' ``transform_preds``, bit for bit: input-crop pixels (N, K, 2) -> image pixels (N, K, 2).

    The original maps *heatmap* coordinates through ``cv2.getAffineTransform`` of float32 points built from the
    centre and the crop width only (``get_affine_transform(c, s, 0, heatmap_size, inv=1)``), then stores them in its
    float32 prediction array. For an aspect-fitted box this is :func:`to_image_coords` up to float32 rounding (up
    to 6.5e-5 px on 256 random crops; docs/reference/defects.md F#19); this re-statement gives the original's bits.

    Args: as :func:`to_image_coords`, plus ``output_hw`` (h, w) the heatmap size. Returns float64 holding
    float32 values.
    """
    from ..data.transforms import affine_points, get_affine_transform   # cvpack.data imports cvpack.decode
    coords, center, box, _ = _frames(coords, center, scale, input_hw, pixel_std)
    stride = np.array([input_hw[1] / output_hw[1], input_hw[0] / output_hw[0]], np.float64)
    heat = coords / stride
    out = np.empty_like(heat)
    for n in range(heat.shape[0]):
        trans = get_affine_transform(center[n, 0], box[n, 0], 0, (output_hw[1], output_hw[0]), inv=True)
        out[n] = affine_points(heat[n], trans)
    return out.astype(np.float32).astype(np.float64)


def to_input_coords(coords, center, scale, input_hw, pixel_std=200):
    """Inverse of :func:`to_image_coords`: image pixels (N, K, 2) -> input-crop pixels (N, K, 2)."""
    coords, center, box, size = _frames(coords, center, scale, input_hw, pixel_std)
    return ((coords - center) / box + 0.5) * size
