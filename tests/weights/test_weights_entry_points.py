"""cvpack.weights through every entry point: test.py (--checkpoint, MODEL.WEIGHT), the convert CLI, the API.

Weight files are made here: mmpose-format RSN-18 from the committed manifest + seeded fill
(tests/data/mmpose, see test_mmpose_equivalence.py), the authors' ``{'model': ...}`` format from our own model.
"""
import gzip
import json
import logging
import os
import os.path as osp
import pickle
import re
import time

import numpy as np
import pytest
import torch

from cvpack.data import collate
from cvpack.data.topdown import TopDownDataset
from cvpack.engine import test_main as run_test_main
from cvpack.engine.checkpoint import ModelMismatchError
from cvpack.exp import import_exp_module
from cvpack.inference import build_predictor
from cvpack.safe_load import CheckpointError, UnsafeFileError
from cvpack.tools import convert as convert_cli
from cvpack.weights import apply_overrides, build_model_with_weights, prepare
from cvpack.weights.fill import fill_state_dict

HERE = osp.dirname(osp.abspath(__file__))

RSN18 = 'projects/RSN/exps/RSN18.coco'


@pytest.fixture(autouse=True)
def _restore_cvpack_logging():
    """test_main points the 'cvpack' loggers at this test's (captured) stdout; restore them afterwards so later
    tests do not log into a closed stream."""
    loggers = [logging.getLogger(n) for n in ('cvpack', 'projects')]
    saved = [(lg, list(lg.handlers), lg.propagate, lg.level) for lg in loggers]
    yield
    for lg, handlers, propagate, level in saved:
        for h in list(lg.handlers):
            if h not in handlers:
                lg.removeHandler(h)
                h.close()
        for h in handlers:
            if h not in lg.handlers:
                lg.addHandler(h)
        lg.propagate, lg.level = propagate, level


def _manifest():
    with gzip.open(osp.join(HERE, '..', 'data', 'mmpose', 'manifest.json.gz'), 'rt', encoding='utf-8') as f:
        return json.load(f)


MANIFEST = _manifest()


def mmpose_file(path, name='RSN-18', extra=None, drop=None):
    """An mmpose-format checkpoint of ``name`` as mmpose writes it (state_dict + meta + optimizer)."""
    state = fill_state_dict(MANIFEST['models'][name]['keys'], seed=MANIFEST['seed'])
    state.update(extra or {})
    for k in drop or ():
        del state[k]
    torch.save({'state_dict': state, 'meta': {'epoch': 210}, 'optimizer': {'state': {}}}, str(path))
    return str(path)


@pytest.fixture
def rsn18(repo_root):
    exp = osp.join(repo_root, RSN18)
    config = import_exp_module(exp, 'config')
    network = import_exp_module(exp, 'network', aliases={'config': config})
    return exp, config.cfg, network.build_model


def _run_test(cfg, build_model, argv, coco_subset, tmp_path):
    """test_main on two GT boxes of the shipped COCO subset; returns (cfg the dataset saw, instances)."""
    seen, got = [], []

    def dataset_builder(c, split):
        seen.append(c)
        return TopDownDataset(c, split).subset([0, 1])

    def evaluator_builder(c):
        return lambda instances, out: got.extend(instances) or {'AP': 0.0}

    opts = ['DATASET.ROOT', coco_subset, 'TEST.USE_GT_BBOX', 'True', 'MODEL.DEVICE', 'cpu',
            'OUTPUT_DIR', str(tmp_path / 'out'), 'DATALOADER.NUM_WORKERS', '0']
    run_test_main(cfg, build_model, argv=argv + opts, dataset_builder=dataset_builder,
              evaluator_builder=evaluator_builder)
    return seen[0], got


def _keypoints(instances):
    return np.stack([inst['keypoints'] for inst in instances])


