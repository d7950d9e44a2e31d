"""RoIAlign against hand-computed values and a per-sample reference loop (docs/reference/mlpe_hsrnet_gcpose.md §4.4)."""
import math

import pytest
import torch
import torch.nn.functional as F

from cvpack.ops import assign_fpn_levels, multilevel_roi_align, roi_align


def _ramp():
    """f[y, x] = x + 10 y on a 4x4 map: bilinear sampling of it is exact inside the map."""
    y, x = torch.meshgrid(torch.arange(4.), torch.arange(4.), indexing='ij')
    return (x + 10 * y)[None, None]


def _roi(*box, b=0.0):
    return torch.tensor([[b, *box]], dtype=torch.float32)


def test_aligned_half_pixel_adaptive_grid():
    # start = -0.5, bin = 2, grid = ceil(4/2) = 2: samples at 0,1 | 2,3 -> bin means 0.5 and 2.5
    # on both axes, so out = x + 10 y = [[5.5, 7.5], [25.5, 27.5]].
    out = roi_align(_ramp(), _roi(0, 0, 4, 4), 2, 1.0, 0, aligned=True)
    assert torch.allclose(out[0, 0], torch.tensor([[5.5, 7.5], [25.5, 27.5]]))


def test_not_aligned_clamps_last_row():
    # start = 0: samples 0.5,1.5 | 2.5,3.5; 3.5 >= H-1 reads row/col 3 only -> means 1.0 and 2.75.
    out = roi_align(_ramp(), _roi(0, 0, 4, 4), 2, 1.0, 0, aligned=False)
    assert torch.allclose(out[0, 0], torch.tensor([[11.0, 12.75], [28.5, 30.25]]))


def test_sampling_ratio_changes_samples():
    x = torch.arange(4.) ** 2
    fmap = x.expand(4, 4)[None, None].contiguous()   # f = x^2, non-linear so the grid matters
    adaptive = roi_align(fmap, _roi(0, 0, 4, 4), 1, 1.0, 0)    # x samples 0,1,2,3 -> (0+1+4+9)/4
    one = roi_align(fmap, _roi(0, 0, 4, 4), 1, 1.0, 1)         # x sample 1.5 -> (1+4)/2
    two = roi_align(fmap, _roi(0, 0, 4, 4), 1, 1.0, 2)         # x samples 0.5, 2.5 -> (0.5+6.5)/2
    assert adaptive.item() == pytest.approx(3.5)
    assert one.item() == pytest.approx(2.5)
    assert two.item() == pytest.approx(3.5)


def test_spatial_scale_and_batch_index():
    fmaps = torch.cat([_ramp(), 100 + _ramp()])
    # box (0,0,8,8) at scale 0.5 is the 4x4 map of image 1.
    out = roi_align(fmaps, _roi(0, 0, 8, 8, b=1.0), 2, 0.5, 0)
    assert torch.allclose(out[0, 0], 100 + torch.tensor([[5.5, 7.5], [25.5, 27.5]]))


def test_boxes_outside_kernel_vs_zeros():
    ones = torch.ones(1, 1, 4, 4)
    # x samples -4,-3,-2,-1 | 0,1,2,3: the kernel drops x < -1 and clamps -1 to 0 -> 1/4; zeros -> 0.
    k = roi_align(ones, _roi(-4, 0, 4, 4), (1, 2), 1.0, 0, border='kernel')
    z = roi_align(ones, _roi(-4, 0, 4, 4), (1, 2), 1.0, 0, border='zeros')
    assert torch.allclose(k[0, 0], torch.tensor([[0.25, 1.0]]))
    assert torch.allclose(z[0, 0], torch.tensor([[0.0, 1.0]]))
    # One sample at x = -0.5 (y = 0): kernel clamps to column 0 -> 1; zeros interpolates with 0 -> 0.5.
    assert roi_align(ones, _roi(-1, 0, 1, 1), 1, 1.0, 1, border='kernel').item() == pytest.approx(1.0)
    assert roi_align(ones, _roi(-1, 0, 1, 1), 1, 1.0, 1, border='zeros').item() == pytest.approx(0.5)
    # Right edge, sample at x = 3.5: kernel reads column 3 -> 1; zeros -> 0.5.
    assert roi_align(ones, _roi(3, 0, 5, 1), 1, 1.0, 1, border='kernel').item() == pytest.approx(1.0)
    assert roi_align(ones, _roi(3, 0, 5, 1), 1, 1.0, 1, border='zeros').item() == pytest.approx(0.5)
    # Entirely outside: zero either way.
    assert roi_align(ones, _roi(20, 20, 30, 30), 2, 1.0, 0, border='zeros').abs().sum() == 0


