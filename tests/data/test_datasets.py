"""Record loaders and TopDownDataset on the shipped COCO/MPII subsets: counts, values, sample contract."""
import os.path as osp

import numpy as np
import pytest
import torch

from cvpack.config.megvii import megvii_config
from cvpack.config.simple_baselines import simple_baselines_config
from cvpack.solver import resolve_solver
from cvpack.data import build_dataset, collate
from cvpack.data import transforms as T
from cvpack.data.coco import coco_det_records, coco_gt_records
from cvpack.data.meta import COCO, MPII
from cvpack.data.mpii import mpii_records
from cvpack.data.topdown import TopDownDataset, normalize_lut

TRAIN_ANN = 'annotations/person_keypoints_train2017.json'
VAL_ANN = 'annotations/person_keypoints_val2017.json'
DET = 'det_json/COCO_val2017_detections_AP_H_56_person.json'


def _cfg(kind, root, tmp_path):
    cfg = megvii_config(str(tmp_path)) if kind == 'megvii' else simple_baselines_config(str(tmp_path))
    cfg.DATASET.ROOT = root
    return cfg


def test_coco_counts(coco_subset):
    train = coco_gt_records(osp.join(coco_subset, TRAIN_ANN), osp.join(coco_subset, 'images/train2017'), COCO)
    val = coco_gt_records(osp.join(coco_subset, VAL_ANN), osp.join(coco_subset, 'images/val2017'), COCO)
    # dataset/SOURCES.md: 211 non-crowd persons with >= 1 keypoint, train 86, val 125
    assert (len(train), len(val)) == (86, 125)
    assert len({r['image_id'] for r in train}) == 28                 # "28 have persons with keypoints"
    stats = {}
    dets = coco_det_records(osp.join(coco_subset, DET), osp.join(coco_subset, VAL_ANN),
                            osp.join(coco_subset, 'images/val2017'), COCO, stats=stats)
    assert len(dets) == 118 and stats['unknown_image'] == 0
    assert {r['image_id'] for r in dets} == {785, 40083, 197388, 196141}
    assert all(r['ann_id'] == -1 and not r['joints'].any() for r in dets)
    r = [r for r in train if r['ann_id'] == 441444][0]
    np.testing.assert_allclose(r['center'], [226.615, 382.61], rtol=1e-6)
    np.testing.assert_allclose(r['scale'], [1.06155, 2.4929], rtol=1e-6)
    assert r['joints'].shape == (17, 3) and r['joints'][0].tolist() == [281, 240, 2]


def test_coco_simple_baselines_cleans_box(coco_subset):
    recs = coco_gt_records(osp.join(coco_subset, TRAIN_ANN), osp.join(coco_subset, 'images/train2017'), COCO,
                           cs_mode='simple_baselines')
    r = [r for r in recs if r['ann_id'] == 441444][0]
    # clean box: w - 1, h - 1 -> (120.46, 133.32, 211.31, 497.58); w = 0.75 h; x1.25
    np.testing.assert_allclose(r['center'], [120.46 + 211.31 / 2, 133.32 + 497.58 / 2], rtol=1e-6)
    np.testing.assert_allclose(r['scale'], [0.75 * 497.58 / 200 * 1.25, 497.58 / 200 * 1.25], rtol=1e-6)


def test_mpii_records(mpii_subset, tmp_path):
    recs = mpii_records(osp.join(mpii_subset, 'annotations/train.json'), osp.join(mpii_subset, 'images'), MPII)
    assert len(recs) == 5
    r = recs[0]   # center [966, 340], scale 4.718488, joint 0 (804, 711) vis 1
    np.testing.assert_allclose(r['center'], [965, 340 + 15 * 4.718488 - 1], rtol=1e-6)
    np.testing.assert_allclose(r['scale'], [4.718488, 4.718488], rtol=1e-6)
    assert r['joints'][0].tolist() == [803, 710, 2] and r['image_id'] == 5808361 and 'headbox' not in r
    import json
    with open(osp.join(mpii_subset, 'annotations/train.json')) as f:
        entries = json.load(f)[:1]
    entries[0]['headbox'] = [[10, 20], [50, 80]]
    p = tmp_path / 'hb.json'
    p.write_text(json.dumps(entries))
    rec = mpii_records(str(p), osp.join(mpii_subset, 'images'), MPII)[0]
    assert rec['headbox'].tolist() == [[9, 19], [49, 79]]


