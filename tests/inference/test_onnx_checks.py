"""OnnxHeatmapModel refuses graphs no image batch fits and files exported for another skeleton or crop size."""
import logging

import numpy as np
import pytest
import torch

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from cvpack.inference.onnx import OnnxHeatmapModel  # noqa: E402
from tests.inference.onnx_graphs import conv_onnx  # noqa: E402


@pytest.mark.parametrize('shape, bad', [((0, 3, 256, 192), r'\[0, 3, 256, 192\]'),      # a fixed batch of 0
                                        (('N', 3, 0, 192), r"\['N', 3, 0, 192\]")])
def test_unusable_input_shape_is_refused(tmp_path, shape, bad):
    path = conv_onnx(tmp_path / 'bad.onnx', shape)
    with pytest.raises(ValueError, match=r'bad.onnx: input .images. has shape %s; expected \(N, C, H, W\)' % bad):
        OnnxHeatmapModel(path)


def test_shapes_and_metadata_are_read(tmp_path):
    model = OnnxHeatmapModel(conv_onnx(tmp_path / 'm.onnx', (2, 3, 256, 192), keypoints=14, exp='RSN18.crowdpose'))
    assert (model.fixed_batch, model.channels, model.input_hw) == (2, 3, (256, 192))
    assert (model.num_keypoints, model.output_hw, model.exp_name) == (14, (64, 48), 'RSN18.crowdpose')
    dynamic = OnnxHeatmapModel(conv_onnx(tmp_path / 'd.onnx', ('N', 3, 'H', 'W')))
    assert (dynamic.fixed_batch, dynamic.input_hw, dynamic.num_keypoints, dynamic.exp_name) == \
        (None, (None, None), 17, None)


def test_check_exp_refuses_other_skeleton_and_crop(tmp_path, caplog):
    model = OnnxHeatmapModel(conv_onnx(tmp_path / 'crowd.onnx', keypoints=14, exp='RSN18.crowdpose'))
    with pytest.raises(ValueError, match=r'crowd.onnx: exported with keypoint count 14 \(from exp RSN18.crowdpose\), '
                                         r'but exp RSN18.coco has 17'):
        model.check_exp('RSN18.coco', 17, (256, 192))
    model = OnnxHeatmapModel(conv_onnx(tmp_path / 'big.onnx', ('N', 3, 384, 288)))
    with pytest.raises(ValueError, match=r'input size \(H, W\) \(384, 288\) \(from exp <not recorded>\), '
                                         r'but exp RSN18.coco has \(256, 192\)'):
        model.check_exp('RSN18.coco', 17, (256, 192))
    model = OnnxHeatmapModel(conv_onnx(tmp_path / 'gray.onnx', ('N', 1, 256, 192)))   # any C loads (RoI heads)
    with pytest.raises(ValueError, match=r'gray.onnx: exported with input channels 1 .*but exp RSN18.coco has 3'):
        model.check_exp('RSN18.coco', 17, (256, 192))
    # another exp's file whose shapes fit: a warning naming both exps
    model = OnnxHeatmapModel(conv_onnx(tmp_path / 'other.onnx', exp='RSN50.coco'))
    with caplog.at_level(logging.WARNING):
        model.check_exp('RSN18.coco', 17, (256, 192), log=logging.getLogger('test'))
    assert 'other.onnx was exported from exp RSN50.coco, not RSN18.coco' in caplog.text
    caplog.clear()
    OnnxHeatmapModel(conv_onnx(tmp_path / 'same.onnx', exp='RSN18.coco')).check_exp(
        'RSN18.coco', 17, (256, 192), log=logging.getLogger('test'))
    assert caplog.text == ''


def test_symbolic_keypoint_count_is_checked_per_forward(tmp_path):
    """A graph whose K is not fixed passes the static check; each forward compares K with the exp's."""
    model = OnnxHeatmapModel(conv_onnx(tmp_path / 'k.onnx', ('N', 3, 'H', 'W'), keypoints='K'))
    model.num_keypoints = None   # onnxruntime infers K=17 from this graph's weights; exporters can leave it open
    model.check_exp('RSN18.crowdpose', 14, (256, 192))
    with pytest.raises(ValueError, match=r'k.onnx: the graph returned heatmaps \(1, 17, 64, 48\), the exp has 14'):
        model(torch.zeros(1, 3, 256, 192))
    model.check_exp('RSN18.coco', 17, (256, 192))
    assert model(np.zeros((3, 3, 256, 192), np.float32)).shape == (3, 17, 64, 48)


