"""Instance (person) scores from the detection score and the keypoint scores."""
import numpy as np


def rescore_megvii(det_scores, keypoint_scores):
    """RSN/MSPN/MLPE: det score x mean of all K keypoint scores, no threshold (``docs/reference/rsn_mspn.md`` §5.4).

    Args: det_scores (N,), keypoint_scores (N, K). Returns (N,) float64. Works for N = 1, where the
    original's ``maxvals.squeeze().mean(axis=1)`` raised AxisError (docs/reference/defects.md R#13).
    """
    det = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    kp = np.asarray(keypoint_scores, dtype=np.float64).reshape(det.shape[0], -1)
    return det * kp.mean(axis=1)


def rescore_simple_baselines(det_scores, keypoint_scores, thresh=0.2):
    """Simple Baselines / HRNet: det score x mean of the keypoint scores above ``thresh`` (IN_VIS_THRE).

    When no keypoint is above the threshold the keypoint term is 0, as in the original
    (``kpt_score = 0`` unless ``valid_num != 0``) and in mmpose's ``bbox_keypoint`` mode, so the
    instance score is 0.
    """
    det = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    kp = np.asarray(keypoint_scores, dtype=np.float64).reshape(det.shape[0], -1)
    above = kp > thresh
    count = above.sum(axis=1)
    mean = np.where(count > 0, (kp * above).sum(axis=1) / np.maximum(count, 1), 0.0)
    return det * mean


def rescore(mode, det_scores, keypoint_scores, thresh=0.2):
    """Dispatch on cfg.TEST.RESCORE: 'megvii' | 'simple_baselines' | 'none' (det score unchanged)."""
    if mode == 'megvii':
        return rescore_megvii(det_scores, keypoint_scores)
    if mode == 'simple_baselines':
        return rescore_simple_baselines(det_scores, keypoint_scores, thresh)
    if mode in ('none', None):
        return np.asarray(det_scores, dtype=np.float64).reshape(-1)
    raise ValueError("unknown TEST.RESCORE %r; use 'megvii', 'simple_baselines' or 'none'" % (mode,))