def test_mmpose_file_direct_converted_and_api_give_the_same_keypoints(rsn18, tmp_path, coco_subset, one_thread,
                                                                     http_root):
    exp, cfg, build_model = rsn18
    root, base = http_root
    src = mmpose_file(root / 'rsn18_mmpose.pth')
    # test.py --checkpoint with the foreign file (a model-zoo URL, served from 127.0.0.1): converted on the fly,
    # overrides applied before the model is built
    seen, direct = _run_test(cfg, build_model, ['--checkpoint', base + 'rsn18_mmpose.pth'], coco_subset, tmp_path)
    assert seen.DATASET.COLOR_RGB is True and seen.TEST.DECODER == 'mmpose_megvii'
    assert seen.MODEL.CONV_BIAS is False and list(seen.INPUT.MEANS) == [0.485, 0.456, 0.406]
    assert cfg.MODEL.CONV_BIAS is True          # the exp's own config is untouched
    # the convert CLI, then test.py on its output: the stored overrides come back
    out = str(tmp_path / 'converted.pth')
    assert convert_cli.main([src, '--exp', exp, '--out', out]) == 0
    seen2, converted = _run_test(cfg, build_model, ['--checkpoint', out], coco_subset, tmp_path)
    assert seen2.DATASET.COLOR_RGB is True and seen2.TEST.X_EXTENTION == 0.25
    # MODEL.WEIGHT with the foreign file
    _, via_weight = _run_test(cfg, build_model, ['MODEL.WEIGHT', src], coco_subset, tmp_path)
    np.testing.assert_array_equal(_keypoints(direct), _keypoints(converted))
    np.testing.assert_array_equal(_keypoints(direct), _keypoints(via_weight))
    # the Python API on the same crops: the same numbers
    api_cfg, model, prepared = build_model_with_weights(exp, out, ['DATASET.ROOT', coco_subset,
                                                                   'TEST.USE_GT_BBOX', 'True'])
    assert prepared.format == 'megvii' and prepared.cfg_overrides['DATASET.COLOR_RGB'] is True
    ds = TopDownDataset(api_cfg, 'val').subset([0, 1])
    api = build_predictor(api_cfg)(model, collate([ds[0], ds[1]]))
    np.testing.assert_array_equal(_keypoints(direct), _keypoints(api))


def test_convert_cli_output_and_speed(rsn18, tmp_path, capsys, repo_root):
    """The converted file holds our keys, the overrides and the source; a 57M-parameter MSPN converts in seconds."""
    exp, cfg, _ = rsn18
    src = mmpose_file(tmp_path / 'm.pth')
    out = str(tmp_path / 'c.pth')
    assert convert_cli.main([src, '--exp', exp, '--out', out]) == 0
    printed = capsys.readouterr().out
    assert 'format: mmpose' in printed and 'num_batches_tracked x 115' in printed and 'meta' in printed
    assert 'optimizer' in printed and 'MODEL.CONV_BIAS = False' in printed
    saved = torch.load(out, weights_only=True)
    assert set(saved) == {'model', 'cfg_overrides', 'source'}
    assert saved['source']['format'] == 'mmpose' and saved['source']['file'] == 'm.pth'
    direct = prepare(cfg, src)
    assert set(saved['model']) == set(direct.state_dict)
    for k, v in direct.state_dict.items():
        assert torch.equal(saved['model'][k], v)
    assert not [p for p in os.listdir(tmp_path) if '.tmp.' in p]     # atomic write leaves no temporary file

    big = mmpose_file(tmp_path / 'mspn2.pth', 'MSPN-2')
    start = time.perf_counter()
    assert convert_cli.main([big, '--exp', osp.join(repo_root, 'projects/MSPN/exps/mspn.2xstg.coco'),
                             '--out', str(tmp_path / 'mspn2_ours.pth')]) == 0
    elapsed = time.perf_counter() - start
    print('MSPN-2 (56.8M parameters) converted in %.2f s' % elapsed)
    assert elapsed < 30     # seconds, on a loaded 2-core machine (measured: see the report in the README table)


