"""Every MLPE exp: config values (ablation columns, preset); the forward/backward of every exp is in
tests/projects/test_all_exps.py."""
import importlib.util
import os

import pytest
import torch

from cvpack.solver import resolve_solver

EXPS = {  # name: (INPUT_SHAPE, backbone, feature retention, pred kernel, upsample)
    'mlpe_rs50_256x192_a': ([256, 192], 'resnest50', False, 1, 'bilinear'),
    'mlpe_rs50_256x192_b': ([256, 192], 'resnest50', True, 1, 'bilinear'),
    'mlpe_rs50_256x192_c': ([256, 192], 'resnest50', True, 3, 'bilinear'),
    'mlpe_rs50_256x192_d': ([256, 192], 'resnest50', True, 3, 'deconv'),
    'mlpe_rs50_384x288': ([384, 288], 'resnest50', True, 3, 'deconv'),
    'mlpe_rs101_384x288': ([384, 288], 'resnest101', True, 3, 'deconv'),
}


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _exp(repo_root, name):
    d = os.path.join(repo_root, 'projects', 'MLPE', 'exps', name)
    cfg = _load(os.path.join(d, 'config.py'), 'mlpe_cfg_' + name).cfg
    return d, cfg, _load(os.path.join(d, 'network.py'), 'mlpe_net_' + name)


def test_exp_folders_are_the_templates(repo_root):
    exps = os.path.join(repo_root, 'projects', 'MLPE', 'exps')
    assert sorted(os.listdir(exps)) == sorted(EXPS)
    for name in EXPS:
        for script, fn in (('train.py', 'train_main'), ('test.py', 'test_main')):
            text = open(os.path.join(exps, name, script)).read()
            assert 'from cvpack.engine import %s' % fn in text and '%s(cfg, build_model)' % fn in text


@pytest.mark.parametrize('name', sorted(EXPS))
def test_exp_config(repo_root, name):
    d, cfg, _ = _exp(repo_root, name)
    shape, backbone, fr, kernel, up = EXPS[name]
    assert cfg.EXP_NAME == name and cfg.INPUT_SHAPE == shape and cfg.OUTPUT_SHAPE == [shape[0] // 4, shape[1] // 4]
    assert (cfg.MODEL.BACKBONE, cfg.MODEL.FEATURE_RETENTION, cfg.MODEL.PRED_KERNEL, cfg.MODEL.UPSAMPLE) == \
        (backbone, fr, kernel, up)
    assert cfg.MODEL.LATERAL_SKIPS is False and cfg.DATASET.PIPELINE == 'cpn'
    assert cfg.DATASET.TRAIN.GAUSSIAN_KERNELS == [[23, 23], [17, 17], [13, 13], [9, 9]]
    assert [round(m * 255, 2) for m in cfg.INPUT.MEANS] == [122.77, 115.95, 102.98] and cfg.INPUT.STDS == [1.0] * 3
    s = cfg.SOLVER
    assert (s.OPTIMIZER, s.BASE_LR, s.WEIGHT_DECAY, s.LR_SCHEDULER, s.GAMMA) == ('Adam', 5e-4, 1e-5, 'multistep', 0.5)
    assert s.EPOCHS == 50 and s.STEP_EPOCHS == [6, 12, 18, 24, 30, 36, 42, 48]
    # the engine's conversion for full COCO train2017 (149813 records x 4 replicas) at batch 32, one process
    r = resolve_solver(s, world_size=1, dataset_len=149813 * 4)
    assert (r.MAX_ITER, r.STEPS[0], r.STEPS[-1], r.CHECKPOINT_PERIOD, r.LR) == \
        (50 * 18727, 6 * 18727, 48 * 18727, 18727, 5e-4)
    t = cfg.TEST
    assert (t.DECODER, t.GAUSSIAN_KERNEL, t.FLIP, t.FLIP_SHIFT, t.RESCORE, t.USE_GT_BBOX) == \
        ('megvii', 21, True, False, 'megvii', True)


def test_build_never_reads_pretrained(repo_root, tmp_path):
    """MODEL.PRETRAINED is the trainer's business (MLPE.load_pretrained), not build_model's."""
    _, cfg, net = _exp(repo_root, 'mlpe_rs50_256x192_d')
    cfg.MODEL.PRETRAINED = str(tmp_path / 'absent-resnest50.pth')
    with torch.device('meta'):
        model = net.build_model(cfg)
    with pytest.raises(FileNotFoundError, match='absent-resnest50.pth'):
        model.load_pretrained(cfg.MODEL.PRETRAINED)


def test_input_shape_override_must_keep_output_shape_a_quarter(repo_root):
    """`test.py INPUT_SHAPE "[384, 288]"` on a 256x192 exp left OUTPUT_SHAPE [64, 48]: the model gave 96x72 maps
    and the codec decoded them with stride 384 / 64 = 6 instead of 4 (a peak at cell (36, 48) became input pixel
    (219, 289.5), not (146, 194)), no error. build_model now refuses it, naming the exp and both shapes."""
    from cvpack.exp import load_exp
    d = os.path.join(repo_root, 'projects', 'MLPE', 'exps', 'mlpe_rs50_256x192_d')
    cfg, _ = load_exp(d, opts=['INPUT_SHAPE', '[384, 288]'], build=False)
    net = _load(os.path.join(d, 'network.py'), 'mlpe_net_shape')
    with pytest.raises(ValueError, match=r'mlpe_rs50_256x192_d: OUTPUT_SHAPE \[64, 48\] must be INPUT_SHAPE / 4 = '
                                         r'\[96, 72\]'):
        net.build_model(cfg)
    cfg, _ = load_exp(d, opts=['INPUT_SHAPE', '[200, 160]', 'OUTPUT_SHAPE', '[50, 40]'], build=False)
    with pytest.raises(ValueError, match=r'divisible by 32, got \[200, 160\]'):
        net.build_model(cfg)
    cfg, _ = load_exp(d, opts=['INPUT_SHAPE', '[384, 288]', 'OUTPUT_SHAPE', '[96, 72]'], build=False)
    with torch.device('meta'):
        model = net.build_model(cfg).eval()
        assert model(torch.zeros(1, 3, 384, 288)).shape == (1, 17, 96, 72)
