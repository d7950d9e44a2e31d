"""Loop-by-loop re-statements of the original per-sample code, kept as executable references.

They are slow on purpose (one ``GaussianBlur`` per joint and kernel, strided ``img[:, ::-1]`` flips, per-joint
affine loops, ToTensor + Normalize in torch): ``tests/data`` checks that the fast pipeline in
:mod:`cvpack.data.topdown` / :mod:`cvpack.data.targets` gives the same bits, and ``tools/bench_data.py`` times
them as the baseline, which is why they stay in the package rather than under ``tests/``; nothing imports them at
run time. Megvii: ``docs/reference/rsn_mspn.md`` §3.4; Simple Baselines:
``docs/reference/mlpe_hsrnet_gcpose.md`` §2.6. The random draws are taken from ``rng`` in the same order as
:class:`~cvpack.data.topdown.TopDownDataset`.
"""
import cv2
import numpy as np
import torch

from . import transforms as T

__all__ = ['megvii_heatmaps', 'simple_baselines_target', 'to_tensor', 'megvii_train_sample',
           'simple_baselines_train_sample']


def megvii_heatmaps(joints, valid, kernel, input_hw, output_hw):
    """The original ``generate_heatmap``: (K, h, w) float32, one blurred one-hot per joint with valid >= 1."""
    hm = np.zeros((len(joints),) + tuple(output_hw), 'float32')
    for i in range(len(joints)):
        if valid[i] < 1:
            continue
        hm[i, int(joints[i, 1] * output_hw[0] / input_hw[0]), int(joints[i, 0] * output_hw[1] / input_hw[1])] = 1
        hm[i] = cv2.GaussianBlur(hm[i], tuple(kernel), 0)
        maxi = np.amax(hm[i])
        if maxi <= 1e-8:
            continue
        hm[i] /= maxi / 255
    return hm


