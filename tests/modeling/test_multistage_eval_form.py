"""The Megvii networks' eval form (cvpack.modeling.multistage, MultiStageNet.forward): the returned heatmap
against the original form, what training still runs, and the MACs it saves (counted by hand)."""
import pytest
import torch
from torch import nn

from cvpack.modeling.layers import fuse_conv_bn
from cvpack.modeling.multistage import MultiStageNet
from cvpack.tools.complexity import count_macs, complexity
from tests.projects.megvii_helpers import exp_dir


def _net(stage_num, block='rsb', seed=0, prm=False):
    """A small Megvii network with BN statistics of unit scale (as a trained one has), in eval mode."""
    torch.manual_seed(seed)
    model = MultiStageNet(17, (16, 12), block=block, blocks=(1, 1, 1, 1), stage_num=stage_num, prm=prm)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None          # cumulative average over the calibration batches
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, 64, 48))
    return model.eval()


def _both_forms(model, images):
    """(eval form, original form) heatmaps, and the (h, w) of the finest unit's up_conv input in each: the
    coarser level's size when up_conv ran before the resize."""
    sizes = []
    unit = getattr(model, 'stage%d' % (model.stage_num - 1)).upsample.up4.up_conv
    hook = unit.register_forward_hook(lambda m, inp, out: sizes.append(tuple(inp[0].shape[-2:])))
    with torch.no_grad():
        fast = model(images)
        model.original_eval = True
        try:
            full = model(images)
        finally:
            model.original_eval = False
            hook.remove()
    return fast, full, sizes


def _stage_outputs(model, images, heads):
    """Every stage's (heatmaps, skip1, skip2, cross) with the given heads and up_conv after the resize."""
    x, skip1, skip2, outputs = model.top(images), None, None, []
    with torch.no_grad():
        for s in range(model.stage_num):
            last = s == model.stage_num - 1
            res, skip1, skip2, x = getattr(model, 'stage%d' % s)(
                x, skip1, skip2, model.output_shape, (False, False, False, last) if heads == 'returned' else
                (True,) * 4, conv_first=False)
            outputs.append((res, skip1, skip2, x))
    return outputs


@pytest.mark.parametrize('stage_num,block,prm', [(1, 'rsb', False), (2, 'rsb', False), (2, 'bottleneck', False),
                                                 (1, 'rsb', True)])
def test_eval_form_gives_the_original_heatmap(stage_num, block, prm):
    model = _net(stage_num, block, prm=prm)
    images = torch.randn(3, 3, 64, 48)
    fast, full, sizes = _both_forms(model, images)
    assert fast.shape == full.shape == (3, 17, 16, 12)
    assert sizes == [(8, 6), (16, 12)]        # the swap was taken in the eval form only
    # the same function; only float rounding differs (up_conv before the resize)
    assert (fast - full).abs().max() <= 1e-5 * full.abs().max()
    with torch.no_grad():
        outputs = model.forward_stages(images, eval_form=True)
    assert all(r is None for stage in outputs[:-1] for r in stage)
    assert outputs[-1][:3] == [None, None, None] and outputs[-1][3].shape == (3, 17, 16, 12)


@pytest.mark.parametrize('stage_num', [1, 2])
def test_skipping_heads_changes_no_bit(stage_num):
    """Without the up_conv swap, running only the returned head leaves that heatmap and every feature passed
    to the next stage the same tensors, bit for bit."""
    model = _net(stage_num, prm=True)
    images = torch.randn(2, 3, 64, 48)
    every, returned = _stage_outputs(model, images, 'all'), _stage_outputs(model, images, 'returned')
    assert torch.equal(every[-1][0][3], returned[-1][0][3])
    assert returned[-1][0][:3] == [None, None, None]
    for (_, s1, s2, x), (_, r1, r2, rx) in zip(every[:-1], returned[:-1]):
        assert all(torch.equal(a, b) for a, b in zip(s1 + s2 + [x], r1 + r2 + [rx]))


