"""Train samples equal the loop-by-loop re-statements of the originals (:mod:`cvpack.data.reference`) fed the
same random draws (megvii: docs/reference/rsn_mspn.md §3.4; simple_baselines: docs/reference/mlpe_hsrnet_gcpose.md
§2.6): same pixels, same targets, same weights."""
import numpy as np
import torch

from cvpack.config.megvii import megvii_config
from cvpack.config.simple_baselines import simple_baselines_config
from cvpack.data import build_dataset
from cvpack.data import reference as R


def test_megvii_sample_matches_original_loop(coco_subset, tmp_path):
    cfg = megvii_config(str(tmp_path))
    cfg.DATASET.ROOT = coco_subset
    cfg.DATASET.TRAIN.PROB_HALF_BODY = 0.6           # exercise the half-body branch more often
    ds = build_dataset(cfg, 'train')
    for i in range(0, 86, 5):
        ds.seed(i)
        ours = ds[i]
        img, valid, labels = R.megvii_train_sample(ds, ds.records[i], np.random.RandomState(i))
        assert torch.equal(ours['image'], img), i
        assert torch.equal(ours['target_weight'], valid), i
        assert torch.equal(ours['target'], labels), i


# People of the shipped COCO train subset whose joints differ between the original's int64 joints and float joints
# with the default preset and sample i drawn from RandomState(i): in each, a joint lands in (-1, 0) or (W-1, W)
# (or the same in y), which the original truncates onto the border and keeps (docs/reference/defects.md F#2).
INTEGER_JOINT_PEOPLE = [2, 15, 16, 17, 41, 46, 65, 76]


def _megvii_all(ds):
    out = []
    for i in range(len(ds)):
        ds.seed(i)
        out.append(ds[i])
    return out


def test_megvii_integer_joints_default_and_float_option(coco_subset, tmp_path):
    cfg = megvii_config(str(tmp_path))
    cfg.DATASET.ROOT = coco_subset
    assert cfg.DATASET.TRAIN.INTEGER_JOINTS is True     # the original by default
    ds = build_dataset(cfg, 'train')
    ints = _megvii_all(ds)
    cfg.DATASET.TRAIN.INTEGER_JOINTS = False
    floats = _megvii_all(build_dataset(cfg, 'train'))
    assert len(ints) == 86
    differ = [i for i, (a, b) in enumerate(zip(ints, floats)) if not torch.equal(a['target'], b['target'])]
    assert differ == INTEGER_JOINT_PEOPLE
    for i in differ:          # both settings equal their re-statement of the original loop
        _, v_int, l_int = R.megvii_train_sample(ds, ds.records[i], np.random.RandomState(i), integer_joints=True)
        _, v_flt, l_flt = R.megvii_train_sample(ds, ds.records[i], np.random.RandomState(i), integer_joints=False)
        assert torch.equal(ints[i]['target_weight'], v_int) and torch.equal(ints[i]['target'], l_int), i
        assert torch.equal(floats[i]['target_weight'], v_flt) and torch.equal(floats[i]['target'], l_flt), i
        kept = (v_int != v_flt).nonzero()[:, 0]
        assert len(kept) and (v_int[kept] > 0).all() and (v_flt[kept] == 0).all(), i   # kept by the original only
        for k in kept.tolist():   # ... with its peak on the border of the map
            y, x = divmod(int(l_int[-1, k].argmax()), l_int.shape[-1])
            assert y in (0, l_int.shape[-2] - 1) or x in (0, l_int.shape[-1] - 1), (i, k, y, x)


def test_simple_baselines_sample_matches_original_loop(coco_subset, tmp_path):
    cfg = simple_baselines_config(str(tmp_path))
    cfg.DATASET.ROOT = coco_subset
    ds = build_dataset(cfg, 'train')
    for i in range(1, 86, 7):
        ds.seed(i)
        ours = ds[i]
        img, target, weight = R.simple_baselines_train_sample(ds, ds.records[i], np.random.RandomState(i))
        assert torch.equal(ours['image'], img), i
        assert torch.equal(ours['target'], target), i
        assert torch.equal(ours['target_weight'], weight), i
