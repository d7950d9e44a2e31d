"""ONNX export of the top-down pose networks (cvpack.tools.export) and the onnxruntime model
(cvpack.inference.onnx): BatchNorm folded, heatmaps within 1e-4 of the eager model (relative to the peak),
the CLI with a weights file, a dynamic and a fixed batch. Small inputs keep each export to seconds."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from cvpack.exp import load_exp  # noqa: E402
from cvpack.inference.onnx import OnnxHeatmapModel  # noqa: E402
from cvpack.tools import export  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SMALL = ['MODEL.PRETRAINED', '', 'INPUT_SHAPE', '[64, 64]', 'OUTPUT_SHAPE', '[16, 16]']


def _exp(project, name):
    return osp.join(REPO, 'projects', project, 'exps', name)


def _randomise_bn(model, seed=0):
    """Non-trivial BN statistics and affine terms, so that folding them is actually exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.mark.parametrize('project, name', [
    ('RSN', 'RSN18.coco'),
    ('MSPN', 'mspn.2xstg.coco'),
    ('MLPE', 'mlpe_rs50_256x192_a'),
    ('HSRNet', 'hsrnet59.256x192.coco'),
])
def test_export_matches_eager(tmp_path, project, name):
    cfg, model = load_exp(_exp(project, name), SMALL)
    model = _randomise_bn(model.eval())
    path = export.export_onnx(model, str(tmp_path / 'm.onnx'), (64, 64), dynamic_batch=True)
    ops = export.onnx_op_counts(path)
    assert 'BatchNormalization' not in ops and ops['Conv'] > 10
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    diff = export.verify_onnx(path, model, images)
    with torch.no_grad():
        ref = model(images)
    out = OnnxHeatmapModel(path)(images)
    assert out.shape == ref.shape == (3, cfg.DATASET.KEYPOINT.NUM, 16, 16) and out.dtype == torch.float32
    assert float((out - ref).abs().max()) == diff <= 1e-4 * max(1.0, float(ref.abs().max()))
    assert diff > 0 or float(ref.abs().max()) == 0     # a real comparison, not the same tensor


def test_cli_with_weights_fixed_batch_and_chunking(tmp_path):
    exp_dir = _exp('RSN', 'RSN18.coco')
    _, model = load_exp(exp_dir, SMALL)
    model = _randomise_bn(model, seed=3)
    weights = tmp_path / 'w.pth'
    torch.save({'model': model.state_dict()}, weights)
    out = tmp_path / 'rsn.onnx'
    written = export.main([exp_dir, '--weights', str(weights), '--format', 'onnx', '--batch', '2',
                           '--out', str(out)] + SMALL)
    assert written == str(out) and out.is_file()
    onnx_model = OnnxHeatmapModel(out)
    assert onnx_model.fixed_batch == 2 and onnx_model.input_hw == (64, 64)
    # all graph optimizations; idle threads sleep unless asked to spin (docs/SPEED.md: shared CPUs)
    import onnxruntime as ort
    opts = onnx_model.session.get_session_options()
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.get_session_config_entry('session.intra_op.allow_spinning') == '0'
    spinning = OnnxHeatmapModel(out, threads=1, spin=True).session.get_session_options()
    assert spinning.get_session_config_entry('session.intra_op.allow_spinning') == '1'
    assert spinning.intra_op_num_threads == 1
    images = torch.randn(3, 3, 64, 64).contiguous(memory_format=torch.channels_last)   # 3 = 2 + padded 1
    with torch.no_grad():
        ref = model(images)
    assert torch.allclose(onnx_model(images), ref, rtol=0, atol=1e-4 * max(1.0, float(ref.abs().max())))
    with pytest.raises(ValueError, match='rsn.onnx: exported for input'):
        onnx_model(torch.zeros(1, 3, 64, 48))


def test_cli_rejects_bad_weights_and_missing_files(tmp_path):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(SystemExit, match='bad.pth') as exc:
        export.main([_exp('RSN', 'RSN18.coco'), '--weights', str(bad), '--out', str(tmp_path / 'x.onnx')] + SMALL)
    assert exc.value.code == 2 and not (tmp_path / 'x.onnx').exists()
    with pytest.raises(RuntimeError, match='missing.onnx'):
        OnnxHeatmapModel(tmp_path / 'missing.onnx')