def test_errors_name_every_key(rsn18, tmp_path, capsys, repo_root):
    exp, cfg, _ = rsn18
    keys = [k for k, _ in MANIFEST['models']['RSN-18']['keys']]
    # keys that no rule places
    src = mmpose_file(tmp_path / 'extra.pth', extra={'backbone.multi_stage_rsn.0.extra.weight': torch.ones(1),
                                                     'head.other.weight': torch.ones(1)})
    with pytest.raises(CheckpointError, match=r'extra\.pth.*2 mmpose key\(s\) could not be placed: '
                                              r'backbone\.multi_stage_rsn\.0\.extra\.weight, head\.other\.weight'):
        prepare(cfg, src)
    # a shape mismatch and a missing key: named with both shapes / its name, through the CLI
    conv = 'head.predict_layers.3.conv_layers.1.conv.weight'
    assert conv in keys
    src = mmpose_file(tmp_path / 'bad.pth', extra={conv: torch.ones(16, 256, 3, 3)},
                      drop=['backbone.top.top.0.bn.running_var'])
    assert convert_cli.main([src, '--exp', exp, '--out', str(tmp_path / 'x.pth')]) == 2
    err = capsys.readouterr().err
    assert 'stage0.upsample.up4.res_conv2.conv.weight: file (16, 256, 3, 3) vs model (17, 256, 3, 3)' in err
    assert 'top.conv.bn.running_var' in err and not osp.exists(tmp_path / 'x.pth')
    # the wrong exp: says what the file holds
    src = mmpose_file(tmp_path / 'ok.pth')
    assert convert_cli.main([src, '--exp', osp.join(repo_root, 'projects/MSPN/exps/mspn.1xstg.coco'),
                             '--out', str(tmp_path / 'y.pth')]) == 2
    assert "1-stage mmpose RSN with blocks [2, 2, 2, 2]" in capsys.readouterr().err
    # mmpose 0.x naming (its MSPN zoo files): keypoint_head.* converts to the same tensors
    old = mmpose_file(tmp_path / 'v0.pth')
    obj = torch.load(old, weights_only=True)
    obj['state_dict'] = {k.replace('head.', 'keypoint_head.', 1) if k.startswith('head.') else k: v
                         for k, v in obj['state_dict'].items()}
    torch.save(obj, old)
    new = prepare(cfg, src).state_dict
    got = prepare(cfg, old).state_dict
    assert set(got) == set(new) and all(torch.equal(got[k], new[k]) for k in new)
    with pytest.raises(KeyError, match='NOPE'):
        apply_overrides(cfg, {'MODEL.NOPE': 1}, 'w.pth')
    # a forced format that does not fit the file
    torch.save({'model': {'top.conv.weight': torch.ones(1)}}, str(tmp_path / 'megvii.pth'))
    assert convert_cli.main([str(tmp_path / 'megvii.pth'), '--exp', exp, '--format', 'mmpose',
                             '--out', str(tmp_path / 'z.pth')]) == 2
    assert "megvii.pth: is not in the 'mmpose' format" in capsys.readouterr().err


def test_mmpose_preprocessor_statistics_travel_with_the_weights(rsn18, tmp_path):
    """A file that stores mmpose's data_preprocessor mean/std (RGB, 0-255) gives those as INPUT.MEANS/STDS."""
    exp, cfg, _ = rsn18
    mean, std = torch.tensor([120.0, 110.0, 100.0]).view(3, 1, 1), torch.tensor([60.0, 50.0, 40.0]).view(3, 1, 1)
    src = mmpose_file(tmp_path / 'p.pth', extra={'data_preprocessor.mean': mean, 'data_preprocessor.std': std})
    prepared = prepare(cfg, src)
    np.testing.assert_allclose(prepared.cfg_overrides['INPUT.MEANS'], [120 / 255, 110 / 255, 100 / 255])
    np.testing.assert_allclose(prepared.cfg_overrides['INPUT.STDS'], [60 / 255, 50 / 255, 40 / 255])
    assert {'data_preprocessor.mean', 'data_preprocessor.std', 'meta', 'optimizer'} <= set(prepared.dropped)


