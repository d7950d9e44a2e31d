"""Drawing keypoints and skeletons on BGR images (colours from ``cvpack.data.meta``)."""
import os
import os.path as osp

import cv2
import numpy as np


def _as_keypoints(instances_or_keypoints):
    """Instance dicts (with 'keypoints' (K, 3)) or an array (P, K, 3) / (K, 3) -> (P, K, 3) float64."""
    if isinstance(instances_or_keypoints, (list, tuple)) and instances_or_keypoints \
            and isinstance(instances_or_keypoints[0], dict):
        return np.stack([np.asarray(i['keypoints'], np.float64).reshape(-1, 3) for i in instances_or_keypoints])
    kps = np.asarray(instances_or_keypoints, dtype=np.float64)
    if kps.size == 0:
        return kps.reshape(0, 0, 3)
    if kps.ndim == 2:
        kps = kps[None]
    if kps.ndim != 3 or kps.shape[2] != 3:
        raise ValueError('draw_skeleton expects keypoints (P, K, 3), got shape %s' % (kps.shape,))
    return kps


def draw_skeleton(image_bgr, instances_or_keypoints, meta, kp_thresh=0.2, radius=3, thickness=2):
    """Draw each person's skeleton links and joints on a copy of ``image_bgr``.

    Args:
        image_bgr: (H, W, 3) uint8 BGR image (not modified).
        instances_or_keypoints: list of instance dicts or array (P, K, 3) of (x, y, score) in image pixels.
        meta: :class:`cvpack.data.meta.DatasetMeta` (skeleton, skeleton_colors, keypoint_colors; BGR).
        kp_thresh: joints with score <= kp_thresh and links touching them are not drawn
            (use it with v in {0, 1, 2} for GT: 0.5 hides unlabelled joints).

    Returns:
        the drawn (H, W, 3) uint8 image.
    """
    image = np.ascontiguousarray(np.asarray(image_bgr, dtype=np.uint8)).copy()
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError('draw_skeleton expects an (H, W, 3) BGR image, got shape %s' % (image.shape,))
    kps = _as_keypoints(instances_or_keypoints)
    if kps.shape[0] and kps.shape[1] != meta.num_keypoints:
        raise ValueError('%d keypoints per person, but %s metadata has %d'
                         % (kps.shape[1], meta.name, meta.num_keypoints))
    for person in kps:
        ok = (person[:, 2] > kp_thresh) & np.all(np.isfinite(person[:, :2]), axis=1)
        pts = np.round(np.where(ok[:, None], person[:, :2], 0)).astype(np.int32)
        for (a, b), color in zip(meta.skeleton, meta.skeleton_colors):
            if ok[a] and ok[b]:
                cv2.line(image, (int(pts[a, 0]), int(pts[a, 1])), (int(pts[b, 0]), int(pts[b, 1])),
                         color, thickness, cv2.LINE_AA)
        for j in np.nonzero(ok)[0]:
            cv2.circle(image, tuple(int(v) for v in pts[j]), radius, meta.keypoint_colors[j], -1, cv2.LINE_AA)
    return image


def save_png(path, image):
    """Write ``image`` (H, W, 3) BGR uint8 to ``path`` (.png), creating the folder; raise if it fails."""
    path = str(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if not cv2.imwrite(path, np.asarray(image)):
        raise OSError('could not write image %s (extension .png expected)' % path)
    return path