@pytest.mark.parametrize('kind', ['megvii', 'simple_baselines'])
def test_train_samples(kind, coco_subset, tmp_path):
    ds = build_dataset(_cfg(kind, coco_subset, tmp_path), 'train')
    assert isinstance(ds, TopDownDataset) and len(ds) == 86
    ds.seed(3)
    batch = collate([ds[i] for i in range(4)])
    assert batch['image'].shape == (4, 3, 256, 192) and batch['image'].dtype == torch.float32
    tgt, w = batch['target'], batch['target_weight']
    assert w.shape == (4, 17) and w.dtype == torch.float32
    if kind == 'megvii':
        assert tgt.shape == (4, 5, 17, 64, 48)
        assert set(w.unique().tolist()) <= {0.0, 1.0, 2.0}
        peaks = tgt.amax(dim=(-1, -2))                      # (4, 5, 17)
        assert torch.allclose(peaks.permute(0, 2, 1)[w >= 1], torch.full_like(peaks.permute(0, 2, 1)[w >= 1], 255),
                              atol=1e-3)
        assert not peaks.permute(0, 2, 1)[w < 1].any()
    else:
        assert tgt.shape == (4, 17, 64, 48)
        assert set(w.unique().tolist()) <= {0.0, 1.0}
        assert torch.all(tgt.amax(dim=(-1, -2))[w > 0] == 1)
    # same seed, same samples; the RNG really drives the augmentation
    ds.seed(3)
    again = collate([ds[i] for i in range(4)])
    assert torch.equal(again['image'], batch['image']) and torch.equal(again['target'], batch['target'])
    ds.seed(4)
    assert not torch.equal(collate([ds[i] for i in range(4)])['image'], batch['image'])


def test_rng_reseeds_per_process_from_torch(coco_subset, tmp_path):
    ds = build_dataset(_cfg('megvii', coco_subset, tmp_path), 'train')
    torch.manual_seed(5)
    ds._rng_pid = -1                     # as seen from a freshly forked DataLoader worker
    a = ds[0]['image']
    torch.manual_seed(5)
    ds._rng_pid = -1
    b = ds[0]['image']
    torch.manual_seed(6)                 # workers get distinct torch seeds -> distinct augmentation
    ds._rng_pid = -1
    assert torch.equal(a, b) and not torch.equal(a, ds[0]['image'])
    cfg = _cfg('megvii', coco_subset, tmp_path)
    cfg.DATASET.TRAIN.HALF_BODY_DRAW = 'gauss'
    with pytest.raises(ValueError, match='HALF_BODY_DRAW'):
        build_dataset(cfg, 'train')


def test_megvii_train_geometry(coco_subset, tmp_path):
    """With every random factor pinned, targets sit where the affine puts the joints; flip mirrors them."""
    cfg = _cfg('megvii', coco_subset, tmp_path)
    tr = cfg.DATASET.TRAIN
    tr.RANDOM_EXTENTION, tr.PROB_HALF_BODY, tr.PROB_ROTATION = False, 0.0, 0.0
    tr.SCALE_FACTOR_LOW = tr.SCALE_FACTOR_HIGH = 0.0
    tr.PROB_FLIP = 0.0
    ds = build_dataset(cfg, 'train')
    idx = [i for i, r in enumerate(ds.records) if r['ann_id'] == 441444][0]
    rec = ds.records[idx]
    plain = ds[idx]
    scale = T.fit_aspect(T.extend_scale(rec['scale'], 0.6, 0.8, 0.05), 0.75) * 0.8
    pts = T.affine_points(rec['joints'], T.get_affine_transform(rec['center'], scale * 200, 0, (192, 256)))
    for k in np.nonzero(rec['joints'][:, 2] > 0)[0]:
        r, c = np.unravel_index(plain['target'][4, k].argmax().item(), (64, 48))
        assert (r, c) == (int(pts[k, 1] / 4), int(pts[k, 0] / 4))
    tr.PROB_FLIP = 1.0
    flipped = build_dataset(cfg, 'train')[idx]
    perm = COCO.flip_permutation()
    np.testing.assert_array_equal(flipped['target_weight'].numpy(), plain['target_weight'].numpy()[perm])
    for k in np.nonzero(plain['target_weight'].numpy() >= 1)[0]:
        r, c = np.unravel_index(plain['target'][4, k].argmax().item(), (64, 48))
        rf, cf = np.unravel_index(flipped['target'][4, perm[k]].argmax().item(), (64, 48))
        assert rf == r and abs(cf - (47 - c)) <= 1
    # the flipped crop is the mirrored crop, up to the half-pixel of the centre convention
    a, b = plain['image'].numpy(), flipped['image'].numpy()[:, :, ::-1]
    assert np.abs(a[:, :, 2:-2] - b[:, :, 1:-3]).mean() < np.abs(a[:, :, 2:-2] - b[:, :, 2:-2]).mean()


