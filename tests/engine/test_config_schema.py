"""Config values validated at resolution (cvpack.config.schema): bad overrides through an exp's train.py / test.py
entry points (train_main / test_main, one real subprocess) fail at start-up naming the key and the value, before any
folder is created (docs/RELIABILITY.md, issue #12 "Inputs")."""
import os.path as osp
import re
import subprocess
import sys

import pytest

from cvpack.config import ConfigError, base_config, merge_from_list
from cvpack.engine import test_main as run_test_main
from cvpack.engine import train_main
from cvpack.engine.utils import resolve_cfg


@pytest.mark.parametrize('key,text,message', [
    ('SOLVER.MAX_ITER', '2.5', r'SOLVER.MAX_ITER: 2.5 is not an integer \(expected a finite integer >= 1\)'),
    ('SOLVER.IMS_PER_GPU', '0', r'SOLVER.IMS_PER_GPU: 0 is out of range \(expected a finite integer >= 1\)'),
    ('SOLVER.BASE_LR', '1e999', r"SOLVER.BASE_LR: '1e999' is inf, not a finite number"),
    ('SOLVER.BASE_LR', 'inf', r"SOLVER.BASE_LR: 'inf' is not a finite number"),
    ('SOLVER.BASE_LR', '-1e-3', r'SOLVER.BASE_LR: -0.001 is out of range \(expected a finite number >= 0\)'),
    ('SOLVER.CHECKPOINT_PERIOD', '0', r'SOLVER.CHECKPOINT_PERIOD: 0 is out of range'),
    ('SOLVER.WARMUP_ITERS', '-1', r'SOLVER.WARMUP_ITERS: -1 is out of range \(expected a finite integer >= 0\)'),
    ('SOLVER.STEPS', '[2, 3.5]', r'SOLVER.STEPS\[1\]: 3.5 is not an integer'),
    ('SOLVER.BETAS', '(0.9,)',
     r'SOLVER.BETAS: \(0.9,\) has 1 items \(expected a list of 2 items, each a finite number >= 0 and < 1\)'),
    ('SOLVER.CLIP_GRAD_NORM', "'big'", r"SOLVER.CLIP_GRAD_NORM: \"'big'\" is a str \(expected a finite number > 0"),
    ('SOLVER.OPTIMIZER', 'Adagrad', r"SOLVER.OPTIMIZER: 'Adagrad' is not allowed \(expected one of 'Adam', "),
    ('DATALOADER.NUM_WORKERS', '-2', r'DATALOADER.NUM_WORKERS: -2 is out of range'),
    ('SEED', '1.5', r'SEED: 1.5 is not an integer'),
])
def test_bad_train_override_names_key_and_value(toy, toy_exp, tmp_path, capsys, key, text, message):
    """A usage error: exit 2 and one line naming key and value on stderr (argparse's parser.error)."""
    exp, cfg = toy_exp
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as info:
        train_main(cfg, toy.build_model, argv=[key, text, 'OUTPUT_DIR', str(out)],
                   dataset_builder=toy.dataset_builder, collate_fn=toy.collate)
    assert info.value.code == 2
    assert re.search('error: config key ' + message, capsys.readouterr().err)
    assert not out.exists()          # failed at resolution, before any folder or file was written


def test_bad_test_override(toy, toy_exp, tmp_path, capsys):
    exp, cfg = toy_exp
    with pytest.raises(SystemExit):
        run_test_main(cfg, toy.build_model, argv=['TEST.IMS_PER_GPU', '0', 'OUTPUT_DIR', str(tmp_path / 'o')],
                      dataset_builder=toy.dataset_builder, predictor_builder=toy.predictor_builder,
                      evaluator_builder=toy.evaluator_builder, collate_fn=toy.collate)
    assert 'error: config key TEST.IMS_PER_GPU: 0 is out of range' in capsys.readouterr().err


def test_good_values_keep_their_types(tmp_path):
    cfg = resolve_cfg(base_config(str(tmp_path)), ['SOLVER.MAX_ITER', '1e3', 'SOLVER.BASE_LR', '1',
                                                   'SOLVER.STEPS', '[10, 20.0]', 'SOLVER.CLIP_GRAD_NORM', '2'])
    assert cfg.SOLVER.MAX_ITER == 1000 and type(cfg.SOLVER.MAX_ITER) is int     # integral float -> int
    assert cfg.SOLVER.BASE_LR == 1.0 and type(cfg.SOLVER.BASE_LR) is float
    assert list(cfg.SOLVER.STEPS) == [10, 20] and all(type(s) is int for s in cfg.SOLVER.STEPS)
    assert cfg.SOLVER.CLIP_GRAD_NORM == 2
    assert merge_from_list(base_config(str(tmp_path)), ['SOLVER.AMP', 'bf16']).SOLVER.AMP == 'bf16'


