"""MLPE model: parameter counts (docs/reference/mlpe_hsrnet_gcpose.md §1.5), each ablation switch, context branch sizes,
losses by hand."""
import os
import pytest
import torch

from projects.MLPE.mlpe import MLPE, ContextFusion, HRFineNet, MultiLevelNet, global_loss, refine_loss

C = 256
DECONV = C * C * 16                      # ConvTranspose 4x4 256->256, no bias


def _params(m):
    return sum(p.numel() for p in m.parameters())


def _feats(h5, w5, n=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, h5 * s, w5 * s, generator=g) for c, s in ((2048, 1), (1024, 2), (512, 4), (256, 8))]


@pytest.fixture(scope='module')
def mlpe50():
    torch.manual_seed(0)
    return MLPE(backbone='resnest50')


def test_parameter_counts(mlpe50):
    # docs/reference/mlpe_hsrnet_gcpose.md §1.5: MLPE-50 39.9 M / MLPE-101 60.7 M without the fc and the dead laterals;
    # multi-level net 6.33 M
    # as built (with the laterals), HR fine-tune net 8.59 M
    assert round(_params(mlpe50) / 1e6, 1) == 39.9
    assert round(_params(MLPE(backbone='resnest101')) / 1e6, 1) == 60.7
    assert round(_params(MultiLevelNet(lateral_skips=True)) / 1e6, 2) == 6.33
    assert round(_params(mlpe50.refine_net) / 1e6, 2) == 8.59
    assert round((_params(MLPE(backbone='resnest50', lateral_skips=True)) + 2048 * 1000 + 1000) / 1e6, 1) == 42.4


def test_laterals_option_not_built_when_off():
    off, on = MultiLevelNet(), MultiLevelNet(lateral_skips=True)
    assert not any('laterals' in k for k in off.state_dict())
    # three 1x1 convs (C4, C3, C2 -> 256, no bias) + BN(256) each
    assert _params(on) - _params(off) == (1024 + 512 + 256) * C + 3 * 2 * C
    feats = _feats(2, 2, seed=1)
    on.load_state_dict(off.state_dict(), strict=False)
    on.eval(), off.eval()
    with torch.no_grad():
        out_on, out_off = on(feats)[1], off(feats)[1]
        assert not torch.allclose(out_on[3], out_off[3])
        for lat in on.laterals:        # a zero BN gamma/beta makes each lateral 0: same as without laterals
            lat[1].weight.zero_()
        out_zero = on(feats)[1]
    for a, b in zip(out_zero, out_off):
        assert torch.allclose(a, b, atol=1e-5)


def test_upsample_switch_bilinear_vs_deconv():
    # multi-level: 3 deconvs -> 3 1x1 convs with bias; HR fine: 6 deconv+BN+ReLU are dropped (one resize instead)
    ml_d, ml_b = MultiLevelNet(upsample='deconv'), MultiLevelNet(upsample='bilinear')
    assert _params(ml_d) - _params(ml_b) == 3 * DECONV - 3 * (C * C + C)
    hr_d, hr_b = HRFineNet(upsample='deconv'), HRFineNet(upsample='bilinear')
    assert _params(hr_d) - _params(hr_b) == 6 * (DECONV + 2 * C)
    levels = [torch.randn(1, C, 2 * 2 ** i, 2 * 2 ** i) for i in range(4)]
    assert hr_b.eval()(levels).shape == hr_d.eval()(levels).shape == (1, 17, 16, 16)
    with pytest.raises(ValueError, match='UPSAMPLE'):
        MultiLevelNet(upsample='nearest')


def test_input_size_must_divide_by_32(mlpe50):
    with pytest.raises(ValueError, match='divisible by 32'):
        mlpe50.eval()(torch.zeros(1, 3, 80, 64))