def simple_baselines_target(joints, vis, sigma, input_hw, output_hw):
    """Simple Baselines' ``generate_target`` (gaussian): target (K, h, w) float32, weight (K,) float32."""
    target = np.zeros((len(joints),) + tuple(output_hw), np.float32)
    weight = np.array(vis, np.float32)
    tmp = sigma * 3
    stride = (input_hw[1] / output_hw[1], input_hw[0] / output_hw[0])
    for k in range(len(joints)):
        mu_x = int(joints[k][0] / stride[0] + 0.5)
        mu_y = int(joints[k][1] / stride[1] + 0.5)
        ul = [int(mu_x - tmp), int(mu_y - tmp)]
        br = [int(mu_x + tmp + 1), int(mu_y + tmp + 1)]
        if ul[0] >= output_hw[1] or ul[1] >= output_hw[0] or br[0] < 0 or br[1] < 0:
            weight[k] = 0
            continue
        size = 2 * tmp + 1
        x = np.arange(0, size, 1, np.float32)
        y = x[:, np.newaxis]
        g = np.exp(-((x - size // 2) ** 2 + (y - size // 2) ** 2) / (2 * sigma ** 2))
        g_x = max(0, -ul[0]), min(br[0], output_hw[1]) - ul[0]
        g_y = max(0, -ul[1]), min(br[1], output_hw[0]) - ul[1]
        img_x = max(0, ul[0]), min(br[0], output_hw[1])
        img_y = max(0, ul[1]), min(br[1], output_hw[0])
        if weight[k] > 0.5:
            target[k][img_y[0]:img_y[1], img_x[0]:img_x[1]] = g[g_y[0]:g_y[1], g_x[0]:g_x[1]]
    return target, weight


def to_tensor(crop, means, stds):
    """torchvision ToTensor + Normalize, in torch: uint8 (H, W, 3) -> float32 (3, H, W)."""
    x = torch.from_numpy(crop.transpose(2, 0, 1).copy()).float().div(255)
    return x.sub(torch.tensor(means)[:, None, None]).div(torch.tensor(stds)[:, None, None])


def _flip(img, joints, vis, center, flip_pairs):
    img = img[:, ::-1, :]
    joints[:, 0] = img.shape[1] - joints[:, 0] - 1
    for a, b in flip_pairs:
        joints[[a, b]] = joints[[b, a]]
        vis[[a, b]] = vis[[b, a]]
    center = center.copy()
    center[0] = img.shape[1] - center[0] - 1
    return img, joints, vis, center


def _half_body(joints, vis, upper_ids, rng, ratio):
    upper, lower = [], []
    for j in range(len(joints)):
        if vis[j, 0] > 0:
            (upper if j in upper_ids else lower).append(joints[j])
    sel = upper if (rng.randn() < 0.5 and len(upper) > 3) else (lower if len(lower) > 3 else upper)
    rx, ry = rng.rand(), rng.rand()
    if len(sel) < 3:
        return None, None
    sel = np.array(sel, np.float32)
    lt, rb = sel.min(0), sel.max(0)
    w, h = (rb[0] - lt[0]) * (1 + rx * 0.6), (rb[1] - lt[1]) * (1 + ry * 0.8)
    if w > ratio * h:
        h = w / ratio
    elif w < ratio * h:
        w = h * ratio
    return (lt + rb) / 2, np.array([w / 200, h / 200], np.float32)


def megvii_train_sample(ds, rec, rng, integer_joints=True):
    """The original Megvii COCO train ``__getitem__`` -> (image (3, H, W), valid (K,), labels (L, K, h, w)).

    ``integer_joints``: the original's joints are ``np.array(ann['keypoints'])``, int64 for COCO's integer
    keypoints, so assigning the transformed joint truncates it toward zero (docs/reference/defects.md F#2);
    False re-states our ``DATASET.TRAIN.INTEGER_JOINTS False`` (float joints).
    """
    tr, kp = ds.cfg.DATASET.TRAIN, ds.cfg.DATASET.KEYPOINT
    (H, W), ratio = ds.input_hw, ds.w_h_ratio
    img = cv2.imread(rec['image_path'], cv2.IMREAD_COLOR)
    joints = rec['joints'][:, :2].astype(np.int64 if integer_joints else np.float64)
    vis = rec['joints'][:, 2:].copy()
    center, scale = rec['center'].copy(), rec['scale'] * (1 + tr.BASIC_EXTENTION)
    scale[0] *= 1 + rng.rand() * tr.X_EXTENTION
    scale[1] *= 1 + rng.rand() * tr.Y_EXTENTION
    if scale[0] > ratio * scale[1]:
        scale[1] = scale[0] / ratio
    else:
        scale[0] = scale[1] * ratio
    if np.sum(vis[:, 0] > 0) > tr.NUM_KEYPOINTS_HALF_BODY and rng.rand() < tr.PROB_HALF_BODY:
        c, s = _half_body(joints, vis, kp.UPPER_BODY_IDS, rng, ratio)
        if c is not None:
            center, scale = c, s
    scale = scale * (tr.SCALE_SHRINK_RATIO * rng.uniform(1 + tr.SCALE_FACTOR_LOW, 1 + tr.SCALE_FACTOR_HIGH))
    rot = rng.uniform(-tr.ROTATION_FACTOR, tr.ROTATION_FACTOR) if rng.rand() <= tr.PROB_ROTATION else 0
    if rng.rand() <= tr.PROB_FLIP:
        img, joints, vis, center = _flip(img, joints, vis, center, kp.FLIP_PAIRS)
    trans = T.get_affine_transform(center, scale * 200, rot, (W, H))
    crop = cv2.warpAffine(img, trans, (W, H), flags=cv2.INTER_LINEAR)
    for i in range(len(joints)):
        if vis[i, 0] > 0:
            joints[i] = np.dot(trans, np.array([joints[i, 0], joints[i, 1], 1.0]))
            if joints[i, 0] < 0 or joints[i, 0] > W - 1 or joints[i, 1] < 0 or joints[i, 1] > H - 1:
                vis[i, 0] = 0
    labels = np.zeros((len(tr.GAUSSIAN_KERNELS), len(joints)) + ds.output_hw)
    for li, k in enumerate(tr.GAUSSIAN_KERNELS):
        labels[li] = megvii_heatmaps(joints, vis[:, 0], k, ds.input_hw, ds.output_hw)
    return (to_tensor(crop, ds.cfg.INPUT.MEANS, ds.cfg.INPUT.STDS), torch.from_numpy(vis[:, 0]).float(),
            torch.from_numpy(labels).float())


def simple_baselines_train_sample(ds, rec, rng):
    """Simple Baselines' train ``__getitem__`` -> (image (3, H, W), target (K, h, w), target_weight (K,)).

    The original feeds ``cv2.imread``'s BGR pixels (``DATASET.COLOR_RGB False``; True converts, our option), and
    under its NumPy 1 the float32 scale times np.clip's float64 scalar stayed float32 (docs/reference/defects.md F#17,
    F#18).
    """
    tr, (H, W) = ds.cfg.DATASET.TRAIN, ds.input_hw
    img = cv2.imread(rec['image_path'], cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if ds.cfg.DATASET.COLOR_RGB:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    joints, vis = rec['joints'][:, :2].astype(np.float64), np.minimum(rec['joints'][:, 2:], 1)
    sf, rf = tr.SCALE_FACTOR, tr.ROTATION_FACTOR
    center, scale = rec['center'].copy(), rec['scale'] * np.float32(np.clip(rng.randn() * sf + 1, 1 - sf, 1 + sf))
    rot = np.clip(rng.randn() * rf, -rf * 2, rf * 2) if rng.rand() <= tr.PROB_ROTATION else 0
    if tr.FLIP and rng.rand() <= tr.PROB_FLIP:
        img, joints, vis, center = _flip(img, joints, vis, center, ds.cfg.DATASET.KEYPOINT.FLIP_PAIRS)
    trans = T.get_affine_transform(center, scale * 200, rot, (W, H))
    crop = cv2.warpAffine(img, trans, (W, H), flags=cv2.INTER_LINEAR)
    for j in range(len(joints)):
        if vis[j, 0] > 0:
            joints[j] = np.dot(trans, np.array([joints[j, 0], joints[j, 1], 1.0]))
    target, weight = simple_baselines_target(joints, vis[:, 0], tr.SIGMA, ds.input_hw, ds.output_hw)
    return to_tensor(crop, ds.cfg.INPUT.MEANS, ds.cfg.INPUT.STDS), torch.from_numpy(target), torch.from_numpy(weight)
