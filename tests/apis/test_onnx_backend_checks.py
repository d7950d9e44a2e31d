"""PoseEstimator(backend='onnxruntime') refuses a file exported for another skeleton or crop size or with an
unusable shape, warns about a file recorded as another exp's, and hints at the backend for an .onnx file given
to the torch backend. The ONNX graphs are written by the test (tests/inference/onnx_graphs.py)."""
import logging

import pytest

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from cvpack.apis import PoseEstimator  # noqa: E402
from tests.apis.helpers import KPRCNN, RSN18, exp_path  # noqa: E402
from tests.inference.onnx_graphs import conv_onnx  # noqa: E402

FAST = ['TEST.FLIP', 'False']


def test_other_exps_file_refused(repo_root, tmp_path):
    exp = exp_path(repo_root, RSN18)
    crowd = conv_onnx(tmp_path / 'crowd.onnx', keypoints=14, exp='RSN18.crowdpose')
    with pytest.raises(ValueError, match=r'crowd.onnx: exported with keypoint count 14 \(from exp RSN18.crowdpose\), '
                                         r'but exp RSN18.coco has 17'):
        PoseEstimator(exp, crowd, device='cpu', backend='onnxruntime')
    big = conv_onnx(tmp_path / 'big.onnx', ('N', 3, 384, 288), exp='RSN18.coco')
    with pytest.raises(ValueError, match=r'big.onnx: exported with input size \(H, W\) \(384, 288\)'):
        PoseEstimator(exp, big, device='cpu', backend='onnxruntime')
    zero = conv_onnx(tmp_path / 'zero.onnx', (0, 3, 256, 192))
    with pytest.raises(ValueError, match=r'zero.onnx: input .images. has shape \[0, 3, 256, 192\]'):
        PoseEstimator(exp, zero, device='cpu', backend='onnxruntime')
    with pytest.raises(ValueError, match='is a whole-image model'):
        PoseEstimator(exp_path(repo_root, KPRCNN), conv_onnx(tmp_path / 'k.onnx'), device='cpu', backend='onnxruntime')


def test_other_exp_name_warns_and_runs(repo_root, tmp_path, log_capture, one_thread):
    exp = exp_path(repo_root, RSN18)
    other = conv_onnx(tmp_path / 'other.onnx', exp='RSN50.coco')
    with log_capture.at_level(logging.WARNING, logger='cvpack'):
        est = PoseEstimator(exp, other, device='cpu', backend='onnxruntime', opts=FAST)
    assert 'other.onnx was exported from exp RSN50.coco, not RSN18.coco' in log_capture.text
    people = est('%s/dataset/demo/astronaut.png' % repo_root, boxes=[[100, 20, 250, 480]])
    assert len(people) == 1 and people[0].keypoints.shape == (17, 3)
    log_capture.clear()
    with log_capture.at_level(logging.WARNING, logger='cvpack'):
        PoseEstimator(exp, conv_onnx(tmp_path / 'same.onnx', exp='RSN18.coco'), device='cpu', backend='onnxruntime')
    assert 'exported from exp' not in log_capture.text


def test_onnx_file_to_torch_backend_hints(repo_root, tmp_path):
    path = conv_onnx(tmp_path / 'rsn18.ONNX')
    with pytest.raises(ValueError, match=r"rsn18.ONNX is an ONNX file: .*use backend='onnxruntime'"):
        PoseEstimator(exp_path(repo_root, RSN18), path, device='cpu')
    with pytest.raises(ValueError, match=r"rsn18.ONNX is an ONNX file"):
        PoseEstimator(exp_path(repo_root, RSN18), tmp_path / 'rsn18.ONNX', device='cpu')   # a pathlib.Path too


def test_cuda_device_is_not_silently_the_cpu(repo_root, tmp_path):
    """PoseEstimator(device='cuda', backend='onnxruntime') ran on onnxruntime's CPU provider without a word."""
    import onnxruntime
    if 'CUDAExecutionProvider' in onnxruntime.get_available_providers():
        pytest.skip('this onnxruntime has the CUDA provider')
    with pytest.raises(ValueError, match=r"m.onnx: device 'cuda' with backend='onnxruntime' needs onnxruntime's "
                                         r"CUDAExecutionProvider"):
        PoseEstimator(exp_path(repo_root, RSN18), conv_onnx(tmp_path / 'm.onnx', exp='RSN18.coco'), device='cuda',
                      backend='onnxruntime')