def test_training_batch_of_one_names_the_setting(mlpe50):
    """SOLVER.IMS_PER_GPU 1: ResNeSt's split-attention BatchNorm over pooled (1, C, 1, 1) features failed with
    torch's "Expected more than 1 value per channel when training", naming no setting. Eval takes one crop."""
    targets = {'target': torch.zeros(1, 4, 17, 16, 16), 'target_weight': torch.ones(1, 17)}
    with pytest.raises(ValueError, match=r'at least 2 crops per process \(SOLVER\.IMS_PER_GPU\), got a batch of 1'):
        mlpe50.train()(torch.zeros(1, 3, 64, 64), targets)
    assert mlpe50.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 17, 16, 16)


def test_pred_kernel_switch():
    k3, k1 = MLPE(backbone='resnest50', pred_kernel=3), MLPE(backbone='resnest50', pred_kernel=1)
    # 4 level heads + the final predictor: 256 -> 17 convs, k x k, no bias
    assert _params(k3) - _params(k1) == 5 * C * 17 * (9 - 1)
    assert k1.refine_net.pred.kernel_size == (1, 1) and k1.multilevel_net.heads[0].pred.kernel_size == (1, 1)


def test_feature_retention_switch():
    on, off = MultiLevelNet(feature_retention=True), MultiLevelNet(feature_retention=False)
    assert off.context is None
    assert _params(on) - _params(off) == 3 * (2048 * C + C) + (3 * C * C + C) + (C * 3 * 9 + 3)
    off.load_state_dict(on.state_dict(), strict=False)
    on.eval(), off.eval()
    feats = _feats(2, 2, seed=2)
    with torch.no_grad():
        assert not torch.allclose(on(feats)[1][0], off(feats)[1][0])
        for conv in on.context.reduce:   # zero pooled maps -> zero context -> identical to "off"
            conv.weight.zero_(), conv.bias.zero_()
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(on(feats)[1], off(feats)[1]))


@pytest.mark.parametrize('c5_hw, pooled', [((8, 6), [(1, 1), (1, 1), (2, 1)]),      # 256x192 input
                                            ((12, 9), [(1, 1), (2, 1), (3, 2)]),     # 384x288 (the original's 12x9)
                                            ((4, 3), [(1, 1), (1, 1), (1, 1)])])     # 128x96
def test_context_branch_any_size(c5_hw, pooled):
    ctx = ContextFusion().eval()
    assert ctx.pooled_sizes(*c5_hw) == pooled
    seen = []
    hooks = [conv.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:]))) for conv in ctx.reduce]
    with torch.no_grad():
        out = ctx(torch.randn(1, 2048, *c5_hw))
    for h in hooks:
        h.remove()
    assert seen == pooled and tuple(out.shape) == (1, 256) + c5_hw


