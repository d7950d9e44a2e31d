"""Top-down geometry: centre/scale boxes, aspect fit, half body, flip, and the crop affine.

Conventions. A box is ``center`` (x, y) in image pixels plus ``scale`` (sx, sy) in units of
``pixel_std`` (200) pixels, as in Megvii and Simple Baselines. The crop affine maps the box of
``scale * pixel_std`` pixels around ``center`` onto the network input (W, H), centre to (W/2, H/2),
with rotation about the centre (HRNet three-point construction; ``docs/reference/rsn_mspn.md`` §3.4 step 5).
All joint functions are vectorised over joints: ``joints`` is (K, 2) or (K, 3) float.
"""
import cv2
import numpy as np

from .meta import flip_permutation

__all__ = ['xywh_to_cs_megvii', 'xywh_to_cs_simple_baselines', 'fit_aspect', 'extend_scale',
           'half_body_box', 'flip_joints', 'flip_center_x', 'get_affine_transform', 'affine_points']


def xywh_to_cs_megvii(box, pixel_std=200.0):
    """Megvii COCO loader: centre (x + w/2, y + h/2), scale (w, h) / pixel_std; no padding, no aspect fit."""
    x, y, w, h = [float(v) for v in box[:4]]
    return (np.array([x + w * 0.5, y + h * 0.5], np.float32),
            np.array([w / pixel_std, h / pixel_std], np.float32))


def xywh_to_cs_simple_baselines(box, aspect_ratio, pixel_std=200.0, padding=1.25):
    """Simple Baselines ``_xywh2cs``: aspect fit (w/h = ``aspect_ratio``), then ``padding`` (x1.25).

    Returns float32 centre (2,) and scale (2,) in pixel_std units.
    """
    x, y, w, h = [float(v) for v in box[:4]]
    center = np.array([x + w * 0.5, y + h * 0.5], np.float32)
    if w > aspect_ratio * h:
        h = w * 1.0 / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w * 1.0 / pixel_std, h * 1.0 / pixel_std], np.float32)
    if center[0] != -1:
        scale = scale * padding
    return center, scale


def fit_aspect(scale, w_h_ratio):
    """Enlarge the relatively smaller side so that sx / sy == ``w_h_ratio`` (Megvii: ``>`` else branch)."""
    scale = np.array(scale, np.float32)
    if scale[0] > w_h_ratio * scale[1]:
        scale[1] = scale[0] * 1.0 / w_h_ratio
    else:
        scale[0] = scale[1] * 1.0 * w_h_ratio
    return scale


def extend_scale(scale, x_ext, y_ext, basic_ext=0.0, rx=1.0, ry=1.0):
    """Megvii box extension: ``scale * (1 + basic)`` then x by ``(1 + rx * x_ext)``, y by ``(1 + ry * y_ext)``."""
    scale = np.array(scale, np.float32)
    scale *= (1 + basic_ext)
    scale[0] *= (1 + rx * x_ext)
    scale[1] *= (1 + ry * y_ext)
    return scale


def half_body_box(joints, vis, upper_ids, choose_upper, rx, ry, x_ext, y_ext, w_h_ratio, pixel_std=200.0):
    """Half-body box (Megvii/HRNet); returns ``(center, scale)`` or ``(None, None)``.

    Args:
        joints: (K, 2+) joints in image pixels; vis: (K,) visibility, joints with vis > 0 count.
        upper_ids: ids of the upper body; a visible joint not in it is lower body (upper is tested first,
            so COCO hips are upper; ``docs/reference/rsn_mspn.md`` §2.2).
        choose_upper: the caller's draw (Megvii: ``randn() < 0.5``); the upper body is taken only if it has
            more than 3 joints, else the lower one if it has more than 3, else the upper one.
        rx, ry: U[0, 1) draws for the width/height extension by ``(1 + r * ext)``.
    The new centre is the selected joints' bounding-box centre (docs/reference/rsn_mspn.md §3.4 step 4); the box is
    aspect fitted.
    """
    vis = np.asarray(vis).reshape(-1) > 0
    is_upper = np.zeros(len(vis), bool)
    is_upper[list(upper_ids)] = True
    upper = joints[vis & is_upper, :2]
    lower = joints[vis & ~is_upper, :2]
    if choose_upper and len(upper) > 3:
        sel = upper
    else:
        sel = lower if len(lower) > 3 else upper
    if len(sel) < 3:
        return None, None
    sel = np.asarray(sel, np.float32)
    lt, rb = sel.min(axis=0), sel.max(axis=0)
    center = (lt + rb) / 2
    w = (rb[0] - lt[0]) * (1 + rx * x_ext)
    h = (rb[1] - lt[1]) * (1 + ry * y_ext)
    if w > w_h_ratio * h:
        h = w * 1.0 / w_h_ratio
    elif w < w_h_ratio * h:
        w = h * w_h_ratio
    return center.astype(np.float32), np.array([w / pixel_std, h / pixel_std], np.float32)