def test_zeros_border_equals_zero_padded_map():
    """GCPose pads P2 with zeros and shifts boxes; border='zeros' must give the same numbers."""
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(2, 3, 9, 11, generator=g)
    boxes = torch.tensor([[0, -10., -6., 20., 30.], [1, 30., 12., 52., 40.], [0, 3., 4., 9., 10.]])
    pad = 4  # feature pixels; boxes stick out by at most 3
    padded = F.pad(fmap, (pad, pad, pad, pad))
    shifted = boxes.clone()
    shifted[:, 1:] += pad * 4
    ref = roi_align(padded, shifted, 5, 0.25, 0, border='kernel')
    out = roi_align(fmap, boxes, 5, 0.25, 0, border='zeros')
    assert torch.allclose(out, ref, atol=1e-5)


def _reference(fmap, roi, out, scale, sr, aligned):
    """Per-sample loop written from the kernel's formulas (slow, tiny inputs only)."""
    C, H, W = fmap.shape
    off = 0.5 if aligned else 0.0
    x0, y0 = roi[1] * scale - off, roi[2] * scale - off
    rw, rh = (roi[3] - roi[1]) * scale, (roi[4] - roi[2]) * scale
    if not aligned:
        rw, rh = max(rw, 1.0), max(rh, 1.0)
    bw, bh = rw / out, rh / out
    gy = sr if sr > 0 else math.ceil(rh / out)
    gx = sr if sr > 0 else math.ceil(rw / out)
    res = torch.zeros(C, out, out, dtype=torch.float64)

    def bil(y, x):
        if y < -1.0 or y > H or x < -1.0 or x > W:
            return torch.zeros(C, dtype=torch.float64)
        y, x = max(y, 0.0), max(x, 0.0)
        yl, xl = int(y), int(x)
        if yl >= H - 1:
            yl = yh = H - 1
            y = float(yl)
        else:
            yh = yl + 1
        if xl >= W - 1:
            xl = xh = W - 1
            x = float(xl)
        else:
            xh = xl + 1
        ly, lx = y - yl, x - xl
        return ((1 - ly) * (1 - lx) * fmap[:, yl, xl] + (1 - ly) * lx * fmap[:, yl, xh]
                + ly * (1 - lx) * fmap[:, yh, xl] + ly * lx * fmap[:, yh, xh])

    for ph in range(out):
        for pw in range(out):
            acc = torch.zeros(C, dtype=torch.float64)
            for iy in range(gy):
                for ix in range(gx):
                    acc += bil(y0 + ph * bh + (iy + .5) * bh / gy, x0 + pw * bw + (ix + .5) * bw / gx)
            res[:, ph, pw] = acc / max(gy * gx, 1)
    return res


@pytest.mark.parametrize('aligned,sr', [(True, 0), (False, 0), (True, 2), (False, 1)])
def test_matches_reference_loop(aligned, sr):
    g = torch.Generator().manual_seed(1)
    fmap = torch.randn(1, 2, 6, 7, generator=g, dtype=torch.float64)
    rois = torch.tensor([[0, -5., -3., 12., 20.], [0, 10., 8., 30., 25.], [0, 4., 4., 4.5, 9.],
                         [0, 25., 21., 33., 30.], [0, 7., 7., 7., 7.]])
    out = roi_align(fmap, rois, 3, 0.25, sr, aligned)
    for r in range(rois.shape[0]):
        ref = _reference(fmap[0], rois[r].tolist(), 3, 0.25, sr, aligned)
        assert torch.allclose(out[r], ref, atol=1e-6), (r, out[r], ref)


