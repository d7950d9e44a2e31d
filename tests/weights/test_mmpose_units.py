"""Units of the mmpose import: the bias-free conv option (MODEL.CONV_BIAS) and mmpose's Megvii decoder."""
import cv2
import numpy as np
import pytest
import torch

from cvpack.decode.heatmap import decode_heatmaps, decode_mmpose_megvii
from cvpack.modeling.layers import ConvBnRelu, fuse_conv_bn


def test_decoder_follows_mmpose_megvii_heatmap_rules():
    hm = np.zeros((1, 3, 8, 8), np.float32)
    hm[0, 0, 3, 4], hm[0, 0, 3, 5], hm[0, 0, 4, 4] = 10, 1, 1     # interior peak, right and lower neighbours higher
    hm[0, 1, 0, 2] = 5                                            # peak on the border row: no refinement at all
    hm[0, 2] = -1.0                                               # max <= 0: location -1
    coords, scores = decode_mmpose_megvii(hm, kernel=5, stride=4)
    # (x + sign(dx) * 0.25 + 0.5) * stride: x = 4 -> 4.75 * 4, y = 3 -> 3.75 * 4
    np.testing.assert_allclose(coords[0, 0], [19.0, 15.0])
    np.testing.assert_allclose(coords[0, 1], [8.0, 0.0])          # (2, 0) * 4, no half-pixel centring
    np.testing.assert_allclose(coords[0, 2], [-4.0, -4.0])
    # the blurred map is rescaled to the raw maximum: score = raw max / 255 + 0.5
    np.testing.assert_allclose(scores[0, :2], [10 / 255 + 0.5, 5 / 255 + 0.5], rtol=1e-6)
    # the Megvii original decodes the same interior peak differently (x * 4 + 2 after a 0.25 step toward the
    # second maximum): the override matters
    assert not np.allclose(decode_heatmaps('megvii', hm)[0][0, 0], coords[0, 0])


def _mmpose_decode(hm, kernel):
    """mmpose 1.3.2 ``MegviiHeatmap.decode`` re-stated (``gaussian_blur``, ``get_heatmap_maximum``), stride 1."""
    out = []
    for raw in hm:
        padded = np.zeros((raw.shape[0] + kernel - 1, raw.shape[1] + kernel - 1), np.float32)
        padded[kernel // 2:-(kernel // 2), kernel // 2:-(kernel // 2)] = raw
        blur = cv2.GaussianBlur(padded, (kernel, kernel), 0)[kernel // 2:-(kernel // 2), kernel // 2:-(kernel // 2)]
        with np.errstate(invalid='ignore', divide='ignore'):
            blur = blur * (raw.max() / blur.max())
        py, px = np.unravel_index(np.argmax(blur), blur.shape)
        val = np.amax(blur)
        out.append(([-1.0, -1.0] if val <= 0 else [float(px), float(py)], val / 255 + 0.5))
    return out


def test_mmpose_decoder_on_an_all_zero_map_is_finite_at_mmposes_cell():
    hm = np.zeros((3, 6, 5), np.float32)
    hm[1, 0, 0] = -3.0                          # max 0 and a negative corner: the blurred max is still 0
    hm[2] = -1.0                                # blurred max < 0: rescaled, location -1 (no 0 / 0)
    ref = _mmpose_decode(hm, 5)
    for xy, score in ref[:2]:                   # mmpose: 0 / 0 -> NaN map, argmax cell (0, 0), NaN score
        assert xy == [0.0, 0.0] and np.isnan(score)
    assert ref[2][0] == [-1.0, -1.0]
    coords, scores = decode_mmpose_megvii(hm[None], kernel=5, stride=4)
    np.testing.assert_array_equal(coords[0], [[0, 0], [0, 0], [-4, -4]])   # mmpose's cells, times the stride
    np.testing.assert_array_equal(scores[0, :2], [0.5, 0.5])               # finite: the score of a value 0
    np.testing.assert_allclose(scores[0, 2], ref[2][1], rtol=1e-6)


@pytest.mark.parametrize('bias', [True, False])
def test_conv_unit_bias_option_and_bn_folding(bias):
    torch.manual_seed(0)
    unit = ConvBnRelu(4, 6, 3, 1, 1, bias=bias).eval()
    assert (unit.conv.bias is not None) == bias
    unit.bn.running_mean.normal_()
    unit.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(fuse_conv_bn(unit)(x), unit(x), atol=1e-5, rtol=1e-5)


def test_conv_bias_option_is_the_parameter_difference(repo_root):
    """RSN-18: 9,159,072 parameters as the Megvii original (default), 9,144,936 as mmpose's (CONV_BIAS False)."""
    from cvpack.exp import load_exp
    counts = [sum(p.numel() for p in load_exp(repo_root + '/projects/RSN/exps/RSN18.coco', opts)[1].parameters())
              for opts in ([], ['MODEL.CONV_BIAS', 'False'])]
    assert counts == [9159072, 9144936]