def test_values_set_in_config_py_are_checked(toy, tmp_path):
    from cvpack.exp import load_exp
    exp = toy.write_exp(tmp_path)
    with open(osp.join(exp, 'config.py'), 'a') as f:
        f.write('cfg.SOLVER.IMS_PER_GPU = 0\n')
    with pytest.raises(ConfigError, match='config key SOLVER.IMS_PER_GPU: 0 is out of range'):
        load_exp(exp, build=False)


def test_every_shipped_exp_passes_the_schema(repo_root):
    import glob
    from cvpack.exp import load_exp
    exps = sorted(glob.glob(osp.join(repo_root, 'projects', '*', 'exps', '*', 'config.py')))
    assert len(exps) >= 20
    for path in exps:
        load_exp(osp.dirname(path), build=False)


def test_real_train_script_rejects_bad_override(toy, tmp_path, sub_env):
    """``python train.py SOLVER.MAX_ITER 2.5`` (the issue: accepted, then crashed in range()): exits non-zero at
    start-up with the key and the value in its last line, and writes nothing."""
    exp = toy.write_exp(tmp_path)
    out = tmp_path / 'out'
    proc = subprocess.run([sys.executable, 'train.py', 'SOLVER.MAX_ITER', '2.5', 'OUTPUT_DIR', str(out)], cwd=exp,
                          env=sub_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and not out.exists()
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith('error: config key SOLVER.MAX_ITER: 2.5 is not an integer '
                                                         '(expected a finite integer >= 1)')


@pytest.mark.parametrize('key,text,message', [
    # an int key (not in the schema) given a fraction: was stored as 2.5
    ('MODEL.UPSAMPLE_CHANNEL_NUM', '2.5', r"MODEL.UPSAMPLE_CHANNEL_NUM: '2.5' is not an integer \(old value 256\)"),
    ('MODEL.PRM', 'yes', r"MODEL.PRM: cannot parse 'yes' as bool"),
    ('MODEL.PRM', '0', r"MODEL.PRM: '0' is not a bool \(use True or False\)"),
    # a list key given a scalar or items of another type: was stored as 0.5 / ['a']
    ('TEST.SHIFT_RATIOS', '0.5', r"TEST.SHIFT_RATIOS: '0.5' is not a list literal"),
    ('TEST.SHIFT_RATIOS', "['a']", r"TEST.SHIFT_RATIOS\[0\]: 'a' is not a number \(old value 0.25\)"),
    ('DATASET.TRAIN.GAUSSIAN_KERNELS', '[[15, 15], [11, 11.5]]',
     r'DATASET.TRAIN.GAUSSIAN_KERNELS\[1\]\[1\]: 11.5 is not an integer \(expected a finite odd integer >= 1\)'),
    ('DATASET.KEYPOINT.FLIP_PAIRS', '[1, 2]', r'DATASET.KEYPOINT.FLIP_PAIRS\[0\]: 1 is not a list literal'),
    # None only where the key is nullable: was stored as None and failed later (or silently meant "off")
    ('TEST.DET_FILE', 'None', r"TEST.DET_FILE: None is not allowed \(the key is not nullable; its value is 'det_json/"),
    ('MODEL.UPSAMPLE_CHANNEL_NUM', 'none', r'MODEL.UPSAMPLE_CHANNEL_NUM: None is not allowed \(the key is not'),
    ('DATASET.TRAIN.HALF_BODY_DRAW', 'None', r'DATASET.TRAIN.HALF_BODY_DRAW: None is not allowed'),
    ('SOLVER.BASE_LR', 'None', r'SOLVER.BASE_LR: None is not allowed \(expected a finite number >= 0\)'),
])
def test_overrides_keep_their_types(tmp_path, key, text, message):
    from cvpack.config.megvii import megvii_config
    with pytest.raises(ConfigError, match='^config key ' + message):
        merge_from_list(megvii_config(str(tmp_path)), [key, text])


def test_overrides_of_the_right_type_are_converted(tmp_path):
    from cvpack.config.megvii import megvii_config
    cfg = merge_from_list(megvii_config(str(tmp_path)), [
        'DATASET.TRAIN.X_EXTENTION', '1', 'MODEL.UPSAMPLE_CHANNEL_NUM', '1e2', 'INPUT.MEANS', '[1, 0, 0]',
        'TEST.SHIFT_RATIOS', '(0.5,)', 'MODEL.PRETRAINED', 'None', 'MODEL.BLOCKS', '[2, 2, 2, 2]', 'MODEL.PRM', 'TRUE',
        'MODEL.WEIGHT', '/x/y.pth'])
    assert cfg.DATASET.TRAIN.X_EXTENTION == 1.0 and type(cfg.DATASET.TRAIN.X_EXTENTION) is float
    assert cfg.MODEL.UPSAMPLE_CHANNEL_NUM == 100 and type(cfg.MODEL.UPSAMPLE_CHANNEL_NUM) is int
    assert cfg.INPUT.MEANS == [1.0, 0.0, 0.0] and all(type(v) is float for v in cfg.INPUT.MEANS)
    assert cfg.TEST.SHIFT_RATIOS == (0.5,) and cfg.MODEL.PRETRAINED is None and cfg.MODEL.BLOCKS == [2, 2, 2, 2]
    assert cfg.MODEL.PRM is True and cfg.MODEL.WEIGHT == '/x/y.pth'
    cfg = merge_from_list(cfg, ['MODEL.BLOCKS', 'None', 'MODEL.PRETRAINED', 'https://x/r50.pth'])
    assert cfg.MODEL.BLOCKS is None and cfg.MODEL.PRETRAINED == 'https://x/r50.pth'


@pytest.mark.parametrize('preset,opts,key,expected', [
    # 'none' is a choice of its own (the default of TEST.NMS): it was refused as "None is not allowed"
    ('megvii', ['TEST.NMS', 'none'], 'TEST.NMS', 'none'),
    ('megvii', ['TEST.RESCORE', 'none'], 'TEST.RESCORE', 'none'),
    # a Float list whose preset wrote ints: a fraction was refused as "not an integer (old value 90)"
    ('sb', ['SOLVER.EPOCHS', '20', 'SOLVER.STEP_EPOCHS', '[12.5, 17.5]'], 'SOLVER.STEP_EPOCHS', [12.5, 17.5]),
    ('cpn', ['SOLVER.STEP_EPOCHS', '[6, 12.5]'], 'SOLVER.STEP_EPOCHS', [6, 12.5]),
    # rotation in degrees, written as an int by the presets
    ('megvii', ['DATASET.TRAIN.ROTATION_FACTOR', '22.5'], 'DATASET.TRAIN.ROTATION_FACTOR', 22.5),
])
def test_valid_values_the_typed_overrides_refused(tmp_path, preset, opts, key, expected):
    node = merge_from_list(_preset(preset, tmp_path), opts)
    for part in key.split('.'):
        node = node[part]
    assert node == expected


def test_none_is_still_refused_where_it_is_no_choice(tmp_path):
    with pytest.raises(ConfigError, match="^config key TEST.NMS: None is not allowed"):
        merge_from_list(_preset('megvii', tmp_path), ['TEST.NMS', 'NONE'])    # the choices are compared exactly
    with pytest.raises(ConfigError, match="^config key DATASET.TRAIN.ROTATION_FACTOR: -5 is out of range"):
        merge_from_list(_preset('megvii', tmp_path), ['DATASET.TRAIN.ROTATION_FACTOR', '-5'])


def _preset(name, tmp_path):
    from cvpack.config.cpn import cpn_config
    from cvpack.config.megvii import megvii_config
    from cvpack.config.simple_baselines import simple_baselines_config
    return dict(megvii=megvii_config, cpn=cpn_config, sb=simple_baselines_config)[name](str(tmp_path))


@pytest.mark.parametrize('preset,key,text,message', [
    ('megvii', 'TEST.GAUSSIAN_KERNEL', '4', r'TEST.GAUSSIAN_KERNEL: 4 is even \(expected a finite odd integer >= 1\)'),
    ('cpn', 'TEST.GAUSSIAN_KERNEL', '-3', r'TEST.GAUSSIAN_KERNEL: -3 is out of range'),
    ('sb', 'TEST.DARK_KERNEL', '10', r'TEST.DARK_KERNEL: 10 is even'),
    ('megvii', 'DATASET.TRAIN.GAUSSIAN_KERNELS', '[[15, 15], [10, 11]]',
     r'DATASET.TRAIN.GAUSSIAN_KERNELS\[1\]\[0\]: 10 is even'),
    ('cpn', 'DATASET.TRAIN.GAUSSIAN_KERNELS', '[[23, 23, 23]]',
     r'DATASET.TRAIN.GAUSSIAN_KERNELS\[0\]: \[23, 23, 23\] has 3'),
    ('megvii', 'INPUT.MEANS', '[0.4, 0.4]', r'INPUT.MEANS: \[0.4, 0.4\] has 2 items \(expected a list of 3 items'),
    ('sb', 'INPUT.STDS', '[0.2, 0, 0.2]', r'INPUT.STDS\[1\]: 0.0 is out of range \(expected a finite number > 0\)'),
    ('megvii', 'LOSS.TOPK', '0', r'LOSS.TOPK: 0 is out of range \(expected a finite integer >= 1\)'),
    ('megvii', 'DATASET.KEYPOINT.LOAD_MIN_NUM', '18',
     r'DATASET.KEYPOINT.LOAD_MIN_NUM: 18 is more than DATASET.KEYPOINT.NUM = 17 \(a person has no more keypoints'),
    ('sb', 'TEST.NMS', 'OKS', r"TEST.NMS: 'OKS' is not allowed \(expected one of 'none', 'oks', 'soft_oks'\)"),
    ('megvii', 'TEST.RESCORE', 'Megvii', r"TEST.RESCORE: 'Megvii' is not allowed \(expected one of 'megvii', "),
    ('megvii', 'TEST.DECODER', 'Megvii', r"TEST.DECODER: 'Megvii' is not allowed \(expected one of 'megvii', "),
    ('megvii', 'LOSS.MASK', 'MMPose', r"LOSS.MASK: 'MMPose' is not allowed \(expected one of 'megvii', 'mmpose'\)"),
    ('megvii', 'DATASET.TRAIN.HALF_BODY_DRAW', 'Uniform', r"DATASET.TRAIN.HALF_BODY_DRAW: 'Uniform' is not allowed"),
    ('sb', 'SOLVER.LR_SCHEDULER', 'Cosine', r"SOLVER.LR_SCHEDULER: 'Cosine' is not allowed"),
    ('sb', 'CODEC', 'MSRA', r"CODEC: 'MSRA' is not allowed \(expected one of 'megvii', 'cpn', 'msra'\)"),
    ('sb', 'TEST.DECODER', 'megvii', r"TEST.DECODER: TEST.DECODER 'megvii' does not fit CODEC 'msra' \(its score rule"),
    ('megvii', 'MODEL.DEVICE', 'gpu',
     r"MODEL.DEVICE: 'gpu' is not a device \(expected 'auto' \(or None\), 'cpu', 'cuda' or 'cuda:N'\)"),
    ('megvii', 'MODEL.DEVICE', 'cuda:x', r"MODEL.DEVICE: 'cuda:x' is not a device"),
    ('megvii', 'MODEL.DEVICE', 'cpu:0', r"MODEL.DEVICE: 'cpu:0' is not a device"),
])
def test_schema_rules_of_kernels_channels_choices_and_devices(tmp_path, preset, key, text, message):
    """Each was accepted at resolution and failed later (cv2 on an even kernel in a worker, a choice in another
    case as an unknown mode at the first evaluation, a decoder of another codec at the dataset build, 'gpu' at
    device setup) or never (STDS 0: inf inputs; LOAD_MIN_NUM 18: an empty dataset)."""
    with pytest.raises(ConfigError, match='^config key ' + message):
        merge_from_list(_preset(preset, tmp_path), [key, text])


def test_choices_the_code_reads_in_any_case_and_good_values_pass(tmp_path):
    cfg = merge_from_list(_preset('megvii', tmp_path), [
        'MODEL.DEVICE', 'CUDA:1', 'SOLVER.OPTIMIZER', 'sgd', 'SOLVER.AMP', 'BF16', 'TEST.GAUSSIAN_KERNEL', '7',
        'TEST.DECODER', 'dark', 'TEST.DARK_KERNEL', '1', 'DATASET.KEYPOINT.LOAD_MIN_NUM', '17', 'LOSS.TOPK', '17'])
    assert (cfg.MODEL.DEVICE, cfg.SOLVER.OPTIMIZER, cfg.TEST.GAUSSIAN_KERNEL, cfg.TEST.DARK_KERNEL) == ('CUDA:1', 'sgd',
                                                                                                       7, 1)
    from cvpack.engine.launch import resolve_device
    assert resolve_device('CPU') == ('cpu', None)          # the rule accepts what the device setup accepts
    cfg = merge_from_list(_preset('megvii', tmp_path), ['MODEL.DEVICE', 'None'])   # None meant 'auto' before the rule
    assert cfg.MODEL.DEVICE is None and resolve_device(cfg.MODEL.DEVICE) == resolve_device('auto')


def test_decoder_choices_match_the_decoders():
    from cvpack.config.schema import SCHEMA
    from cvpack.decode.heatmap import DECODERS
    assert sorted(SCHEMA['TEST.DECODER'].choices) == sorted(DECODERS)


@pytest.mark.parametrize('opts, key', [(['SOLVER.MAX_ITER', 'SOLVER.BASE_LR', '0.1'], 'SOLVER.MAX_ITER'),
                                       (['SOLVER.MAX_ITER', '5', 'SOLVER.BASE_LR'], 'SOLVER.BASE_LR')])
def test_odd_overrides_name_the_key_without_a_value(tmp_path, opts, key):
    """An odd KEY VALUE list named its last item, '0.1', as the key without a value; now the key followed by
    another key (or the last item when none is)."""
    with pytest.raises(ConfigError, match=r'^config key %s has no value \(overrides come in KEY VALUE pairs'
                       % re.escape(key)):
        merge_from_list(base_config(str(tmp_path)), opts)