def test_gcpose_keypoint_head_export(tmp_path):
    from projects.GCPose.gcpose.export import export_keypoint_head
    cfg, model = load_exp(_exp('GCPose', 'gcpose.R50.coco'), ['MODEL.PRETRAINED', ''])
    head = model.roi_heads.keypoint_head.eval()
    path, chw = export_keypoint_head(model, cfg, str(tmp_path / 'head.onnx'), dynamic_batch=True)
    assert chw == (256, 14, 14)
    assert 'BatchNormalization' not in export.onnx_op_counts(path)
    feats = torch.randn(2, 256, 14, 14, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = head(feats)
    out = OnnxHeatmapModel(path)(feats)
    assert out.shape == ref.shape == (2, 17, 56, 56)   # R RoIs, K, 4P x 4P logits
    assert float((out - ref).abs().max()) <= 1e-4 * max(1.0, float(ref.abs().max()))


def test_onnx_model_in_the_topdown_predictor(tmp_path, coco_subset):
    """The same predictor (flip test, Megvii decode, mapping back, rescoring) runs either backend."""
    from cvpack.data import build_dataset, collate
    from cvpack.inference import build_predictor
    opts = SMALL[:2] + ['INPUT_SHAPE', '[64, 48]', 'OUTPUT_SHAPE', '[16, 12]', 'DATASET.ROOT', coco_subset,
                        'TEST.USE_GT_BBOX', 'True']
    cfg, model = load_exp(_exp('RSN', 'RSN18.coco'), opts)
    model = _randomise_bn(model, seed=5)
    path = export.export_onnx(model, str(tmp_path / 'rsn.onnx'), (64, 48), dynamic_batch=True)
    dataset = build_dataset(cfg, 'val')
    batch = collate([dataset[i] for i in range(4)])
    predictor = build_predictor(cfg)
    with torch.no_grad():
        eager = predictor(model, batch)
    onnx_out = predictor(OnnxHeatmapModel(path), batch)
    assert len(eager) == len(onnx_out) == 4
    for a, b in zip(eager, onnx_out):
        assert a['image_id'] == b['image_id']
        assert abs(a['score'] - b['score']) < 1e-4
        assert abs(a['keypoints'] - b['keypoints']).max() < 1e-2   # image pixels; same argmax, sub-pixel shift


def _no_load(*args, **kwargs):
    raise AssertionError('the model was loaded: the argument checks must come first')


@pytest.mark.parametrize('case, message', [
    (['EXP', '--out', 'OUT'], 'one of the arguments --weights --random-init is required'),
    (['NOEXP', '--random-init', '--out', 'OUT'], 'exp folder not found: .*no_such_exp'),
    (['TMP', '--random-init', '--out', 'OUT'], '.*: not an exp folder \\(no config.py or network.py\\)'),
    (['EXP', '--weights', 'TMP/missing.pth', '--out', 'OUT'], '--weights .*missing.pth: file not found'),
    (['EXP', '--weights', '', '--out', 'OUT'], '--weights is empty: give a weights file or URL, or --random-init'),
    (['EXP', '--random-init', '--format', 'tflite', '--out', 'OUT'], "argument --format: invalid choice: 'tflite'"),
    (['EXP', '--random-init', '--batch', '0', '--out', 'OUT'], "argument --batch: must be an integer >= 1, got '0'"),
    (['EXP', '--random-init', '--out', 'TMP'], '--out .*: is a folder, give a file name'),
    (['EXP', '--random-init', '--out', 'CFG/y.onnx'], '--out .*y.onnx: .*config.py is a file, not a folder'),
])
def test_cli_usage_errors_are_one_line_exit_2_before_loading(tmp_path, monkeypatch, capsys, case, message):
    monkeypatch.setattr(export, 'load_for_export', _no_load)
    names = {'EXP': _exp('RSN', 'RSN18.coco'), 'NOEXP': str(tmp_path / 'no_such_exp'), 'OUT': str(tmp_path / 'x.onnx')}
    names['CFG/y.onnx'] = osp.join(names['EXP'], 'config.py', 'y.onnx')
    argv = [names.get(a, a.replace('TMP', str(tmp_path))) for a in case]
    with pytest.raises(SystemExit) as exc:
        export.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count('\n') == 1 and 'usage:' not in err
    assert re.match('python -m cvpack.tools.export: error: ' + message, err), err
    assert list(tmp_path.iterdir()) == []


def test_cli_key_without_value_is_one_line(tmp_path, capsys):
    """``export EXP --random-init INPUT_SHAPE`` (the value forgotten) ended in a ValueError traceback; now exit 2
    with one line naming the key, nothing written."""
    with pytest.raises(SystemExit) as exc:
        export.main([_exp('RSN', 'RSN18.coco'), '--random-init', '--out', str(tmp_path / 'x.onnx'), 'INPUT_SHAPE'])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count('\n') == 1, err
    assert err.startswith('python -m cvpack.tools.export: error: config key INPUT_SHAPE has no value'), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('project, name, shape, message', [
    ('RSN', 'RSN18.coco', '[250, 190]', r'RSN18.coco: INPUT_SHAPE \[250, 190\] must be 4x OUTPUT_SHAPE \[64, 48\]'),
    ('HSRNet', 'hsrnet59.256x192.coco', '[250, 190]',
     r'hsrnet59.256x192.coco: HSRNet needs INPUT_SHAPE divisible by 16'),
])
def test_cli_override_the_network_refuses_is_one_line(tmp_path, capsys, project, name, shape, message):
    """A valid-looking INPUT_SHAPE override the network cannot take: build_model's ValueError was a traceback
    (EXPORT.md promised one line for a bad KEY VALUE); now exit 2, one line, nothing written."""
    with pytest.raises(SystemExit) as exc:
        export.main([_exp(project, name), '--random-init', '--out', str(tmp_path / 'x.onnx'), 'MODEL.PRETRAINED', '',
                     'INPUT_SHAPE', shape])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count('\n') == 1, err
    assert re.match('python -m cvpack.tools.export: error: ' + message, err), err
    assert list(tmp_path.iterdir()) == []


def test_out_in_a_folder_still_to_be_made(tmp_path):
    """--out model_logs/onnx/x.onnx with no such folder yet: accepted (it was refused as 'folder does not exist'; the
    export made it, as it always did) and made only when the file is written."""
    from cvpack.tools._cli import atomic_output, check_output_file
    out = tmp_path / 'new' / 'sub' / 'x.onnx'
    assert check_output_file(str(out)) == str(out) and list(tmp_path.iterdir()) == []
    with atomic_output(str(out)) as tmp:
        with open(tmp, 'w') as f:
            f.write('graph')
    assert out.read_text() == 'graph' and sorted(p.name for p in out.parent.iterdir()) == ['x.onnx']


def test_cli_unwritable_out_folder_is_refused(tmp_path, monkeypatch, capsys):
    """As root every folder is writable, so the refusal of the probe file is simulated."""
    def refuse(**kwargs):
        raise PermissionError(13, 'Permission denied')
    monkeypatch.setattr(export, 'load_for_export', _no_load)
    monkeypatch.setattr('cvpack.tools._cli.tempfile.mkstemp', refuse)
    with pytest.raises(SystemExit) as exc:
        export.main([_exp('RSN', 'RSN18.coco'), '--random-init', '--out', str(tmp_path / 'x.onnx')])
    assert exc.value.code == 2
    assert 'cannot write in folder %s (Permission denied)' % tmp_path in capsys.readouterr().err


def test_cli_out_that_is_the_weights_file_is_refused(tmp_path, monkeypatch, capsys):
    """--out naming the --weights file (directly or through a link): the ONNX file was renamed onto the
    checkpoint it was exported from, replacing it without a word."""
    monkeypatch.setattr(export, 'load_for_export', _no_load)
    weights = tmp_path / 'w.pth'
    weights.write_bytes(b'the checkpoint')
    (tmp_path / 'link.pth').symlink_to(weights)
    for out in (weights, tmp_path / 'link.pth'):
        with pytest.raises(SystemExit) as exc:
            export.main([_exp('RSN', 'RSN18.coco'), '--weights', str(weights), '--out', str(out)])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count('\n') == 1
        assert 'error: --out %s is the --weights file: the export would replace the checkpoint it reads' % out in err
    assert weights.read_bytes() == b'the checkpoint'


def test_cli_missing_onnx_packages_are_one_line_before_loading(tmp_path, monkeypatch, capsys):
    """Without onnxruntime the export ran, then its check raised an ImportError traceback naming the temporary
    file (.x.tmp-PID.onnx); now exit 2 before the model is built, naming the package (and --no-verify)."""
    monkeypatch.setattr(export, 'load_for_export', _no_load)
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)     # import onnxruntime -> ImportError
    argv = [_exp('RSN', 'RSN18.coco'), '--random-init', '--out', str(tmp_path / 'x.onnx')]
    with pytest.raises(SystemExit) as exc:
        export.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count('\n') == 1 and 'tmp-' not in err
    assert 'error: exporting needs the optional package onnxruntime' in err and '--no-verify' in err
    monkeypatch.setitem(sys.modules, 'onnx', None)
    with pytest.raises(SystemExit) as exc:
        export.main(argv + ['--no-verify'])
    assert exc.value.code == 2 and 'error: exporting needs the optional package onnx ' in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_dynamo_without_onnxscript_is_one_line_before_loading(tmp_path, monkeypatch, capsys):
    """--exporter dynamo without onnxscript: an ImportError traceback once the model was built."""
    monkeypatch.setattr(export, 'load_for_export', _no_load)
    monkeypatch.setitem(sys.modules, 'onnxscript', None)
    with pytest.raises(SystemExit) as exc:
        export.main([_exp('RSN', 'RSN18.coco'), '--random-init', '--exporter', 'dynamo',
                     '--out', str(tmp_path / 'x.onnx')])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count('\n') == 1
    assert 'error: --exporter dynamo needs the optional package onnxscript (pip install onnxscript)' in err
    assert list(tmp_path.iterdir()) == []


