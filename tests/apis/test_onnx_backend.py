"""PoseEstimator(backend='onnxruntime') on a file from `python -m cvpack.tools.export`: mmpose-format weights
(which need RGB input, ImageNet mean/std, no conv bias and mmpose's decoder) exported with their settings in the
ONNX metadata give the torch API's keypoints on the same image and boxes."""
import os.path as osp
import sys

import numpy as np
import pytest

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from cvpack.apis import PoseEstimator  # noqa: E402
from cvpack.tools import export  # noqa: E402

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.join(HERE, '..', 'weights'))
from test_weights_entry_points import mmpose_file  # noqa: E402


def test_onnx_backend_equals_torch_with_foreign_weights(repo_root, tmp_path, one_thread):
    exp = osp.join(repo_root, 'projects', 'RSN', 'exps', 'RSN18.coco')
    weights = mmpose_file(tmp_path / 'rsn18_mmpose.pth')
    onnx_path = export.main([exp, '--weights', weights, '--dynamic-batch', '--out', str(tmp_path / 'rsn18.onnx')])
    image = osp.join(repo_root, 'dataset', 'demo', 'astronaut.png')
    boxes = [[100, 20, 250, 440], [10, 10, 150, 300]]
    torch_est = PoseEstimator(exp, weights=weights, device='cpu')
    onnx_est = PoseEstimator(exp, weights=onnx_path, device='cpu', backend='onnxruntime')
    assert onnx_est.cfg.DATASET.COLOR_RGB is True and onnx_est.cfg.TEST.DECODER == 'mmpose_megvii'
    assert onnx_est.cfg.MODEL.CONV_BIAS is False
    a, b = torch_est(image, boxes=boxes), onnx_est(image, boxes=boxes)
    assert len(a) == len(b) == 2
    for p, q in zip(a, b):
        np.testing.assert_allclose(p.keypoints[:, :2], q.keypoints[:, :2], atol=1e-2)
        np.testing.assert_allclose(p.keypoints[:, 2], q.keypoints[:, 2], atol=1e-4)
    with pytest.raises(ValueError, match="backend='onnxruntime' needs weights"):
        PoseEstimator(exp, device='cpu', backend='onnxruntime')
