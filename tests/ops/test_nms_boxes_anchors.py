"""NMS, IoU, box coder and anchors against hand-computed values (docs/reference/mlpe_hsrnet_gcpose.md §4.1, §4.5)."""
import math

import pytest
import torch

from cvpack.ops import (AnchorGenerator, Box2BoxTransform, batched_nms, cell_anchors, clip_boxes,
                        nms, pairwise_iou, scale_boxes)
from cvpack.ops.boxes import DEFAULT_SCALE_CLAMP


def _naive_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(pairwise_iou(boxes[i:i + 1], boxes[j:j + 1]).item() <= thr for j in keep):
            keep.append(i)
    return keep


def test_iou_hand_values():
    a = torch.tensor([[0, 0, 10, 10.]])
    b = torch.tensor([[5, 0, 15, 10.], [0, 0, 10, 10.], [20, 20, 30, 30.], [1, 1, 1, 1.]])
    assert pairwise_iou(a, b)[0].tolist() == pytest.approx([50 / 150, 1.0, 0.0, 0.0])


def test_nms_chain_and_strict_threshold():
    boxes = torch.tensor([[0, 0, 10, 10.], [5, 0, 15, 10.], [10, 0, 20, 10.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    # A suppresses B (IoU 1/3 > 0.3); B is gone, so C (IoU 0 with A) stays.
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]
    # Strictly greater: IoU exactly 0.5 keeps both.
    two = torch.tensor([[0, 0, 3, 1.], [1, 0, 4, 1.]])
    assert nms(two, torch.tensor([0.5, 0.6]), 0.5).tolist() == [1, 0]
    assert nms(two, torch.tensor([0.5, 0.6]), 0.49).tolist() == [1]
    # Ties keep input order; empty input; all identical boxes -> only the best.
    assert nms(torch.tensor([[0, 0, 1, 1.]] * 3), torch.tensor([.5, .5, .5]), 0.5).tolist() == [0]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_nms_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 50
    wh = torch.rand(60, 2, generator=g) * 30 + 1
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(60, generator=g)
    for thr in (0.3, 0.5, 0.7):
        assert nms(boxes, scores, thr).tolist() == _naive_nms(boxes, scores, thr)


def test_batched_nms_groups_do_not_interact():
    boxes = torch.tensor([[0, 0, 10, 10.], [0, 0, 10, 10.], [1, 0, 10, 10.], [-5, -5, 3, 3.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    idxs = torch.tensor([0, 1, 0, 1])
    assert batched_nms(boxes, scores, idxs, 0.5).tolist() == [0, 1, 3]


def test_box_coder_hand_values_and_round_trip():
    src = torch.tensor([[0, 0, 10, 10.]])
    tgt = torch.tensor([[5, 5, 15, 25.]])
    d1 = Box2BoxTransform((1, 1, 1, 1)).encode(src, tgt)
    assert d1[0].tolist() == pytest.approx([0.5, 1.0, 0.0, math.log(2)])
    coder = Box2BoxTransform((10, 10, 5, 5))
    d = coder.encode(src, tgt)
    assert d[0].tolist() == pytest.approx([5.0, 10.0, 0.0, 5 * math.log(2)])
    assert torch.allclose(coder.decode(d, src), tgt, atol=1e-5)
    g = torch.Generator().manual_seed(0)
    a = torch.rand(20, 2, generator=g) * 100
    b = torch.rand(20, 2, generator=g) * 100
    s = torch.cat([a, a + 1 + torch.rand(20, 2, generator=g) * 50], 1)
    t = torch.cat([b, b + 1 + torch.rand(20, 2, generator=g) * 50], 1)
    assert torch.allclose(coder.decode(coder.encode(s, t), s), t, atol=1e-3)
    # dw clamped at log(1000/16): width becomes 62.5 x.
    big = Box2BoxTransform((1, 1, 1, 1)).decode(torch.tensor([[0, 0, 100., 0]]), src)
    assert (big[0, 2] - big[0, 0]).item() == pytest.approx(10 * math.exp(DEFAULT_SCALE_CLAMP))


def test_clip_and_scale():
    assert clip_boxes(torch.tensor([[-5, 2, 50, 70.]]), (60, 40)).tolist() == [[0, 2, 40, 60]]
    assert scale_boxes(torch.tensor([[10, 20, 30, 60.]]), 1.3)[0].tolist() == pytest.approx([7, 14, 33, 66])
    # bit for bit GCPose's resizeBoxesTrain (each side moves by w * (r - 1) / 2); the centre +- half-size form
    # used before differed in the last bits for 86 % of random boxes (defects.md F#12)
    g = torch.Generator().manual_seed(0)
    x1, y1 = torch.rand(200, generator=g) * 300, torch.rand(200, generator=g) * 180
    w, h = torch.rand(200, generator=g) * 100 + 1, torch.rand(200, generator=g) * 90
    boxes = torch.stack([x1, y1, x1 + w, y1 + h], 1)
    ref = boxes.clone()
    w_extend = (ref[:, 2] - ref[:, 0]) * (1.3 - 1) / 2
    h_extend = (ref[:, 3] - ref[:, 1]) * (1.3 - 1) / 2
    ref += torch.stack([-w_extend, -h_extend, w_extend, h_extend], dim=1)
    assert torch.equal(scale_boxes(boxes, 1.3), ref)
    assert torch.equal(scale_boxes(boxes, 1.0), boxes)


def test_anchors_hand_values_and_order():
    cell = cell_anchors(32, (0.5, 1.0, 2.0))
    w = math.sqrt(32 * 32 / 0.5)
    assert cell[0].tolist() == pytest.approx([-w / 2, -w * 0.25, w / 2, w * 0.25])
    assert cell[1].tolist() == pytest.approx([-16, -16, 16, 16])
    gen = AnchorGenerator(sizes=(32, 64), strides=(4, 8))
    a2, a3 = gen([(2, 3), (1, 1)])
    assert a2.shape == (2 * 3 * 3, 4) and a3.shape == (3, 4)
    # index = (row * W + col) * A + a: row 1, col 2, ratio 1 -> centre (8, 4).
    assert a2[(1 * 3 + 2) * 3 + 1].tolist() == pytest.approx([8 - 16, 4 - 16, 8 + 16, 4 + 16])
    assert a3[1].tolist() == pytest.approx([-32, -32, 32, 32])
