"""The 'cpn' data pipeline (docs/reference/mlpe_hsrnet_gcpose.md §1.7): crop rule and augmentations by hand, sample
contract on the COCO subset."""
import copy
import json
import os

import cv2
import numpy as np
import pytest
import torch

from cvpack.config.cpn import cpn_config
from cvpack.data import build_dataset, collate
from cvpack.data.cpn import cpn_crop_box, cpn_flip, cpn_rotate, cpn_zoom
from cvpack.data.io import read_image


def test_crop_box_by_hand():
    # box 60x200 at (100, 50) in a 480x640 image padded by 640: crop 72x260 -> height binds (260/256 > 72/192);
    # centre (770, 790) in padded pixels, half sizes 260/2/256*192 = 97.5 and 130
    assert cpn_crop_box((100, 50, 160, 250), (480 + 1280, 640 + 1280), (256, 192), pad=640) == (672, 660, 867, 920)
    # x1.25 at train time: 325 high, half sizes 121.875 / 162.5
    assert cpn_crop_box((100, 50, 160, 250), (1760, 1920), (256, 192), train_scale=1.25, pad=640) == \
        (648, 627, 891, 952)
    # clamped by the left border (no padding): size = 50 / 192 * 512 - 1, half w 49.625, half h 66.1667
    assert cpn_crop_box((0, 0, 100, 200), (300, 300), (256, 192)) == (0, 33, 99, 166)


def test_zoom_flip_rotate_by_hand():
    img = np.random.RandomState(0).rand(256, 192, 3).astype(np.float32)
    joints = np.array([[106.0, 128.0, 2], [96.0, 10.0, 1], [-1e6, -1e6, 0]])
    same, j = cpn_zoom(img, joints, 1.3)                    # factor >= 1.25: no-op
    assert np.allclose(same, img) and np.allclose(j, joints)
    _, j = cpn_zoom(img, joints, 0.625)                     # half-size window: coordinates double about the centre
    assert np.allclose(j[0], [116.0, 128.0, 2]) and j[1, 2] == 0 and j[2, 2] == 0   # (96, -108) left the crop
    flipped, j = cpn_flip(img, np.array([[10.0, 5.0, 2], [20.0, 6.0, 1], [-1e6, 0, 0]]), [(0, 1)])
    assert np.array_equal(flipped[:, 0], img[:, -1])
    assert np.allclose(j, [[171.0, 6.0, 1], [181.0, 5.0, 2], [-1e6, 0, 0]])
    # +90 deg (OpenCV: counter-clockwise on screen) about (96, 128): (x, y) -> (y - 32, 224 - x)
    _, j = cpn_rotate(img, np.array([[106.3, 128.4, 2], [100.5, 20.7, 1], [5.0, 250.0, 2]]), 90.0)
    assert np.allclose(j[:2], [[96.0, 117.0, 2], [-11.0, 123.0, 0]], atol=1e-6)   # truncated; 2nd left the crop
    assert np.allclose(j[2], [218.0, 219.0, 0], atol=1e-6)                        # x = 218 >= 192: outside


@pytest.fixture(scope='module')
def cfg(coco_subset, tmp_path_factory):
    c = cpn_config(str(tmp_path_factory.mktemp('mlpe_exp')))
    c.DATASET.ROOT = coco_subset
    return c


def _expected_crop(img, box, cfg, train_scale):
    """The crop rule written out with plain cv2 calls: mean padding, integer box, resize."""
    pad = max(img.shape[:2])
    padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=[122.77, 115.95, 102.98])
    ext = (0.1, 0.15)
    x0, y0, x1, y1 = cpn_crop_box(box, padded.shape[:2], (256, 192), ext, train_scale, pad)
    return cv2.resize(padded[y0:y1, x0:x1], (192, 256)), (x0 - pad, y0 - pad, x1 - pad, y1 - pad)


