"""Train samples equal loop-by-loop re-statements of the originals' ``__getitem__`` fed the same random
draws (megvii: spec §3.4; simple_baselines: §2.6): same pixels and targets."""
import cv2
import numpy as np
import torch

from cvpack.config.megvii import megvii_config
from cvpack.data import build_dataset
from cvpack.data import transforms as T


def _original_sample(ds, rec, rng):
    tr, kp = ds.cfg.DATASET.TRAIN, ds.cfg.DATASET.KEYPOINT
    img = cv2.imread(rec['image_path'], cv2.IMREAD_COLOR)
    joints = rec['joints'][:, :2].astype(np.float64)
    vis = rec['joints'][:, 2:].copy()
    center, scale = rec['center'].copy(), rec['scale'].copy()
    scale = scale * (1 + tr.BASIC_EXTENTION)
    scale[0] *= 1 + rng.rand() * tr.X_EXTENTION
    scale[1] *= 1 + rng.rand() * tr.Y_EXTENTION
    if scale[0] > 0.75 * scale[1]:
        scale[1] = scale[0] / 0.75
    else:
        scale[0] = scale[1] * 0.75
    if np.sum(vis[:, 0] > 0) > tr.NUM_KEYPOINTS_HALF_BODY and rng.rand() < tr.PROB_HALF_BODY:
        upper, lower = [], []
        for j in range(len(joints)):
            if vis[j, 0] > 0:
                (upper if j in kp.UPPER_BODY_IDS else lower).append(joints[j])
        sel = upper if (rng.randn() < 0.5 and len(upper) > 3) else (lower if len(lower) > 3 else upper)
        rx, ry = rng.rand(), rng.rand()
        if len(sel) >= 3:
            sel = np.array(sel, np.float32)
            lt, rb = sel.min(0), sel.max(0)
            w, h = (rb[0] - lt[0]) * (1 + rx * 0.6), (rb[1] - lt[1]) * (1 + ry * 0.8)
            if w > 0.75 * h:
                h = w / 0.75
            elif w < 0.75 * h:
                w = h * 0.75
            center, scale = (lt + rb) / 2, np.array([w / 200, h / 200], np.float32)
    scale = scale * (0.8 * rng.uniform(0.75, 1.25))
    rot = rng.uniform(-45, 45) if rng.rand() <= 0.5 else 0
    if rng.rand() <= 0.5:
        img = img[:, ::-1, :]
        joints[:, 0] = img.shape[1] - joints[:, 0] - 1
        for a, b in kp.FLIP_PAIRS:
            joints[[a, b]] = joints[[b, a]]
            vis[[a, b]] = vis[[b, a]]
        center = center.copy()
        center[0] = img.shape[1] - center[0] - 1
    trans = T.get_affine_transform(center, scale * 200, rot, (192, 256))
    crop = cv2.warpAffine(img, trans, (192, 256), flags=cv2.INTER_LINEAR)
    x = torch.from_numpy(crop.transpose(2, 0, 1).copy()).float().div(255)
    x = x.sub(torch.tensor(ds.cfg.INPUT.MEANS)[:, None, None]).div(torch.tensor(ds.cfg.INPUT.STDS)[:, None, None])
    for i in range(len(joints)):
        if vis[i, 0] > 0:
            joints[i] = np.dot(trans, np.array([joints[i, 0], joints[i, 1], 1.0]))
            if joints[i, 0] < 0 or joints[i, 0] > 191 or joints[i, 1] < 0 or joints[i, 1] > 255:
                vis[i, 0] = 0
    labels = np.zeros((5, len(joints), 64, 48))
    for li, k in enumerate(tr.GAUSSIAN_KERNELS):
        for i in range(len(joints)):
            if vis[i, 0] < 1:
                continue
            hm = np.zeros((64, 48), np.float32)
            hm[int(joints[i, 1] * 64 / 256), int(joints[i, 0] * 48 / 192)] = 1
            hm = cv2.GaussianBlur(hm, tuple(k), 0)
            labels[li, i] = hm / (np.amax(hm) / 255)
    return x, torch.from_numpy(vis[:, 0]).float(), torch.from_numpy(labels).float()


def test_megvii_sample_matches_original_loop(coco_subset, tmp_path):
    cfg = megvii_config(str(tmp_path))
    cfg.DATASET.ROOT = coco_subset
    cfg.DATASET.TRAIN.PROB_HALF_BODY = 0.6           # exercise the half-body branch more often
    ds = build_dataset(cfg, 'train')
    for i in range(0, 86, 5):
        ds.seed(i)
        ours = ds[i]
        img, valid, labels = _original_sample(ds, ds.records[i], np.random.RandomState(i))
        assert torch.equal(ours['image'], img), i
        assert torch.equal(ours['target_weight'], valid), i
        assert torch.equal(ours['target'], labels), i


def test_simple_baselines_sample_matches_original_loop(coco_subset, tmp_path):
    from cvpack.config.simple_baselines import simple_baselines_config
    from cvpack.data.targets import gaussian_targets
    cfg = simple_baselines_config(str(tmp_path))
    cfg.DATASET.ROOT = coco_subset
    ds = build_dataset(cfg, 'train')
    for i in range(1, 86, 9):
        ds.seed(i)
        ours = ds[i]
        rng, rec = np.random.RandomState(i), ds.records[i]
        img = cv2.cvtColor(cv2.imread(rec['image_path'], cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION),
                           cv2.COLOR_BGR2RGB)
        joints, vis = rec['joints'][:, :2].astype(np.float64), np.minimum(rec['joints'][:, 2], 1)
        c, s = rec['center'].copy(), rec['scale'] * np.clip(rng.randn() * 0.3 + 1, 0.7, 1.3)
        r = np.clip(rng.randn() * 40, -80, 80) if rng.rand() <= 0.6 else 0
        if rng.rand() <= 0.5:
            img = img[:, ::-1, :]
            joints[:, 0] = img.shape[1] - joints[:, 0] - 1
            perm = np.arange(17)
            for a, b in cfg.DATASET.KEYPOINT.FLIP_PAIRS:
                perm[a], perm[b] = b, a
            joints, vis = joints[perm], vis[perm]
            c[0] = img.shape[1] - c[0] - 1
        trans = T.get_affine_transform(c, s * 200, r, (192, 256))
        crop = cv2.warpAffine(img, trans, (192, 256), flags=cv2.INTER_LINEAR)
        x = torch.from_numpy(crop.transpose(2, 0, 1).copy()).float().div(255)
        x = x.sub(torch.tensor(cfg.INPUT.MEANS)[:, None, None]).div(torch.tensor(cfg.INPUT.STDS)[:, None, None])
        for j in range(17):
            if vis[j] > 0:
                joints[j] = np.dot(trans, np.array([joints[j, 0], joints[j, 1], 1.0]))
        target, weight = gaussian_targets(joints, vis, (256, 192), (64, 48), 2)
        assert torch.equal(ours['image'], x), i
        assert torch.equal(ours['target'], torch.from_numpy(target)), i
        assert torch.equal(ours['target_weight'], torch.from_numpy(weight)), i