@pytest.mark.parametrize('hw', [(256, 192), (384, 288)])
def test_heads_output_grid(hw):
    # multi-level + HR fine-tune nets on C5..C2-shaped features of a full-size input: all outputs at H/4 x W/4
    torch.manual_seed(0)
    ml, hr = MultiLevelNet().eval(), HRFineNet().eval()
    with torch.no_grad():
        levels, maps = ml(_feats(hw[0] // 32, hw[1] // 32))
        final = hr(levels)
    out = (1, 17, hw[0] // 4, hw[1] // 4)
    assert [tuple(f.shape[-2:]) for f in levels] == [(hw[0] // s, hw[1] // s) for s in (32, 16, 8, 4)]
    assert all(tuple(m.shape) == out for m in maps) and tuple(final.shape) == out


def test_global_loss_by_hand():
    # N=2, K=3, 2x2 maps, prediction 0 everywhere: level loss = sum over (n, j) with v==2 of a^2 / (N K) / 2
    n, k = 2, 3
    a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])          # (level, joint) target values (2 levels)
    target = a[None, :, :, None, None].expand(n, 2, k, 2, 2).clone()
    weight = torch.tensor([[2.0, 1.0, 0.0], [2.0, 2.0, 0.0]])
    preds = [torch.zeros(n, k, 2, 2) for _ in range(2)]
    # level 0: visible pairs (0,0),(1,0),(1,1): 1 + 1 + 4 = 6; level 1: 16 + 16 + 25 = 57; mean over 6 maps, /2
    expected = 6 / 6 / 2 + 57 / 6 / 2
    assert torch.isclose(global_loss(preds, target, weight), torch.tensor(expected))
    # the prediction is not masked: predicting 1 on an invisible joint costs
    preds[0][0, 2] = 1.0
    assert torch.isclose(global_loss(preds, target, weight), torch.tensor(expected + 4 / (6 * 4) / 2))


def test_refine_loss_ohkm_by_hand():
    # per-joint loss = (pred - target)^2 (constant maps), masked by v > 0, top-8 of 17 per sample averaged
    g = torch.Generator().manual_seed(5)
    diff = torch.rand(2, 17, generator=g) * 3
    weight = torch.randint(0, 3, (2, 17), generator=g).float()
    pred = diff[:, :, None, None].expand(2, 17, 3, 2).clone()
    target = torch.zeros(2, 17, 3, 2)
    expected = 0.0
    for i in range(2):
        losses = sorted(((d * d) if w > 0 else 0.0) for d, w in zip(diff[i].tolist(), weight[i].tolist()))
        expected += sum(losses[-8:]) / 8 / 2
    assert torch.isclose(refine_loss(pred, target, weight, topk=8), torch.tensor(expected), rtol=1e-5)
    plain = sum((d * d) for d, w in zip(diff.flatten().tolist(), weight.flatten().tolist()) if w > 0) / 34
    assert torch.isclose(refine_loss(pred, target, weight, use_ohkm=False), torch.tensor(plain), rtol=1e-5)


@pytest.mark.parametrize('exp, params, gmacs', [
    ('mlpe_rs50_256x192_d', 39_893_805, 11.893),    # docs/reference/mlpe_hsrnet_gcpose.md §1.5: MLPE-50 39.9 M without
                                                    # the unused parts
    ('mlpe_rs101_384x288', 60_685_581, 37.398),     # MLPE-101 60.7 M
])
def test_exp_complexity_tool(repo_root, exp, params, gmacs):
    from cvpack.tools.complexity import complexity
    res = complexity(os.path.join(repo_root, 'projects', 'MLPE', 'exps', exp))
    assert res['params'] == params
    assert res['gmacs'] == pytest.approx(gmacs, abs=1e-3)


def test_eval_skips_the_multilevel_heads(mlpe50):
    """The eval forward leaves out the four global heads (they feed only the global loss): the refined heatmaps
    are the same bits; training still runs them (their BN statistics move)."""
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    calls = []
    hook = mlpe50.multilevel_net.heads[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            fast = mlpe50.eval()(images)
            assert calls == []
            mlpe50.original_eval = True
            full = mlpe50(images)
            assert calls == [1]
    finally:
        mlpe50.original_eval = False
        mlpe50.train()     # the module-scoped fixture as the other tests get it
        hook.remove()
    assert torch.equal(fast, full)
    net = MLPE(backbone='resnest50').train()
    bn = net.multilevel_net.heads[3].bn
    with torch.no_grad():
        net(images)
    assert int(bn.num_batches_tracked) == 1


def test_eval_gmacs_leave_out_the_heads_by_hand(repo_root):
    """MLPE-50 at 256x192: each head is a 1x1 256->256 and a 3x3 256->17 conv at its level (8x6 ... 64x48)."""
    from cvpack.tools.complexity import complexity
    res = complexity(os.path.join(repo_root, 'projects', 'MLPE', 'exps', 'mlpe_rs50_256x192_d'))
    heads = sum(h * w for h, w in ((8, 6), (16, 12), (32, 24), (64, 48))) * (256 * 256 + 256 * 17 * 9)
    assert round((res['gmacs'] - res['eval_gmacs']) * 1e9) == heads