def test_cli_failed_export_leaves_no_file(tmp_path, monkeypatch):
    """A failure after the exporter started writing: no partial file under --out, no temporary file, and a
    previous export under that name is kept as it was."""
    exp_dir = _exp('RSN', 'RSN18.coco')
    _, model = load_exp(exp_dir, SMALL)
    weights = tmp_path / 'w.pth'
    torch.save({'model': model.state_dict()}, weights)
    out = tmp_path / 'rsn.onnx'

    def half_written(model, path, *args, **kwargs):
        with open(path, 'wb') as f:
            f.write(b'half an onnx file')
        raise RuntimeError('exporter crashed')
    monkeypatch.setattr(export, 'export_onnx', half_written)
    with pytest.raises(RuntimeError, match='exporter crashed'):
        export.main([exp_dir, '--weights', str(weights), '--out', str(out)] + SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['w.pth']
    out.write_bytes(b'previous export')
    with pytest.raises(RuntimeError, match='exporter crashed'):
        export.main([exp_dir, '--weights', str(weights), '--out', str(out)] + SMALL)
    assert out.read_bytes() == b'previous export'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['rsn.onnx', 'w.pth']


class _FFTNet(torch.nn.Module):
    """A top-down network with an op the ONNX exporters have no form for (aten::fft_fft2 at opset 17)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 17, 4, stride=4)

    def forward(self, x):
        return torch.fft.ifft2(torch.fft.fft2(self.conv(x))).real


def test_cli_network_the_exporter_cannot_export_is_one_line(tmp_path, monkeypatch, capsys):
    """An exp whose network has an op without an ONNX form: a 60-line UnsupportedOperatorError traceback from the
    exporter's internals; now one line naming the exp, the exporter and the op, exit 1, no file."""
    exp_dir = _exp('RSN', 'RSN18.coco')
    cfg, _ = export.load_for_export(exp_dir, None, SMALL)
    monkeypatch.setattr(export, 'load_for_export', lambda *args: (cfg, _FFTNet().eval()))
    out = tmp_path / 'fft.onnx'
    with pytest.raises(SystemExit) as exc:
        export.main([exp_dir, '--random-init', '--out', str(out)] + SMALL)
    err = capsys.readouterr().err
    assert exc.value.code == 1 and err.count('\n') == 1, err
    assert err.startswith('python -m cvpack.tools.export: error: %s: the torchscript exporter cannot export this '
                          "network: Exporting the operator 'aten::fft_fft2' to ONNX opset version 17 is not "
                          'supported' % exp_dir), err
    assert '(--exporter dynamo may; %s not written)' % out in err
    assert list(tmp_path.iterdir()) == []


def test_cli_verification_failure_fails_the_export(tmp_path, monkeypatch, capsys):
    """onnxruntime's heatmaps off the eager model's by more than TOLERANCE (simulated: +0.5, NaN): exit 1 naming
    the difference, no file written, an earlier file of that name kept."""
    exp_dir = _exp('RSN', 'RSN18.coco')
    out = tmp_path / 'rsn.onnx'
    out.write_bytes(b'previous export')
    forward = OnnxHeatmapModel.forward
    for offset, shown in ((0.5, 'by 0.5 '), (float('nan'), 'by nan ')):
        monkeypatch.setattr(OnnxHeatmapModel, 'forward', lambda self, x, d=offset: forward(self, x) + d)
        with pytest.raises(SystemExit) as exc:
            export.main([exp_dir, '--random-init', '--out', str(out)] + SMALL)
        err = capsys.readouterr().err
        assert exc.value.code == 1 and err.count('\n') == 1
        assert 'error: %s not written: heatmaps differ from the eager model %s' % (out, shown) in err, err
        assert out.read_bytes() == b'previous export' and [p.name for p in tmp_path.iterdir()] == ['rsn.onnx']


def test_cli_random_init_is_explicit_and_verified(tmp_path, capsys):
    out = tmp_path / 'random.onnx'
    assert export.main([_exp('RSN', 'RSN18.coco'), '--random-init', '--out', str(out)] + SMALL) == str(out)
    assert [p.name for p in tmp_path.iterdir()] == ['random.onnx']      # no temporary file left
    assert OnnxHeatmapModel(out).input_hw == (64, 64)
    assert 'onnxruntime vs eager: max |heatmap difference|' in capsys.readouterr().out


def test_cli_subprocess_bad_weights_one_line_no_traceback(tmp_path):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-m', 'cvpack.tools.export', _exp('RSN', 'RSN18.coco'), '--weights',
                           str(bad), '--out', str(tmp_path / 'x.onnx')] + SMALL, capture_output=True, text=True,
                          env=env, cwd=REPO)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
    assert proc.stderr.count('\n') == 1 and 'bad.pth' in proc.stderr and proc.stderr.startswith('python -m cvpack')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.pth']


def test_gcpose_exporter_needs_weights_or_random_init(tmp_path, monkeypatch, capsys):
    from projects.GCPose.gcpose import export as gc_export
    monkeypatch.setattr(export, 'load_for_export', _no_load)
    monkeypatch.setattr(gc_export, 'load_for_export', _no_load, raising=False)
    exp_dir = _exp('GCPose', 'gcpose.R50.coco')
    with pytest.raises(SystemExit) as exc:
        gc_export.main([exp_dir, '--out', str(tmp_path / 'head.onnx')])
    assert exc.value.code == 2
    assert 'error: one of the arguments --weights --random-init is required' in capsys.readouterr().err
    with pytest.raises(SystemExit, match='--weights .*nothere.pth: file not found'):
        gc_export.main([exp_dir, '--weights', str(tmp_path / 'nothere.pth'), '--out', str(tmp_path / 'head.onnx')])
    assert list(tmp_path.iterdir()) == []
