"""OKS, OKS-NMS, soft OKS-NMS and rescoring on hand-made instances."""
import numpy as np
import pytest

from cvpack.evaluation import oks_iou, oks_matrix, oks_nms, soft_oks_nms
from cvpack.inference.rescore import rescore_megvii, rescore_simple_baselines

SIG = np.array([0.1, 0.1])


def _inst(xy, score, area=100.0, image_id=1):
    kps = np.concatenate([np.asarray(xy, float).reshape(2, 2), np.ones((2, 1))], axis=1)
    return {'keypoints': kps, 'score': score, 'area': area, 'image_id': image_id}


def test_oks_hand_computed():
    # d^2 = 4 on joint 0, 0 on joint 1; var = (2*0.1)^2 = 0.04; area 100 (+eps):
    # e0 = 4 / 0.04 / 100 / 2 = 0.5 -> oks = (exp(-0.5) + 1) / 2
    a, b = _inst([[0, 0], [5, 5]], 1.0), _inst([[2, 0], [5, 5]], 0.5)
    got = oks_iou(a['keypoints'], b['keypoints'][None], 100.0, [100.0], SIG)
    assert got[0] == pytest.approx((np.exp(-0.5) + 1) / 2)
    m = oks_matrix(np.stack([a['keypoints'], b['keypoints']]), [100.0, 100.0], SIG)
    np.testing.assert_allclose(m, m.T)
    np.testing.assert_allclose(np.diag(m), 1.0)
    # with a visibility threshold only joint 1 (score 1 in both) counts when joint 0 is low in one
    b['keypoints'][0, 2] = 0.1
    assert oks_iou(a['keypoints'], b['keypoints'][None], 100, [100], SIG, vis_thresh=0.2)[0] == pytest.approx(1.0)


def test_oks_nms_keeps_best_of_overlapping():
    insts = [_inst([[0, 0], [5, 5]], 0.6), _inst([[0.5, 0], [5, 5]], 0.9),   # OKS ~0.98 with each other
             _inst([[50, 50], [60, 60]], 0.3), _inst([[2, 0], [5, 5]], 0.8)]  # far away / OKS 0.80
    assert oks_nms(insts, 0.9, SIG) == [1, 3, 2]
    assert oks_nms(insts, 0.5, SIG) == [1, 2]
    assert oks_nms([], 0.9, SIG) == []


def test_soft_oks_nms_decays_instead_of_dropping():
    insts = [_inst([[0, 0], [5, 5]], 0.9), _inst([[0, 0], [5, 5]], 0.8), _inst([[50, 50], [60, 60]], 0.3)]
    keep, scores = soft_oks_nms(insts, 0.3, SIG, return_scores=True)
    # the exact duplicate (OKS 1) decays to 0.8 * exp(-1 / 0.3) = 0.0285 < 0.3, so it ranks last
    assert keep == [0, 2, 1]
    np.testing.assert_allclose(scores, [0.9, 0.3, 0.8 * np.exp(-1 / 0.3)])
    assert soft_oks_nms(insts, 0.3, SIG, max_dets=2) == [0, 2]


def test_oks_sigmas_real_scale():
    from cvpack.data.meta import oks_sigmas
    assert oks_sigmas('COCO')[0] == pytest.approx(0.026)   # pycocotools: .26 / 10
    assert oks_sigmas('COCO')[11] == pytest.approx(0.107)
    assert oks_sigmas('MPII')[0] == pytest.approx(0.089)


def test_rescoring():
    kp = np.array([[1.5, 0.5, 1.0]])
    assert rescore_megvii([0.8], kp)[0] == pytest.approx(0.8)          # batch of one (original
                                                                       # docs/reference/defects.md R#13)
    np.testing.assert_allclose(rescore_megvii([1.0, 0.5], [[1.0, 0.5], [1.5, 1.5]]), [0.75, 0.75])
    np.testing.assert_allclose(rescore_simple_baselines([0.5, 0.5], [[0.1, 0.3, 0.5], [0.1, 0.2, 0.0]], 0.2),
                               [0.5 * 0.4, 0.0])                        # none above: 0, as the original