def test_val_sample_contract(cfg):
    ds = build_dataset(cfg, 'val')
    assert type(ds).__name__ == 'CPNDataset' and len(ds) == len(ds.records) == 125
    s = ds[3]
    rec = ds.records[3]
    assert s['image'].shape == (3, 256, 192) and s['image'].dtype == torch.float32
    assert s['score'] == 1.0 and s['image_id'] == rec['image_id'] and s['bbox'].shape == (4,)
    x, y, w, h = rec['bbox'].tolist()
    assert rec['box_xyxy'].tolist() == [int(x), int(y), int(x + w), int(y + h)]
    img = read_image(rec['image_path'], rgb=True)
    crop, (x0, y0, x1, y1) = _expected_crop(img, rec['box_xyxy'], cfg, 1.0)
    mean = np.array([122.77, 115.95, 102.98], np.float32) / 255
    assert np.allclose(s['image'].numpy().transpose(1, 2, 0), crop / np.float32(255) - mean, atol=1e-6)
    # DESIGN mapping of a decoded heatmap cell = the original's (4x + 2) / W_in * crop_w + crop_x0
    hx, hy = np.array([0.0, 13.25, 47.0]), np.array([0.0, 30.5, 63.0])
    u, v = 4 * hx + 2, 4 * hy + 2
    c, sc = s['center'].numpy(), s['scale'].numpy() * cfg.DATASET.PIXEL_STD
    assert np.allclose(c[0] + (u / 192 - 0.5) * sc[0], u / 192 * (x1 - x0) + x0, atol=1e-3)
    assert np.allclose(c[1] + (v / 256 - 0.5) * sc[1], v / 256 * (y1 - y0) + y0, atol=1e-3)


def _no_aug(cfg):
    c = copy.deepcopy(cfg)
    c.DATASET.TRAIN.ZOOM_RANGE = [1.25, 1.3]     # zoom no-op
    c.DATASET.TRAIN.COLOR_JITTER = [1.0, 1.0]
    return c


