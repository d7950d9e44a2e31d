"""Every exp folder under projects/*/exps/ (found by glob, as timm's tests/test_models.py lists its models):
it builds through ``cvpack.exp.load_exp``, its training forward returns the project's loss keys as finite
scalars, one backward reaches every trainable parameter, and its eval forward honours the model contract of
docs/DESIGN.md: heatmaps (N, K, *OUTPUT_SHAPE) for top-down exps, per-image result dicts for whole-image
(PIPELINE 'detection') exps.

A new exp folder is picked up without editing this file; a new *project* must add its loss keys to
``LOSS_KEYS`` (the test says so). Inputs are small (overrides below) so the 33 exps run in well under a minute
on two cores; the per-exp configs themselves are pinned by each project's own tests.
"""
import glob
import os.path as osp

import pytest
import torch

from cvpack.exp import load_exp

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
EXP_DIRS = sorted(glob.glob(osp.join(REPO, 'projects', '*', 'exps', '*', '')))
EXP_IDS = [osp.relpath(d, osp.join(REPO, 'projects')).replace(osp.sep + 'exps' + osp.sep, '/').rstrip(osp.sep)
           for d in EXP_DIRS]

# project -> cfg -> the training loss keys its models return
LOSS_KEYS = {
    'RSN': lambda cfg: ['loss_s%d_l%d' % (s, j) for s in range(cfg.MODEL.STAGE_NUM) for j in range(4)],
    'MSPN': lambda cfg: ['loss_s%d_l%d' % (s, j) for s in range(cfg.MODEL.STAGE_NUM) for j in range(4)],
    'MLPE': lambda cfg: ['global_loss', 'refine_loss'],
    'HSRNet': lambda cfg: ['joints_mse'],
    'GCPose': lambda cfg: ['loss_rpn_cls', 'loss_rpn_loc', 'loss_cls', 'loss_box_reg', 'loss_keypoint'],
}

# Small top-down inputs (h, w) that every architecture accepts (multiples of 32; OUTPUT_SHAPE = input / 4):
# square for square exps (MPII), 2:1 (portrait, as COCO crops) otherwise.
SMALL_INPUT = {True: [64, 64], False: [64, 32]}
# Whole-image exps: few proposals and RoIs so the 512-channel keypoint head stays cheap on a CPU.
DETECTION_OPTS = ['MODEL.RPN.PRE_NMS_TOPK_TRAIN', '40', 'MODEL.RPN.PRE_NMS_TOPK_TEST', '40',
                  'MODEL.RPN.POST_NMS_TOPK_TRAIN', '10', 'MODEL.RPN.POST_NMS_TOPK_TEST', '10',
                  'MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE', '4', 'MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE', '2',
                  'MODEL.ROI_HEADS.SCORE_THRESH_TEST', '0.0']


def test_every_project_has_exps():
    projects = {i.split('/')[0] for i in EXP_IDS}
    assert projects == set(LOSS_KEYS), 'projects with exps vs LOSS_KEYS: add the new project\'s loss keys'
    assert len(EXP_IDS) >= 33


def _top_down_targets(cfg, n, g):
    """A batch of random targets in the shape the exp's pipeline produces (docs/DESIGN.md, data samples)."""
    k, (h, w) = cfg.DATASET.KEYPOINT.NUM, cfg.OUTPUT_SHAPE
    if cfg.DATASET.PIPELINE == 'simple_baselines':
        target, weight = torch.rand(n, k, h, w, generator=g), torch.randint(0, 2, (n, k), generator=g)
    else:   # megvii / cpn: one map per Gaussian kernel, peak 255, visibility weights 0/1/2
        levels = len(cfg.DATASET.TRAIN.GAUSSIAN_KERNELS)
        target, weight = torch.rand(n, levels, k, h, w, generator=g) * 255, torch.randint(0, 3, (n, k), generator=g)
    weight[0, 0] = 1    # at least one labelled joint
    return {'target': target, 'target_weight': weight.float()}


def _detection_batch(k):
    kp = torch.zeros(1, k, 3)
    kp[0, :, 0], kp[0, :, 1], kp[0, :, 2] = torch.linspace(30, 70, k), torch.linspace(20, 80, k), 2
    return {'image_size': [(96, 128), (90, 120)], 'scale': [(1.0, 1.0), (0.5, 0.5)],
            'gt_boxes': [torch.tensor([[25., 15, 75, 90]]), torch.tensor([[5., 5, 110, 85]])],
            'gt_keypoints': [kp, kp * 0.9]}


def _build(exp_dir):
    cfg, _ = load_exp(exp_dir, build=False)
    opts = ['MODEL.PRETRAINED', '']     # build_model never reads it; kept empty so nothing can download
    if cfg.DATASET.PIPELINE == 'detection':
        opts += DETECTION_OPTS
    else:
        h, w = cfg.INPUT_SHAPE
        small = SMALL_INPUT[h == w]
        opts += ['INPUT_SHAPE', str(small), 'OUTPUT_SHAPE', str([small[0] // 4, small[1] // 4])]
    torch.manual_seed(0)
    return load_exp(exp_dir, opts)


@pytest.mark.parametrize('exp_dir', EXP_DIRS, ids=EXP_IDS)
def test_exp_builds_trains_and_evaluates(exp_dir, one_thread):
    project = osp.relpath(exp_dir, osp.join(REPO, 'projects')).split(osp.sep)[0]
    assert project in LOSS_KEYS, 'project %s: add its loss keys to LOSS_KEYS in %s' % (project, __file__)
    for script in ('config.py', 'network.py', 'train.py', 'test.py'):
        assert osp.isfile(osp.join(exp_dir, script)), script
    cfg, model = _build(exp_dir)
    k = cfg.DATASET.KEYPOINT.NUM
    assert k == {'COCO': 17, 'MPII': 16}.get(cfg.DATASET.NAME, k)
    g = torch.Generator().manual_seed(0)
    whole_image = cfg.DATASET.PIPELINE == 'detection'
    if whole_image:
        images, batch = torch.randn(2, 3, 96, 128, generator=g) * 0.1, _detection_batch(k)
    else:
        images, batch = torch.randn(2, 3, *cfg.INPUT_SHAPE, generator=g), _top_down_targets(cfg, 2, g)

    losses = model.train()(images, batch)
    assert sorted(losses) == sorted(LOSS_KEYS[project](cfg))
    for name, v in losses.items():
        assert v.dim() == 0 and torch.isfinite(v), name
    total = sum(losses.values())
    assert total.item() > 0
    total.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert [n for n, g in grads.items() if g is None] == []
    assert [n for n, g in grads.items() if not torch.isfinite(g).all()] == []
    assert any(g.abs().sum() > 0 for g in grads.values())

    model.eval()
    with torch.no_grad():
        if not whole_image:
            assert tuple(model(images).shape) == (2, k, *cfg.OUTPUT_SHAPE)
            return
        out = model(images, {'image_size': batch['image_size'], 'scale': batch['scale']})
    assert len(out) == 2
    for r, (h, w), (sx, sy) in zip(out, batch['image_size'], batch['scale']):
        d = len(r['scores'])
        assert 0 < d <= cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE
        assert r['boxes'].shape == (d, 4) and r['keypoints'].shape == (d, k, 3)
        b = r['boxes']      # original-image pixels: inside the image once the input scale is undone
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w / sx + 1e-3).all() and (b[:, 3] <= h / sy + 1e-3).all()
