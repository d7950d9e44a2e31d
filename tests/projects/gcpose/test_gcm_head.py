"""GCM relative-position logits, head shapes and parameter counts (docs/reference/mlpe_hsrnet_gcpose.md §3.2-3.3)."""
import math

import pytest
import torch

from projects.GCPose.gcpose.gcm import GCM, RelPosMHSA, relative_logits
from projects.GCPose.gcpose.keypoint_head import (KeypointHead, heatmaps_to_keypoints, keypoint_loss,
                                                  keypoint_targets)


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_relative_logits_tiny_case():
    # 2 x 3 grid, d = 1, q = 1 everywhere: logit[i, j] = rel_w[x_j - x_i + 2] + rel_h[y_j - y_i + 1].
    H, W = 2, 3
    rel_w = torch.tensor([[1.], [10.], [100.], [1000.], [10000.]])   # offsets -2..2
    rel_h = torch.tensor([[0.1], [0.2], [0.3]])                       # offsets -1..1
    q = torch.ones(1, 1, H * W, 1)
    out = relative_logits(q, rel_h, rel_w, (H, W))[0, 0]
    # token 0 = (y0, x0) -> token 5 = (y1, x2): dx = +2, dy = +1
    assert out[0, 5].item() == pytest.approx(10000 + 0.3)
    # token 5 -> token 0: dx = -2, dy = -1
    assert out[5, 0].item() == pytest.approx(1 + 0.1)
    # token 4 = (y1, x1) -> token 2 = (y0, x2): dx = +1, dy = -1
    assert out[4, 2].item() == pytest.approx(1000 + 0.1)
    assert torch.allclose(out.diagonal(), torch.full((6,), 100.2))
    # Scaling q scales the logits linearly (q . r).
    assert torch.allclose(relative_logits(2 * q, rel_h, rel_w, (H, W))[0, 0], 2 * out)


def test_mhsa_matches_explicit_formula():
    torch.manual_seed(0)
    m = RelPosMHSA(channels=4, size=(2, 3), heads=2, dim_qk=2, dim_v=2).eval()
    x = torch.randn(1, 4, 2, 3)
    out = m(x)
    q, k = m.qk(x).chunk(2, dim=1)
    v = m.v(x)
    ref = torch.zeros(2, 2, 6)
    for h in range(2):
        qh = q[0, 2 * h:2 * h + 2].reshape(2, 6) / math.sqrt(2)
        kh = k[0, 2 * h:2 * h + 2].reshape(2, 6)
        vh = v[0, 2 * h:2 * h + 2].reshape(2, 6)
        logit = torch.zeros(6, 6)
        for i in range(6):
            for j in range(6):
                yi, xi, yj, xj = i // 3, i % 3, j // 3, j % 3
                logit[i, j] = (qh[:, i] @ kh[:, j] + qh[:, i] @ m.rel_w[xj - xi + 2]
                               + qh[:, i] @ m.rel_h[yj - yi + 1])
        ref[h] = vh @ logit.softmax(1).t()
    assert torch.allclose(out.reshape(2, 2, 6), ref, atol=1e-5)


def test_parameter_counts():
    gc = KeypointHead(256, 17, gcm_positions=(0, 4))
    stock = KeypointHead(256, 17)
    assert _count(stock) == 17838097                 # 17.84 M (docs/reference/mlpe_hsrnet_gcpose.md §3.2)
    assert _count(gc) == 25459729                    # 25.46 M
    assert sum(_count(g) for g in gc.gcms.values()) == 6310400   # 6.31 M in the two GCMs
    assert list(gc.gcms) == ['0', '4']


def test_head_shapes_and_empty_batch():
    head = KeypointHead(8, 3, channels=8, num_convs=2, gcm_positions=(0,), pool_size=4, gcm_heads=2)
    out = head(torch.randn(2, 8, 4, 4))
    assert out.shape == (2, 3, 16, 16)
    assert head(torch.zeros(0, 8, 4, 4)).shape == (0, 3, 16, 16)
    assert GCM(8, (4, 4), 2, 4)(torch.zeros(0, 8, 4, 4)).shape == (0, 8, 4, 4)
    with pytest.raises(ValueError):
        head(torch.randn(1, 8, 5, 5))


def test_targets_loss_and_decode():
    rois = torch.tensor([[0., 0., 56., 112.]])
    kps = torch.tensor([[[10.5, 20.0, 2], [56.0, 112.0, 1], [60.0, 5.0, 2], [3.0, 3.0, 0]]])
    labels, valid = keypoint_targets(kps, rois, 56)
    # x_h = floor(10.5) = 10, y_h = floor(20 / 2) = 10; the right/bottom edge maps to 55; outside / v=0 invalid.
    assert labels[0, :2].tolist() == [10 * 56 + 10, 55 * 56 + 55]
    assert valid[0].tolist() == [True, True, False, False]
    logits = torch.zeros(1, 4, 56, 56)
    assert keypoint_loss(logits, labels, valid).item() == pytest.approx(math.log(3136))
    assert keypoint_loss(logits, labels, torch.zeros_like(valid)).item() == 0
    # Decode a single peak at heatmap cell (x 28, y 14) of a 56 x 56 box: bicubic keeps the argmax there.
    maps = torch.zeros(1, 1, 56, 56)
    maps[0, 0, 14, 28] = 10.0
    kp = heatmaps_to_keypoints(maps, torch.tensor([[100., 200., 156., 256.]]))
    assert kp[0, 0, :2].tolist() == pytest.approx([128.5, 214.5])
    assert kp[0, 0, 3].item() == pytest.approx(1 / (math.exp(0) + 3135 * math.exp(-10)), rel=1e-4)