def flip_joints(joints, vis, img_width, flip_pairs):
    """Mirror joints of an image ``img_width`` wide: x -> W - 1 - x, swap left/right pairs (with their vis).

    Returns new arrays ``(joints, vis)``; joints with vis == 0 keep their mirrored coordinates
    (they are ignored everywhere downstream).
    """
    joints = np.array(joints, np.result_type(np.asarray(joints).dtype, np.float32), copy=True)  # keeps float64
    vis = np.array(vis, copy=True)
    joints[:, 0] = img_width - 1 - joints[:, 0]
    perm = flip_permutation(len(joints), flip_pairs)
    return joints[perm], vis[perm]


def flip_center_x(center, img_width):
    center = np.array(center, np.float32, copy=True)
    center[0] = img_width - center[0] - 1
    return center


def _rotate(pt, rot_rad):
    """Rotate a 2-vector in float64 (numpy scalars, as the originals' ``get_dir``: a float32 length times
    ``np.sin`` is float64; a Python-float ``math.sin`` would keep it float32 under numpy's promotion rules)."""
    sn, cs = np.sin(np.float64(rot_rad)), np.cos(np.float64(rot_rad))
    return np.array([pt[0] * cs - pt[1] * sn, pt[0] * sn + pt[1] * cs], np.float64)


def _third_point(a, b):
    d = a - b
    return b + np.array([-d[1], d[0]], np.float32)


def get_affine_transform(center, scale_px, rot, out_wh, inv=False, shift=(0.0, 0.0)):
    """2x3 affine from the crop box to the output (or back with ``inv``); HRNet three-point construction.

    Args:
        center: (2,) box centre, image pixels.
        scale_px: (2,) box size in pixels (``scale * pixel_std``); only the width is used, the height
            follows from ``out_wh`` (the box is aspect fitted beforehand), exactly as the originals.
        rot: rotation in degrees, the originals' sign (positive turns the crop content clockwise
            on screen, i.e. the source box is rotated counter-clockwise in y-down pixel axes).
        out_wh: (W, H) of the output.
        inv: return the output -> image transform instead.
    Returns:
        float64 (2, 3) matrix for ``cv2.warpAffine`` / :func:`affine_points`.
    """
    center = np.asarray(center, np.float32)
    scale_px = np.resize(np.asarray(scale_px, np.float32), 2)   # a scalar means a square box
    shift = np.asarray(shift, np.float32)
    src_w = scale_px[0]
    dst_w, dst_h = float(out_wh[0]), float(out_wh[1])
    rot_rad = np.pi * rot / 180
    src_dir = _rotate([0, src_w * -0.5], rot_rad)
    dst_dir = np.array([0, dst_w * -0.5], np.float32)
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center + scale_px * shift
    # The originals add the float64 direction to the float32 centre and round once on assignment; adding it to
    # the already-rounded src[0] in float32 moved rotated joints by up to 5e-3 px (docs/reference).
    src[1] = center + src_dir + scale_px * shift
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + dst_dir
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    if inv:
        return cv2.getAffineTransform(dst, src)
    return cv2.getAffineTransform(src, dst)


def affine_points(points, mat):
    """Apply a (2, 3) affine to points (..., 2+) -> (..., 2) float64 (vectorised ``affine_transform``).

    float64 like the originals' ``np.dot(t, [x, y, 1])``, so in/out-of-crop tests and target cells match.
    """
    mat = np.asarray(mat, np.float64)
    pts = np.asarray(points, np.float64)[..., :2]
    return pts[..., 0:1] * mat[:, 0] + pts[..., 1:2] * mat[:, 1] + mat[:, 2]