@pytest.mark.parametrize('kind', ['megvii', 'simple_baselines'])
def test_val_samples_follow_the_contract(kind, coco_subset, tmp_path):
    cfg = _cfg(kind, coco_subset, tmp_path)
    ds = build_dataset(cfg, 'val')
    assert len(ds) == 118 and ds.det_stats['unknown_image'] == 0
    s = ds[5]
    assert s['image'].shape == (3, 256, 192) and s['index'] == 5 and isinstance(s['score'], float)
    assert s['center'].dtype == torch.float32 and s['scale'].shape == (2,) and s['bbox'].shape == (4,)
    scale = s['scale'].numpy()
    assert scale[0] / scale[1] == pytest.approx(0.75, rel=1e-5)
    # DESIGN.md: input pixel (u, v) -> center + (u / W - 0.5, v / H - 0.5) * scale * PIXEL_STD
    inv = T.get_affine_transform(s['center'].numpy(), scale * 200, 0, (192, 256), inv=True)
    uv = np.array([[0, 0], [191, 255], [37.5, 100]])
    expect = s['center'].numpy() + (uv / [192, 256] - 0.5) * scale * 200
    np.testing.assert_allclose(T.affine_points(uv, inv), expect, rtol=1e-5, atol=1e-3)
    cfg.TEST.USE_GT_BBOX = True
    assert len(build_dataset(cfg, 'val')) == 125


def test_mpii_dataset(mpii_subset, tmp_path):
    cfg = megvii_config(str(tmp_path), dataset='MPII')
    cfg.DATASET.ROOT = mpii_subset
    for split in ('train', 'val'):
        ds = build_dataset(cfg, split)
        assert len(ds) == 5
    s = build_dataset(cfg, 'train')[0]
    assert s['image'].shape == (3, 256, 256) and s['target'].shape == (5, 16, 64, 64)


def test_normalize_lut_matches_totensor_normalize():
    means, stds = [0.406, 0.456, 0.485], [0.225, 0.224, 0.229]
    lut = normalize_lut(means, stds)
    x = torch.arange(256, dtype=torch.uint8).float().div(255)
    for c in range(3):
        ref = (x - means[c]) / stds[c]
        assert torch.equal(torch.from_numpy(lut[0, :, c].copy()), ref)


def test_collate_and_build_errors(coco_subset, tmp_path):
    batch = collate([{'a': torch.zeros(2), 'b': 1, 'c': 'x'}, {'a': torch.ones(2), 'b': 2, 'c': 'y'}])
    assert batch['a'].shape == (2, 2) and batch['b'] == [1, 2] and batch['c'] == ['x', 'y']
    cfg = _cfg('megvii', coco_subset, tmp_path)
    cfg.DATASET.PIPELINE = 'nope'
    with pytest.raises(KeyError, match='nope'):
        build_dataset(cfg, 'train')


def test_simple_baselines_epochs_to_iters(tmp_path):
    cfg = simple_baselines_config(str(tmp_path))
    solver = resolve_solver(cfg.SOLVER, world_size=1, dataset_len=149813)
    assert solver.ITERS_PER_EPOCH == 4682       # ceil(149813 / 32)
    assert (solver.MAX_ITER, solver.STEPS) == (140 * 4682, [90 * 4682, 120 * 4682])
    assert solver.LR == 1e-3                    # no process scaling: REFERENCE_WORLD_SIZE is None
    cfg384 = simple_baselines_config(str(tmp_path), input_shape=(384, 288))
    assert cfg384.OUTPUT_SHAPE == [96, 72] and cfg384.DATASET.TRAIN.SIGMA == 3


@pytest.mark.parametrize('kwargs, dropped', [
    (dict(load_min_num=18), 'dropped 125 by fewer labelled joints than DATASET.KEYPOINT.LOAD_MIN_NUM = 18, '
                            '97 by num_keypoints = 0, 4 by iscrowd = 1)'),
    (dict(image_dir='elsewhere'), 'dropped 125 by a missing image file (e.g. elsewhere/'),
])
def test_no_records_says_which_filter_emptied_the_dataset(coco_subset, kwargs, dropped):
    """An annotation file that gave no record returned [] and training failed later in the sampler ('the dataset is
    empty'), with no word of the file or of the filter; now the error names both, with the counts."""
    ann = osp.join(coco_subset, VAL_ANN)
    image_dir = kwargs.pop('image_dir', osp.join(coco_subset, 'images/val2017'))
    with pytest.raises(ValueError) as info:
        coco_gt_records(ann, image_dir, COCO, **kwargs)
    assert str(info.value).startswith('%s: 0 of 226 annotations kept as persons (%s' % (ann, dropped)), info.value
    assert len(coco_gt_records(ann, osp.join(coco_subset, 'images/val2017'), COCO, load_min_num=17)) == 4