def test_empty_batch_gives_empty_heatmaps_for_fixed_and_dynamic_batches(tmp_path):
    """No crop (an image without people) through a file exported with a fixed batch raised numpy's "need at least
    one array to concatenate" naming no file; the torch model and a dynamic-batch file return (0, K, h, w)."""
    for name, shape in (('fixed.onnx', (2, 3, 256, 192)), ('dynamic.onnx', ('N', 3, 256, 192))):
        out = OnnxHeatmapModel(conv_onnx(tmp_path / name, shape))(torch.zeros(0, 3, 256, 192))
        assert out.shape == (0, 17, 64, 48) and out.dtype == torch.float32, name


def test_a_pytorch_checkpoint_is_named_as_one(tmp_path):
    """backend='onnxruntime' given the .pth: onnxruntime's 'Protobuf parsing failed' alone; now the hint to use
    backend='torch' or to export it. A damaged ONNX file gets no such hint."""
    torch.save({'model': {'w': torch.zeros(2)}}, tmp_path / 'w.pth')
    with pytest.raises(RuntimeError, match=r"w.pth: onnxruntime cannot load it: .*\(a PyTorch checkpoint, not an ONNX "
                                           r"file: load it with backend='torch', or export it first"):
        OnnxHeatmapModel(tmp_path / 'w.pth')
    cut = tmp_path / 'cut.onnx'
    cut.write_bytes(open(conv_onnx(tmp_path / 'm.onnx'), 'rb').read()[:200])
    with pytest.raises(RuntimeError, match='cut.onnx: onnxruntime cannot load it') as exc:
        OnnxHeatmapModel(cut)
    assert 'PyTorch' not in str(exc.value)


def test_providers_follow_the_device(tmp_path, monkeypatch):
    """The onnxruntime backend ran on the CPU provider whatever the device (PoseEstimator(device='cuda') too).
    Now the device picks the providers; an explicit CUDA device without onnxruntime's CUDA provider is an error
    naming what is there, 'auto' falls back to the CPU."""
    from cvpack.inference.onnx import providers_for
    both = ['CUDAExecutionProvider', 'CPUExecutionProvider']
    assert providers_for('cpu', both) == ['CPUExecutionProvider']
    assert providers_for('cuda:1', both) == [('CUDAExecutionProvider', {'device_id': 1}), 'CPUExecutionProvider']
    assert providers_for(torch.device('cuda'), both)[0] == ('CUDAExecutionProvider', {'device_id': 0})
    with pytest.raises(ValueError, match=r"device 'cuda:0' with backend='onnxruntime' needs onnxruntime's "
                                         r"CUDAExecutionProvider \(the onnxruntime-gpu package\); this onnxruntime "
                                         r"has CPUExecutionProvider"):
        providers_for('cuda:0', ['CPUExecutionProvider'])
    with pytest.raises(ValueError, match=r"runs on 'cpu' or 'cuda', got device 'meta'"):
        providers_for('meta', both)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert providers_for('auto', ['CPUExecutionProvider']) == ['CPUExecutionProvider']
    assert providers_for(None, both)[0] == ('CUDAExecutionProvider', {'device_id': 0})
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert providers_for('auto', both) == ['CPUExecutionProvider']
    path = conv_onnx(tmp_path / 'm.onnx')
    assert OnnxHeatmapModel(path, device='auto').session.get_providers() == ['CPUExecutionProvider']
    import onnxruntime
    if 'CUDAExecutionProvider' not in onnxruntime.get_available_providers():
        with pytest.raises(ValueError, match="device 'cuda' with backend='onnxruntime' needs"):
            OnnxHeatmapModel(path, device='cuda')


def test_auto_device_falls_back_when_the_cuda_provider_does_not_start(tmp_path, monkeypatch, caplog):
    """device='auto' (PoseEstimator's default) on a GPU machine whose onnxruntime lists the CUDA provider but cannot
    start it (CUDA / cuDNN libraries missing): before the device chose the providers this ran on the CPU; the check
    added with them made it a RuntimeError. 'auto' runs on the CPU with a warning; 'cuda' stays an error."""
    import onnxruntime
    if 'CUDAExecutionProvider' in onnxruntime.get_available_providers():
        pytest.skip('this onnxruntime has the CUDA provider (it may start)')
    path = conv_onnx(tmp_path / 'm.onnx')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(onnxruntime, 'get_available_providers', lambda: ['CUDAExecutionProvider',
                                                                          'CPUExecutionProvider'])
    with caplog.at_level('WARNING', logger='cvpack.inference.onnx'):
        model = OnnxHeatmapModel(path, device='auto')
    assert model.session.get_providers() == ['CPUExecutionProvider']
    assert "could not start CUDAExecutionProvider; device 'auto' runs it on CPUExecutionProvider" in caplog.text
    with pytest.raises(RuntimeError, match=r"m.onnx: onnxruntime could not start CUDAExecutionProvider \(the "
                                           r"session has CPUExecutionProvider"):
        OnnxHeatmapModel(path, device='cuda')