def _peaks(target):
    flat = target.reshape(target.shape[0], -1).argmax(1)
    return np.stack([flat % target.shape[2], flat // target.shape[2]], 1)


def test_train_sample_contract_and_targets(cfg):
    ds = build_dataset(_no_aug(cfg), 'train')
    assert len(ds) == 4 * len(ds.records) == 4 * 86
    ds.seed(0)
    i = 8
    rec = ds.records[i // 4]
    img = read_image(rec['image_path'], rgb=True)
    crop, (x0, y0, x1, y1) = _expected_crop(img, rec['box_xyxy'], cfg, 1.25)
    j = rec['joints'].astype(np.float64)
    jx, jy = (j[:, 0] - x0) * 192 / (x1 - x0), (j[:, 1] - y0) * 256 / (y1 - y0)
    vis = np.where((j[:, 2] > 0) & (jx >= 0) & (jx < 192) & (jy >= 0) & (jy < 256), j[:, 2], 0)
    s0, s1 = ds[i], ds[i + 1]                                  # operation 0 (plain) and 1 (flip)
    assert s0['target'].shape == (4, 17, 64, 48) and s0['target_weight'].shape == (17,)
    mean = np.array([122.77, 115.95, 102.98], np.float32) / 255
    assert np.allclose(s0['image'].numpy().transpose(1, 2, 0), crop.astype(np.float32) / 255 - mean, atol=1e-6)
    assert np.array_equal(s0['target_weight'].numpy(), vis.astype(np.float32)) and vis.sum() > 0
    t = s0['target'].numpy()
    on = vis > 0
    assert np.allclose(t[:, on].max(axis=(2, 3)), 255) and not t[:, ~on].any()
    for level in range(4):   # every kernel peaks at (floor(x / 4), floor(y / 4))
        assert np.array_equal(_peaks(t[level, on]), np.stack([jx[on] // 4, jy[on] // 4], 1).astype(int))
    # flip: joint k is its partner's mirror image, x -> 191 - x
    perm = list(range(17))
    for a, b in cfg.DATASET.KEYPOINT.FLIP_PAIRS:
        perm[a], perm[b] = b, a
    vf = vis[perm]
    assert np.array_equal(s1['target_weight'].numpy(), vf.astype(np.float32))
    exp = np.stack([(191 - jx[perm]) // 4, jy[perm] // 4], 1).astype(int)
    assert np.array_equal(_peaks(s1['target'].numpy()[3, vf > 0]), exp[vf > 0])


def test_train_augmentation_is_seeded_and_collates(cfg):
    ds = build_dataset(cfg, 'train')
    ds.seed(5)
    a = [ds[k] for k in (2, 3)]
    ds.seed(5)
    b = [ds[k] for k in (2, 3)]
    assert all(torch.equal(x['image'], y['image']) and torch.equal(x['target'], y['target']) for x, y in zip(a, b))
    batch = collate(a)
    assert batch['image'].shape == (2, 3, 256, 192) and batch['target'].shape == (2, 4, 17, 64, 48)
    img = batch['image']
    mean = torch.tensor([122.77, 115.95, 102.98]).view(1, 3, 1, 1) / 255
    assert (img + mean).min() >= -1e-6 and (img + mean).max() <= 1 + 1e-6   # clamped jitter, no std division


def test_val_round_trip_through_the_predictor(cfg):
    """GT joints -> crop pixels via the sample's center/scale -> 255-peak maps -> the real predictor
    (megvii decoder, kernel 21) -> image pixels: back within the stride-4 quantisation."""
    from cvpack.data.targets import blurred_peak_targets
    from cvpack.inference import build_predictor

    c = copy.deepcopy(cfg)
    c.TEST.FLIP = False
    ds = build_dataset(c, 'val')
    batch = collate([ds[i] for i in range(6)])
    boxes = []   # the crop boxes by the original rule, not from the samples' center/scale
    for i in range(6):
        h, w = read_image(ds.records[i]['image_path']).shape[:2]
        pad = max(h, w)
        boxes.append(np.array(cpn_crop_box(ds.records[i]['box_xyxy'], (h + 2 * pad, w + 2 * pad), (256, 192),
                                           pad=pad), np.float64) - pad)
    boxes = np.stack(boxes)
    x0, crop_wh = boxes[:, :2], boxes[:, 2:] - boxes[:, :2]
    joints = np.stack([ds.records[i]['joints'] for i in range(6)])         # (N, K, 3) image pixels
    uv = (joints[..., :2] - x0[:, None]) / crop_wh[:, None] * np.array([192, 256])
    vis = joints[..., 2] * np.all((uv >= 0) & (uv < [192, 256]), axis=-1)
    maps = np.stack([blurred_peak_targets(uv[n], vis[n], (256, 192), (64, 48), [9])[0] for n in range(6)])

    class Oracle(torch.nn.Module):
        def forward(self, images):
            return torch.from_numpy(maps)

    out = build_predictor(c)(Oracle(), batch)
    assert [o['image_id'] for o in out] == [ds.records[i]['image_id'] for i in range(6)]
    for n, inst in enumerate(out):
        on = vis[n] > 0
        err = np.abs(inst['keypoints'][on, :2] - joints[n, on, :2]) / (crop_wh[n] / [192, 256])  # crop pixels
        assert on.sum() > 0 and err.max() <= 3.0 + 1e-3    # cell floor (<4) vs centre +2 and the 1-px shift
        assert np.allclose(inst['keypoints'][on, 2], 255 / 255 + 0.5, atol=1e-3)   # raw peak / 255 + 0.5
        assert np.isclose(inst['score'], inst['keypoints'][:, 2].mean())          # GT box score 1 x mean


def test_val_with_detections(cfg, coco_subset):
    c = copy.deepcopy(cfg)
    c.TEST.USE_GT_BBOX = False
    ds = build_dataset(c, 'val')
    dets = json.load(open(os.path.join(coco_subset, c.TEST.DET_FILE)))
    assert len(ds) == len(dets) == 118           # every detection names a subset image, none filtered at 0.0
    s = ds[0]
    x, y, w, h = dets[0]['bbox']
    assert np.isclose(s['score'], dets[0]['score']) and s['image_id'] == dets[0]['image_id']
    assert np.allclose(ds.records[0]['box_xyxy'], [x, y, x + w, y + h], atol=1e-3)   # float corners, as given
    img = read_image(ds.records[0]['image_path'], rgb=True)
    crop, _ = _expected_crop(img, ds.records[0]['box_xyxy'], c, 1.0)
    mean = np.array([122.77, 115.95, 102.98], np.float32) / 255
    assert np.allclose(s['image'].numpy().transpose(1, 2, 0), crop / np.float32(255) - mean, atol=1e-6)
