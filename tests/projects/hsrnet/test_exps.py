"""Every HSRNet exp: config values, network.py re-export (forward/backward: tests/projects/test_all_exps.py)."""
import os
import os.path as osp
import random

import numpy as np
import pytest
import torch

pytest.importorskip('cvpack.config.simple_baselines')   # the preset (data side) must be merged

import projects.HSRNet.hsrnet as hsrnet  # noqa: E402
from cvpack.exp import import_exp_module, load_exp  # noqa: E402

EXPS = {  # folder -> (backbone, input (h, w), epochs, step epochs)
    'hsrnet59.256x192.coco': ('hsrnet59', (256, 192), 140, [90, 120]),
    'hsrnet110.256x192.coco': ('hsrnet110', (256, 192), 140, [90, 120]),
    'hsrnet161.256x192.coco': ('hsrnet161', (256, 192), 140, [90, 120]),
    'hsr_msnet59.256x192.coco': ('hsr_msnet59', (256, 192), 140, [90, 120]),
    'hsr_msnet110.256x192.coco': ('hsr_msnet110', (256, 192), 140, [90, 120]),
    'hsr_msnet161.256x192.coco': ('hsr_msnet161', (256, 192), 140, [90, 120]),
    'hsrnet59.384x288.coco': ('hsrnet59', (384, 288), 160, [110, 140]),
    'hsr_msnet59.384x288.coco': ('hsr_msnet59', (384, 288), 160, [110, 140]),
}


def test_exp_folders_complete(repo_root):
    exps_dir = osp.join(repo_root, 'projects', 'HSRNet', 'exps')
    assert sorted(os.listdir(exps_dir)) == sorted(EXPS)
    for exp in EXPS:
        for script in ('config.py', 'network.py', 'train.py', 'test.py'):
            assert osp.isfile(osp.join(exps_dir, exp, script)), (exp, script)


@pytest.mark.parametrize('exp', sorted(EXPS))
def test_exp_config(repo_root, exp):
    """Config values; every exp's forward/backward: tests/projects/test_all_exps.py."""
    backbone, hw, epochs, steps = EXPS[exp]
    exp_dir = osp.join(repo_root, 'projects', 'HSRNet', 'exps', exp)
    assert import_exp_module(exp_dir, 'network').build_model is hsrnet.build_model
    cfg, _ = load_exp(exp_dir, build=False)
    assert cfg.EXP_NAME == exp and cfg.MODEL.BACKBONE == backbone
    assert tuple(cfg.INPUT_SHAPE) == hw and tuple(cfg.OUTPUT_SHAPE) == (hw[0] // 4, hw[1] // 4)
    assert cfg.DATASET.TRAIN.SIGMA == (3 if hw[0] == 384 else 2)
    assert cfg.SOLVER.EPOCHS == epochs and list(cfg.SOLVER.STEP_EPOCHS) == steps
    # Simple Baselines test time (docs/reference/mlpe_hsrnet_gcpose.md §2.7): flip with the one-pixel shift, quarter
    # offset, OKS-NMS 0.9, rescoring.
    t = cfg.TEST
    assert (t.FLIP, t.FLIP_SHIFT, t.DECODER, t.NMS, t.NMS_THRESH, t.RESCORE, t.KEYPOINT_THRESH) == \
        (True, True, 'quarter', 'oks', 0.9, 'simple_baselines', 0.2)
    assert (cfg.SOLVER.OPTIMIZER, cfg.SOLVER.BASE_LR, cfg.DATASET.PIPELINE) == ('Adam', 1e-3, 'simple_baselines')
    assert cfg.MODEL.DECONV_KERNEL == 4 and list(cfg.MODEL.NUM_DECONV_FILTERS) == [256, 256]
    assert 'download.pytorch.org' in cfg.MODEL.PRETRAINED


def test_real_samples_through_the_model(repo_root, coco_subset):
    """Simple Baselines train samples from the COCO subset feed the model: unit-peak targets, 0/1 weights."""
    from cvpack.data import build_dataset, collate
    exp_dir = osp.join(repo_root, 'projects', 'HSRNet', 'exps', 'hsrnet59.256x192.coco')
    cfg, model = load_exp(exp_dir, ['MODEL.PRETRAINED', '', 'DATASET.ROOT', coco_subset,
                                    'INPUT_SHAPE', '[128, 96]', 'OUTPUT_SHAPE', '[32, 24]'])
    data = build_dataset(cfg, 'train')
    np.random.seed(0)
    random.seed(0)
    batch = collate([data[0], data[1]])
    assert tuple(batch['target'].shape) == (2, 17, 32, 24) and tuple(batch['target_weight'].shape) == (2, 17)
    w = batch['target_weight']
    assert set(w.unique().tolist()) <= {0.0, 1.0} and w.sum() > 0
    peaks = batch['target'].flatten(2).max(-1).values
    # Peak 1 where the centre cell is inside the map (<1 for a centre just outside: weight 1 while the
    # 3-sigma window overlaps, as Simple Baselines); nothing drawn for weight-0 joints.
    assert (peaks[w > 0] > 0).all() and (peaks[w > 0] <= 1).all() and (peaks[w > 0] == 1).any()
    assert (peaks[w == 0] == 0).all()
    torch.manual_seed(0)
    loss = model.train()(batch['image'], batch)['joints_mse']
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    # Zero heatmaps cost 0.5 * mean((target * w)^2): the loss really reads these targets and weights.
    zero = model.criterion(torch.zeros_like(batch['target']), batch['target'], w)
    torch.testing.assert_close(zero, 0.5 * (batch['target'] * w[:, :, None, None]).pow(2).mean())
