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