def test_eval_form_with_bn_folded_and_channels_last():
    """Folded BN (the export's and the benchmark's inference form) keeps up_conv affine: the swap is taken and
    gives the folded original form's heatmap (folding itself rounds differently from the unfolded net)."""
    fused = fuse_conv_bn(_net(2)).to(memory_format=torch.channels_last)
    images = torch.randn(2, 3, 64, 48).contiguous(memory_format=torch.channels_last)
    fast, full, sizes = _both_forms(fused, images)
    assert sizes == [(8, 6), (16, 12)]
    assert (fast - full).abs().max() <= 1e-5 * full.abs().max()


def test_no_swap_when_up_conv_bn_uses_batch_statistics():
    model = _net(1)
    model.stage0.upsample.up4.up_conv.bn.train()     # the rest stays in eval mode
    assert _both_forms(model, torch.randn(2, 3, 64, 48))[2] == [(16, 12), (16, 12)]


def test_training_runs_every_head_in_the_original_order():
    """Train mode (with or without targets) runs all heads, so every head's BN statistics move, and the unit
    keeps up_conv after the resize: BN batch statistics are not invariant to the swap."""
    model = _net(2).train()
    heads = [model.stage0.upsample.up1.res_conv1.bn, model.stage1.upsample.up3.res_conv2.bn]
    for bn in heads:
        bn.momentum = 0.5
    before = [bn.running_mean.clone() for bn in heads]
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 48))
    assert all(not torch.equal(b, bn.running_mean) for b, bn in zip(before, heads))
    unit = model.stage0.upsample.up4
    x, up_x = torch.randn(2, 64, 16, 12), torch.randn(2, 256, 8, 6)
    with torch.no_grad():
        unit.eval()
        eval_ref = unit(x, up_x, (16, 12))[0]
        assert (unit(x, up_x, (16, 12), conv_first=True)[0] - eval_ref).abs().max() <= 1e-5 * eval_ref.abs().max()
        unit.train()
        for m in unit.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.0       # batch statistics, running ones kept
        a = unit(x, up_x, (16, 12))[0]
        b = unit(x, up_x, (16, 12), conv_first=True)[0]   # ignored: up_conv's BN is in training mode
    assert torch.equal(a, b)


def _saved_macs(stage_num, hw=((8, 6), (16, 12), (32, 24), (64, 48)), k=17, chl=256):
    """MACs the eval form skips, by hand: each skipped head is res_conv1 (1x1, chl->chl) + res_conv2 (3x3,
    chl->k) at its level; up_conv (1x1, chl->chl) of units 2-4 runs at the coarser level's size."""
    areas = [h * w for h, w in hw]
    head = chl * chl + chl * k * 9
    skipped_heads = (stage_num - 1) * sum(areas) + sum(areas[:3])
    up_conv = stage_num * sum(areas[i] - areas[i - 1] for i in (1, 2, 3))
    return skipped_heads * head + up_conv * chl * chl


@pytest.mark.parametrize('exp,stages', [('RSN18.coco', 1), ('4XRSN18.coco', 4)])
def test_complexity_counts_the_published_network_and_the_eval_form(exp, stages):
    res = complexity(exp_dir('RSN', exp))
    assert round((res['gmacs'] - res['eval_gmacs']) * 1e9) == _saved_macs(stages)
    assert res['gmacs'] == pytest.approx({1: 2.245, 4: 9.220}[stages], rel=2e-3)   # the originals' count


def test_count_macs_restores_the_switch():
    with torch.device('meta'):
        model = MultiStageNet(17, (16, 12), blocks=(1, 1, 1, 1), stage_num=2)
        images = torch.zeros(1, 3, 64, 48)
        full = count_macs(model, images)
        fast = count_macs(model, images, original=False)
    assert model.original_eval is False and model.training
    assert full - fast == _saved_macs(2, hw=((2, 2), (4, 3), (8, 6), (16, 12)))