def test_backward_is_exact():
    fmap = torch.randn(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, -2., 1., 11., 17.], [0, 3., 3., 9., 8.]])
    assert torch.autograd.gradcheck(lambda f: roi_align(f, rois, 2, 0.5, 0, border='zeros'), (fmap,))
    # Linear op: pooling a constant 1 map inside the image gives 1, so d(sum)/d(map) sums to #outputs.
    out = roi_align(torch.ones(1, 1, 8, 8, requires_grad=True), torch.tensor([[0, 2., 2., 10., 10.]]), 2, 0.5, 0)
    out.sum().backward()


def test_fpn_levels_and_multilevel():
    boxes = torch.tensor([[0, 0, 224, 224.], [0, 0, 112, 112.], [0, 0, 10, 10.], [0, 0, 1000, 1000.]])
    assert assign_fpn_levels(boxes).tolist() == [2, 1, 0, 3]   # p4, p3, p2, p5 relative to p2
    feats = [torch.full((2, 1, 64 // s, 64 // s), float(s)) for s in (4, 8, 16, 32)]
    feats[3][1] = -1.0
    out = multilevel_roi_align(feats, [torch.tensor([[0, 0, 60, 60.], [0, 0, 4, 4.]]),
                                       torch.tensor([[0, 0, 20, 20.], [4, 4, 40, 40.]])], 2, (4, 8, 16, 32))
    # 60 px box -> level floor(4 + log2(60/224)) = 2 -> p2 (value 4); tiny box -> p2 as well.
    assert out[:2, 0, 0, 0].tolist() == [4.0, 4.0]
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 1, 64 // s, 64 // s, generator=g) for s in (4, 8, 16, 32)]
    boxes = torch.tensor([[0, 0, 1000, 1000.], [3, 5, 123, 125.]])
    out = multilevel_roi_align(feats, [boxes[:1], boxes[1:]], 2, (4, 8, 16, 32), border='zeros')
    # 1000 px -> level 6 clamped to p5, image 0; 120 px -> floor(4 + log2(120/224)) = 3 -> p3, image 1.
    ref0 = roi_align(feats[3], torch.tensor([[0, 0, 0, 1000, 1000.]]), 2, 1 / 32, border='zeros')
    ref1 = roi_align(feats[1], torch.tensor([[1, 3, 5, 123, 125.]]), 2, 1 / 8, border='zeros')
    assert torch.equal(out[0], ref0[0]) and torch.equal(out[1], ref1[0])


def test_per_side_border_equals_the_originals_partial_padding():
    """GCPose pads only the sides its boxes cross (getOutborderRange): here left and top. A box ending at the right
    edge (x2 = W * 4) keeps the kernel's clamp there in the original; border (zeros, zeros, kernel, kernel) gives the
    original's numbers, 'zeros' on every side fades that last column (the difference fixed as defects.md F#12)."""
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(1, 3, 9, 11, generator=g) + 3
    boxes = torch.tensor([[0, -10., -6., 20., 30.], [0, 10., 4., 44., 36.]])     # W * 4 = 44, H * 4 = 36
    padded = F.pad(fmap, (8, 0, 8, 0))           # left 32 px, top 32 px: 8 cells each, right / bottom none
    shifted = boxes.clone()
    shifted[:, 1:] += 32
    ref = roi_align(padded, shifted, 5, 0.25, 0, border='kernel')
    out = roi_align(fmap, boxes, 5, 0.25, 0, border=('zeros', 'zeros', 'kernel', 'kernel'))
    assert torch.allclose(out, ref, atol=1e-5)
    zeros = roi_align(fmap, boxes, 5, 0.25, 0, border='zeros')
    assert torch.allclose(zeros[0], ref[0], atol=1e-5)                   # crosses the padded sides only
    assert (zeros[1, :, :, -1] - ref[1, :, :, -1]).abs().max() > 0.1     # the last column / row fade
    with pytest.raises(ValueError, match='left, top, right, bottom'):
        roi_align(fmap, boxes, 5, 0.25, 0, border=('zeros', 'kernel'))