def test_authors_megvii_files_through_every_entry_point(rsn18, tmp_path, coco_subset, one_thread, capsys):
    """The RSN/MSPN authors' ``{'model': state_dict}`` (DDP ``module.`` keys) and a bare state dict."""
    exp, cfg, build_model = rsn18
    torch.manual_seed(3)
    model = build_model(cfg).eval()
    for m in model.modules():       # non-trivial BN statistics so the outputs depend on every tensor
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
            m.running_mean.normal_(0, 0.1)
    sd = model.state_dict()
    authors = str(tmp_path / 'authors.pth')
    torch.save({'model': {'module.' + k: v for k, v in sd.items()}, 'iteration': 96000, 'optimizer': {}}, authors)
    bare = str(tmp_path / 'bare.pth')
    torch.save(sd, bare)
    _, ref = _run_test(cfg, lambda c: model, ['--checkpoint', bare], coco_subset, tmp_path)
    _, a = _run_test(cfg, build_model, ['--checkpoint', authors], coco_subset, tmp_path)
    _, b = _run_test(cfg, build_model, ['MODEL.WEIGHT', authors], coco_subset, tmp_path)
    out = str(tmp_path / 'ours.pth')
    assert convert_cli.main([authors, '--exp', exp, '--out', out]) == 0
    printed = capsys.readouterr().out
    assert 'format: megvii' in printed and 'iteration' in printed and 'optimizer' in printed
    _, c = _run_test(cfg, build_model, ['--checkpoint', out], coco_subset, tmp_path)
    for other in (a, b, c):
        np.testing.assert_array_equal(_keypoints(ref), _keypoints(other))
    assert prepare(cfg, out).cfg_overrides == {}


