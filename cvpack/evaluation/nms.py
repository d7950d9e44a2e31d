"""OKS-based NMS for keypoint instances (Simple Baselines / HRNet ``lib/nms/nms.py``), vectorised.

The OKS matrix of all instances of an image is computed at once; only the greedy selection is a loop
(one step per kept instance).
"""
import numpy as np



def oks_matrix(keypoints, areas, sigmas, vis_thresh=None):
    """Pairwise OKS between instances of one image.

    Args:
        keypoints: (M, K, 3) image pixels + score.
        areas: (M,) instance areas (image pixels^2; Simple Baselines uses scale_x * scale_y * 200^2).
        sigmas: (K,) real-scale OKS sigmas.
        vis_thresh: if set, only joints whose score exceeds it in *both* instances count (the
            original's ``list(a) and list(b)`` kept only the second instance's mask; this is the
            evident intent).

    Returns:
        (M, M) OKS, ``oks[i, j] = mean_k exp(-d_ijk^2 / (2 (a_i + a_j) / 2 (2 sigma_k)^2))``, with
        ``np.spacing(1)`` added to the mean area as the original.
    """
    kps = np.asarray(keypoints, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    variances = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((kps[:, None, :, :2] - kps[None, :, :, :2]) ** 2).sum(-1)            # (M, M, K)
    mean_area = (areas[:, None] + areas[None, :]) / 2 + np.spacing(1)
    e = d2 / variances / mean_area[..., None] / 2
    if vis_thresh is None:
        return np.exp(-e).mean(-1)
    vis = kps[..., 2] > vis_thresh
    both = vis[:, None, :] & vis[None, :, :]
    count = both.sum(-1)
    total = (np.exp(-e) * both).sum(-1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def oks_iou(g, d, area_g, area_d, sigmas, vis_thresh=None):
    """OKS between one instance ``g`` (K, 3) and instances ``d`` (M, K, 3) (the original's signature)."""
    g = np.asarray(g, np.float64).reshape(1, -1, 3)
    kps = np.concatenate([g, np.asarray(d, np.float64).reshape(-1, g.shape[1], 3)])
    areas = np.concatenate([[area_g], np.asarray(area_d, np.float64).reshape(-1)])
    return oks_matrix(kps, areas, sigmas, vis_thresh)[0, 1:]


def _arrays(instances):
    scores = np.array([float(i['score']) for i in instances])
    kps = np.stack([np.asarray(i['keypoints'], np.float64).reshape(-1, 3) for i in instances])
    areas = np.array([float(i['area']) for i in instances])
    return scores, kps, areas


def oks_nms(instances, thresh, sigmas, vis_thresh=None):
    """Greedy OKS-NMS: keep the best instance, drop those with OKS > ``thresh`` to it, repeat.

    Args:
        instances: list of dicts with 'keypoints' (K, 3), 'score', 'area' (one image).
        thresh: OKS threshold (Simple Baselines' yaml: 0.9).
        sigmas: (K,) OKS sigmas on the real scale (``cvpack.data.meta.oks_sigmas``).

    Returns:
        indices of the kept instances, best first.
    """
    if len(instances) == 0:
        return []
    scores, kps, areas = _arrays(instances)
    oks = oks_matrix(kps, areas, sigmas, vis_thresh)
    order = np.argsort(scores, kind='stable')[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        order = order[1:][oks[i, order[1:]] <= thresh]
    return keep


def soft_oks_nms(instances, thresh, sigmas, vis_thresh=None, max_dets=20, return_scores=False):
    """Soft OKS-NMS (HRNet): Gaussian decay ``score *= exp(-oks^2 / thresh)`` of the remaining scores.

    As the original it keeps at most ``max_dets`` instances and returns their indices in selection
    order; the instances' own scores are not changed (pass ``return_scores=True`` to also get the
    decayed score each kept instance had when selected).
    """
    if len(instances) == 0:
        return ([], []) if return_scores else []
    scores, kps, areas = _arrays(instances)
    oks = oks_matrix(kps, areas, sigmas, vis_thresh)
    order = np.argsort(scores, kind='stable')[::-1]
    scores = scores[order]
    keep, kept_scores = [], []
    while order.size > 0 and len(keep) < max_dets:
        i = order[0]
        keep.append(int(i))
        kept_scores.append(float(scores[0]))
        order, scores = order[1:], scores[1:] * np.exp(-oks[i, order[1:]] ** 2 / thresh)
        resort = np.argsort(scores, kind='stable')[::-1]
        order, scores = order[resort], scores[resort]
    return (keep, kept_scores) if return_scores else keep


def nms_per_image(instances, mode, thresh, sigmas):
    """Apply 'none' | 'oks' | 'soft_oks' NMS separately for each image_id; returns the kept instances.

    Like Simple Baselines, an image whose NMS keeps nothing keeps all its instances.
    """
    if mode in (None, 'none'):
        return list(instances)
    if mode not in ('oks', 'soft_oks'):
        raise ValueError("unknown NMS mode %r (TEST.NMS); use 'none', 'oks' or 'soft_oks'" % (mode,))
    by_image = {}
    for inst in instances:
        by_image.setdefault(inst['image_id'], []).append(inst)
    fn = oks_nms if mode == 'oks' else soft_oks_nms
    kept = []
    for group in by_image.values():
        keep = fn(group, thresh, sigmas)
        kept.extend([group[i] for i in keep] if keep else group)
    return kept
