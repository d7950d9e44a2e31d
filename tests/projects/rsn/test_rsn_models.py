"""RSN exps: original names/shapes/order, params and MACs (docs/reference/rsn_mspn.md §1.2-1.6, §8); every exp's
train/eval in tests/projects/test_all_exps.py."""
import pytest
import torch

from cvpack.config import clone
from cvpack.modeling.megvii_blocks import PRM, RSB
from cvpack.tools.complexity import complexity
from tests.projects.megvii_helpers import SMALL, assert_matches_ref, build, exp_dir, load_ref, one_thread


@pytest.mark.parametrize('exp,ref', [('Res18.coco', 'Res18'), ('RSN18.coco', 'RSN18'), ('4XRSN18.coco', '4xRSN18'),
                                     ('RSN50.coco', 'RSN50_configured')])
def test_state_dict_matches_original(exp, ref):
    _, model = build('RSN', exp, device='meta')
    assert_matches_ref(model, ref)


@pytest.mark.parametrize('project,exp,ref_name', [('RSN', 'RSN18.coco', 'RSN18'), ('RSN', 'Res18.coco', 'Res18'),
                                                  ('MSPN', 'mspn.2xstg.coco', 'MSPN2stg')])
def test_original_checkpoint_loads_strictly(project, exp, ref_name):
    """A synthetic checkpoint with the original's names/shapes (random values) loads strictly, values kept."""
    _, ref = load_ref(ref_name)
    g = torch.Generator().manual_seed(0)
    state = {name: (torch.randint(0, 9, shape, generator=g) if name.endswith('num_batches_tracked')
                    else torch.randn(shape, generator=g)) for name, shape, _ in ref}
    _, model = build(project, exp)
    model.load_state_dict(state, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


# params / GMACs at 256x192 (384x288 for the last), from the original code (docs/reference/rsn_mspn.md §8)
@pytest.mark.parametrize('exp,params,gmacs', [
    ('Res18.coco', 8558924, 2.065), ('RSN18.coco', 9159072, 2.245), ('4XRSN18.coco', 38456256, 9.220),
    ('RSN50.coco', 19355132, 4.068), ('2xRSN50.coco', 39.32e6, 8.22), ('3xRSN50.coco', 59.28e6, 12.36),
    ('4xRSN50.coco', 79.24e6, 16.51), ('4xRSN50.384x288.coco', 79.24e6, 16.51 * 2.25)])
def test_params_and_macs(exp, params, gmacs):
    res = complexity(exp_dir('RSN', exp))            # meta device: exact counts without compute
    assert res['params'] == pytest.approx(params, rel=1e-3 if isinstance(params, float) else 0)
    assert res['gmacs'] == pytest.approx(gmacs, rel=2e-3)


def test_384x288_exp_output_size():
    cfg, model = build('RSN', '4xRSN50.384x288.coco', device='meta')
    assert (cfg.INPUT_SHAPE, cfg.OUTPUT_SHAPE) == ([384, 288], [96, 72])
    assert model.eval()(torch.zeros(1, 3, 384, 288, device='meta')).shape == (1, 17, 96, 72)


def _rsb_reference(block, x):
    """RSB wiring written out unit by unit as the original forward (docs/reference/rsn_mspn.md §1.3)."""
    u = {n: getattr(block, 'conv_bn_relu2_' + n) for n in
         ['1_1', '2_1', '2_2', '3_1', '3_2', '3_3', '4_1', '4_2', '4_3', '4_4']}
    s = torch.split(block.conv_bn_relu1(x), block.branch_ch, 1)
    o11 = u['1_1'](s[0])
    o21 = u['2_1'](s[1] + o11)
    o22 = u['2_2'](o21)
    o31 = u['3_1'](s[2] + o21)
    o32 = u['3_2'](o31 + o22)
    o33 = u['3_3'](o32)
    o41 = u['4_1'](s[3] + o31)
    o42 = u['4_2'](o41 + o32)
    o43 = u['4_3'](o42 + o33)
    o44 = u['4_4'](o43)
    out = block.conv_bn_relu3(torch.cat([o11, o22, o33, o44], 1))
    return torch.relu(out + (block.downsample(x) if block.downsample is not None else x))


def test_rsb_wiring_matches_original():
    from cvpack.modeling.layers import ConvBnRelu
    torch.manual_seed(0)
    block = RSB(64, 128, 2, ConvBnRelu(64, 128, 1, 2, 0, has_relu=False)).eval()
    for m in block.modules():   # non-trivial BN statistics so every unit matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 64, 8, 6)
    with torch.no_grad():
        assert torch.allclose(block(x), _rsb_reference(block, x), atol=1e-5)
        assert block(x).shape == (2, 128, 4, 3)
    assert block.branch_ch == 26


@one_thread()
def test_prm_option():
    cfg, model = build('RSN', 'RSN18.coco',
                       ['MODEL.PRM', 'True', 'INPUT_SHAPE', '[64, 48]', 'OUTPUT_SHAPE', '[16, 12]'])
    prm = model.stage0.upsample.up4.prm
    assert isinstance(prm, PRM) and not hasattr(model.stage0.upsample.up3, 'prm')
    assert sum(p.numel() for p in prm.parameters()) == 5100          # docs/reference/rsn_mspn.md §1.4, K = 17
    assert sum(p.numel() for p in model.parameters()) == 9159072 + 5100
    x = torch.randn(2, 3, 64, 48)
    model.train()
    assert torch.isfinite(sum(model(x, {'target': torch.rand(2, 5, 17, 16, 12) * 255,
                                         'target_weight': torch.full((2, 17), 2.0)}).values()))
    assert model.eval()(x).shape == (2, 17, 16, 12)
    a = torch.rand(1, 17, 4, 3)
    with torch.no_grad():   # gates follow a ReLU: output between 1.25x and 2x of the first unit's output
        base = prm.conv_bn_relu_prm_1(a)
        out = prm(a)
    assert torch.all(out >= 1.25 * base - 1e-6) and torch.all(out <= 2 * base + 1e-6)


def test_input_output_ratio_is_validated():
    with pytest.raises(ValueError, match='4x OUTPUT_SHAPE'):
        build('RSN', 'RSN18.coco', ['INPUT_SHAPE', '[64, 48]', 'OUTPUT_SHAPE', '[32, 24]'])
    _, model = build('RSN', 'RSN18.coco', ['INPUT_SHAPE', '[64, 48]', 'OUTPUT_SHAPE', '[16, 12]'])
    with pytest.raises(ValueError, match='expects'):
        model.eval()(torch.zeros(1, 3, 64, 64))


def test_efficient_mode_same_gradients_and_single_bn_update():
    """RUN_EFFICIENT (MPII exps): checkpointed units give the same loss/grads and update BN stats once
    (docs/reference/defects.md R#5)."""
    from cvpack.modeling.multistage import build_multistage
    from tests.projects.megvii_helpers import random_targets
    with one_thread():
        cfg, eff = build('RSN', 'RSN18.mpii', SMALL['MPII'])
        assert cfg.RUN_EFFICIENT and eff.top.conv.efficient
        cfg = clone(cfg)   # load_exp's cfg is frozen
        cfg.RUN_EFFICIENT = False
        plain = build_multistage(cfg)
        plain.load_state_dict(eff.state_dict())
        x, t = torch.randn(2, 3, 64, 64), random_targets(cfg, 2)
        for m in (eff, plain):
            sum(m.train()(x, t).values()).backward()
    for (k, a), b in zip(eff.state_dict().items(), plain.state_dict().values()):
        assert torch.allclose(a, b), k
    assert eff.top.conv.bn.num_batches_tracked.item() == 1
    for p, q in zip(eff.parameters(), plain.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6)


def test_zero_init_residual_option():
    """docs/reference/defects.md R#10 fixed: the option zeroes the last BN of every residual branch, so each block
    starts as ReLU(shortcut)."""
    _, model = build('RSN', 'Res18.coco', SMALL['COCO'] + ['MODEL.ZERO_INIT_RESIDUAL', 'True'])
    blocks = [b for k in range(1, 5) for b in getattr(model.stage0.downsample, 'layer%d' % k)]
    assert len(blocks) == 8 and all(not b.conv_bn_relu3.bn.weight.any() for b in blocks)
    block = blocks[2].eval()   # layer2.0, with a projection shortcut
    x = torch.randn(1, 64, 8, 6)
    with torch.no_grad():
        assert torch.allclose(block(x), torch.relu(block.downsample(x)), atol=1e-6)
    _, default = build('RSN', 'Res18.coco', SMALL['COCO'])
    assert default.stage0.downsample.layer1[0].conv_bn_relu3.bn.weight.all()


def test_decoder_level_sizes_equal_originals_fixed_sizes():
    """Sizes from feature maps = the original's (h/8, w/8) ... (h, w) from OUTPUT_SHAPE (docs/reference/rsn_mspn.md
    §1.1), per stage."""
    _, model = build('RSN', '4XRSN18.coco', device='meta')
    sizes = []
    for s in range(4):
        for u in range(1, 5):
            unit = getattr(getattr(model, 'stage%d' % s).upsample, 'up%d' % u)
            unit.u_skip.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
    out = model.eval()(torch.zeros(1, 3, 256, 192, device='meta'))
    assert sizes == [(8, 6), (16, 12), (32, 24), (64, 48)] * 4 and out.shape == (1, 17, 64, 48)


def test_rsn_has_no_imagenet_init():
    """RSN trains from scratch: no load_pretrained, so the trainer rejects MODEL.PRETRAINED naming the exp
    (tests/engine/test_train_loop.py); build_model itself never reads the key (test.py needs no file)."""
    _, rsn = build('RSN', 'RSN18.coco', SMALL['COCO'] + ['MODEL.PRETRAINED', '/absent/r50.pth'], device='meta')
    _, mspn = build('MSPN', 'mspn.1xstg.coco', SMALL['COCO'], device='meta')
    assert not hasattr(rsn, 'load_pretrained') and callable(mspn.load_pretrained)
