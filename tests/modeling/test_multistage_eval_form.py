"""The Megvii networks' eval form (cvpack.modeling.multistage, MultiStageNet.forward): the returned heatmap
against the original form, what training still runs, and the MACs it saves (counted by hand)."""
import pytest
import torch
from torch import nn

from cvpack.modeling.layers import fuse_conv_bn
from cvpack.modeling.multistage import MultiStageNet
from cvpack.tools.complexity import count_macs, complexity
from tests.projects.megvii_helpers import exp_dir


def _net(stage_num, block='rsb', seed=0):
    """A small Megvii network with BN statistics of unit scale (as a trained one has), in eval mode."""
    torch.manual_seed(seed)
    model = MultiStageNet(17, (16, 12), block=block, blocks=(1, 1, 1, 1), stage_num=stage_num)
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
    with torch.no_grad():
        fast = model(images)
        model.original_eval = True
        try:
            full = model(images)
        finally:
            model.original_eval = False
    return fast, full


@pytest.mark.parametrize('stage_num,block', [(1, 'rsb'), (2, 'rsb'), (2, 'bottleneck')])
def test_eval_form_gives_the_original_heatmap(stage_num, block):
    model = _net(stage_num, block)
    images = torch.randn(3, 3, 64, 48)
    fast, full = _both_forms(model, images)
    assert fast.shape == full.shape == (3, 17, 16, 12)
    # the same function; only float rounding differs (up_conv before the resize)
    assert (fast - full).abs().max() <= 1e-5 * full.abs().max()
    with torch.no_grad():   # skipping the unreturned heads alone changes no bit
        pruned = model.forward_stages(images, eval_form=False)[-1][-1]
        assert torch.equal(pruned, full)
        outputs = model.forward_stages(images, eval_form=True)
    assert all(r is None for stage in outputs[:-1] for r in stage)
    assert outputs[-1][:3] == [None, None, None] and outputs[-1][3].shape == (3, 17, 16, 12)


def test_eval_form_with_bn_folded_and_channels_last():
    """Folded BN (the export's and the benchmark's inference form) keeps up_conv affine: the swap is taken and
    gives the folded original form's heatmap (folding itself rounds differently from the unfolded net)."""
    fused = fuse_conv_bn(_net(2)).to(memory_format=torch.channels_last)
    images = torch.randn(2, 3, 64, 48).contiguous(memory_format=torch.channels_last)
    fast, full = _both_forms(fused, images)
    assert 0 < (fast - full).abs().max() <= 1e-5 * full.abs().max()


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