def test_project_formats_come_from_the_exp_config(rsn18, tmp_path, monkeypatch):
    """MODEL.WEIGHT_FORMATS {name: module} is tried before the core formats; its overrides reach the config."""
    exp, cfg, build_model = rsn18
    (tmp_path / 'toyfmt.py').write_text(
        "def detect(obj):\n    return isinstance(obj, dict) and 'toy_weights' in obj\n"
        "def convert(obj, cfg):\n"
        "    sd = {k.replace('toy.', '', 1): v for k, v in obj['toy_weights'].items()}\n"
        "    return dict(state_dict=sd, cfg={'TEST.FLIP': False}, dropped=['toy_meta'])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = apply_overrides(cfg, {'MODEL.WEIGHT_FORMATS': {'toy': 'toyfmt'}})
    model = build_model(cfg)
    src = str(tmp_path / 'toy.pth')
    torch.save({'toy_weights': {'toy.' + k: v for k, v in model.state_dict().items()}, 'toy_meta': 1}, src)
    new_cfg, loaded, prepared = build_model_with_weights((cfg, build_model), src)
    assert prepared.format == 'toy' and prepared.dropped == ['toy_meta'] and new_cfg.TEST.FLIP is False
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    with pytest.raises(KeyError, match="unknown weight format 'nope'.*megvii, mmpose, toy"):
        prepare(cfg, src, fmt='nope')


def test_code_running_pickles_are_refused_everywhere(rsn18, tmp_path, evil, http_root, capsys):
    """.pth and .pkl, path and URL (127.0.0.1): refused by the convert CLI and test.py; nothing runs."""
    exp, cfg, build_model = rsn18
    root, base = http_root
    torch.save({'state_dict': {'backbone.multi_stage_rsn.0.x': torch.ones(1)}, 'meta': evil}, root / 'evil.pth')
    with open(root / 'evil.pkl', 'wb') as f:
        pickle.dump({'model': {'w': np.ones(2)}, 'x': evil}, f)
    for source in (str(root / 'evil.pth'), base + 'evil.pth', str(root / 'evil.pkl'), base + 'evil.pkl'):
        assert convert_cli.main([source, '--exp', exp, '--out', str(tmp_path / 'o.pth')]) == 2
        err = capsys.readouterr().err
        assert 'evil.p' in err and 'posix.system' in err
    for argv in (['--checkpoint', str(root / 'evil.pth')], ['--checkpoint', base + 'evil.pkl'],
                 ['MODEL.WEIGHT', base + 'evil.pth'], ['MODEL.WEIGHT', str(root / 'evil.pkl')]):
        with pytest.raises(UnsafeFileError, match='evil'):
            run_test_main(cfg, build_model, argv=argv + ['MODEL.DEVICE', 'cpu', 'OUTPUT_DIR', str(tmp_path / 't')])
    assert not osp.exists(evil.marker) and not osp.exists(tmp_path / 'o.pth')


def test_fine_tuning_weights_check_the_config(rsn18, tmp_path):
    """train.py's MODEL.WEIGHT (load_model_weights into a built model): foreign formats convert, weights needing
    other settings are refused with the KEY VALUE pairs to add, and a file fitting nothing is an error."""
    from cvpack.engine.checkpoint import load_model_weights
    exp, cfg, build_model = rsn18
    src = mmpose_file(tmp_path / 'm.pth')
    with pytest.raises(ValueError, match=r'needs config settings.*MODEL\.CONV_BIAS False.*DATASET\.COLOR_RGB True'):
        load_model_weights(build_model(cfg), src, strict=False, cfg=cfg)
    good = apply_overrides(cfg, prepare(cfg, src).cfg_overrides)
    model = build_model(good)
    assert load_model_weights(model, src, strict=False, cfg=good) == ([], [])
    for k, v in prepare(cfg, src).state_dict.items():
        assert torch.equal(model.state_dict()[k], v)
    torch.save({'model': {'other.weight': torch.ones(1)}}, str(tmp_path / 'unrelated.pth'))
    with pytest.raises(ModelMismatchError, match='unrelated.pth: none of its 1 tensors belongs to the MultiStageNet'):
        load_model_weights(model, str(tmp_path / 'unrelated.pth'), strict=False, cfg=good)


def test_config_values_a_file_sets_pass_the_schema(rsn18, tmp_path):
    """A weight file's config overrides skipped the schema a command-line override goes through: a converted
    file's INPUT.STDS [0, 0, 0] (images divided by 0) or an mmpose file's 1-value data_preprocessor mean (one value
    broadcast over the 3 channels) built the model silently. Refused before the model is built, naming the file."""
    from cvpack.config.schema import ConfigError
    _, cfg, build_model = rsn18
    state = build_model(cfg).state_dict()   # weights that fit: only the config values are wrong
    torch.save({'model': state, 'cfg_overrides': {'INPUT.STDS': [0.0, 0.0, 0.0]}}, str(tmp_path / 'zero_std.pth'))
    gray = mmpose_file(tmp_path / 'gray.pth', extra={'data_preprocessor.mean': torch.full((1, 1, 1), 120.0),
                                                      'data_preprocessor.std': torch.full((1, 1, 1), 60.0)})
    for path, key in ((str(tmp_path / 'zero_std.pth'), 'INPUT.STDS'), (gray, 'INPUT.MEANS')):
        with pytest.raises(ConfigError, match=r'%s: the config values the weights set are refused: config key %s'
                           % (re.escape(path), re.escape(key))):
            build_model_with_weights((cfg, build_model), path)
    good = apply_overrides(cfg, {'INPUT.STDS': [0.5, 0.5, 0.5]}, 'ok.pth')   # a valid value still passes
    assert list(good.INPUT.STDS) == [0.5, 0.5, 0.5]


def test_weights_holding_nan_or_inf_are_refused_naming_the_tensors(rsn18, tmp_path):
    """A diverged run's weights loaded silently for testing, fine-tuning and conversion (top-down decoders then
    refused every heatmap, GCPose dropped every box: AP 0); now prepare() names the file and the tensors."""
    _, cfg, build_model = rsn18
    state = build_model(cfg).state_dict()
    names = [k for k, v in state.items() if v.is_floating_point()][:2]
    state[names[0]] = state[names[0]].clone().fill_(float('nan'))
    state[names[1]] = state[names[1]].clone()
    state[names[1]].view(-1)[0] = float('inf')
    path = tmp_path / 'diverged.pth'
    torch.save({'model': state}, path)
    expected = r'diverged\.pth.*2 tensors hold NaN/inf \(%s, %s\)' % tuple(re.escape(n) for n in names)
    with pytest.raises(CheckpointError, match=expected):
        prepare(cfg, str(path))
    with pytest.raises(CheckpointError, match=expected):
        build_model_with_weights((cfg, build_model), str(path))
    state[names[0]].zero_()
    state[names[1]].zero_()
    torch.save({'model': state}, path)
    assert prepare(cfg, str(path)).state_dict[names[0]].eq(0).all()   # finite: loads
