"""HSRNet / HSR-MSNet: shapes, parameter counts (docs/reference/mlpe_hsrnet_gcpose.md §2.3-2.4), block semantics,
ImageNet key map, loss, head."""
import pytest
import torch
from easydict import EasyDict as edict

from cvpack.modeling.backbones import HSRNET_VARIANTS, build_hsrnet, build_resnet
from cvpack.modeling.backbones.hsrnet import (
    DetNetBottleneck, HierarchicalConv, SEModule, SplitSEBottleneck, canonical_name,
)
from cvpack.modeling.deconv_head import DeconvHead, deconv_padding
from cvpack.modeling.losses import JointsMSELoss, joints_mse_loss
from projects.HSRNet.hsrnet import HSRNetPose, add_hsrnet_config, build_model


def _cfg(backbone, pretrained=None):
    cfg = edict(MODEL=edict(), LOSS=edict(USE_TARGET_WEIGHT=True), SOLVER=edict(IMS_PER_GPU=32),
                DATASET=edict(KEYPOINT=edict(NUM=17)),
                INPUT_SHAPE=[256, 192], OUTPUT_SHAPE=[64, 48])
    cfg = add_hsrnet_config(cfg, backbone)
    depth = {'59': 'resnet50-', '110': 'resnet101-', '161': 'resnet152-'}[cfg.MODEL.BACKBONE.split('net')[-1]]
    assert cfg.MODEL.PRETRAINED.startswith('https://download.pytorch.org/models/' + depth)
    cfg.MODEL.PRETRAINED = pretrained      # no downloads in tests
    return cfg


def _params(module):
    return sum(p.numel() for p in module.parameters())


# Whole pose net (backbone + 2-deconv head + final conv, 17 joints), docs/reference/mlpe_hsrnet_gcpose.md §2.3/§2.4
# [VERIFIED] in millions.
SPEC_PARAMS_M = {'hsrnet59': 22.6, 'hsrnet110': 41.6, 'hsrnet161': 57.2, 'hsr_msnet59': 18.8}


@pytest.mark.parametrize('name', sorted(HSRNET_VARIANTS))
def test_param_counts_and_meta_shapes(name):
    with torch.device('meta'):
        model = build_model(_cfg(name))
        # Shapes without compute: stride-16 features, stride-4 heatmaps at both exp inputs (59-layer
        # models; the deeper ones differ only in layer3's depth and run a tiny forward in test_exps).
        sizes = ((256, 192), (384, 288)) if name.endswith('59') else ()
        for (h, w) in sizes:
            x = torch.empty(2, 3, h, w)
            assert tuple(model.backbone(x).shape) == (2, 1024, h // 16, w // 16)
            assert tuple(model.eval()(x).shape) == (2, 17, h // 4, w // 4)
    total = _params(model)
    assert _params(model.backbone) + _params(model.head) == total
    # Head by hand: 1024*256*16 + 256*256*16 deconvs, 2 BNs of 256 (weight+bias), 256*17 + 17 final conv.
    assert _params(model.head) == 1024 * 256 * 16 + 256 * 256 * 16 + 2 * 512 + 256 * 17 + 17
    if name in SPEC_PARAMS_M:
        assert round(total / 1e6, 1) == SPEC_PARAMS_M[name]
    if name == 'hsrnet59':
        assert round(_params(model.backbone) / 1e6, 2) == 17.35   # docs/reference/mlpe_hsrnet_gcpose.md §2.3 backbone


def test_msnet_has_no_dead_layers_and_110_161_build():
    """Every HSR-MSNet parameter gets a gradient (the original built 7.2 M unused ones,
    docs/reference/mlpe_hsrnet_gcpose.md §2.4)."""
    torch.manual_seed(0)
    model = HSRNetPose('hsr_msnet59').train()
    x = torch.randn(2, 3, 64, 48)
    t = {'target': torch.rand(2, 17, 16, 12), 'target_weight': torch.ones(2, 17)}
    model(x, t)['joints_mse'].backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []
    names = dict(model.backbone.named_modules())
    assert isinstance(names['layer1.0'], SplitSEBottleneck) and not hasattr(names['layer1.0'], 'conv2')
    assert hasattr(names['layer2.0'], 'conv2') and not hasattr(names['layer2.0'], 'split')   # stride 2: plain
    assert not hasattr(names['layer3.1'], 'conv2')
    with torch.device('meta'):
        for name, blocks in (('hsr_msnet110', 23), ('hsr_msnet161', 36)):
            assert len(build_hsrnet(name).layer3) == blocks


def _identity_split(width, **kw):
    m = HierarchicalConv(width, **kw).eval()
    with torch.no_grad():
        for conv in m.convs:
            conv.weight.zero_()
            for c in range(conv.weight.shape[0]):
                conv.weight[c, c, 1, 1] = 1.0     # centre tap: identity (also with dilation 2)
    return m


def test_hierarchical_split_sums():
    """y0 = x0, y1 = x1, y2 = x2 + y1, y3 = x3 + y2 with identity convs and eval BN; ReLU on the concat."""
    x = torch.randn(1, 8, 5, 5)
    out = _identity_split(8)(x)
    x0, x1, x2, x3 = x.chunk(4, 1)
    expect = torch.cat([x0, x1, x2 + x1, x3 + x2 + x1], 1).relu()
    bn_scale = 1 / (1 + 1e-5) ** 0.5              # eval BN with running var 1
    torch.testing.assert_close(out[:, :2], x0.relu())
    torch.testing.assert_close(out[:, 2:4], (x1 * bn_scale).relu())
    torch.testing.assert_close(out[:, 4:6], ((x2 + x1 * bn_scale) * bn_scale).relu())
    torch.testing.assert_close(out, expect, atol=1e-4, rtol=1e-4)
    # DetNet form: group 0 convolved too, but y1 still does not add y0.
    m = _identity_split(8, dilation=2, convolve_first=True)
    assert len(m.convs) == 4 and m.convs[0].dilation == (2, 2)
    torch.testing.assert_close(m(x), expect, atol=1e-4, rtol=1e-4)


def test_se_gate_and_detnet_shortcut():
    se = SEModule(32)
    with torch.no_grad():
        se.fc2.weight.zero_()
        se.fc2.bias.zero_()                   # gate sigmoid(0) = 0.5 for every channel
    x = torch.randn(2, 32, 3, 3)
    torch.testing.assert_close(se(x), x * 0.5)
    b, a = DetNetBottleneck(projection=True), DetNetBottleneck(projection=False)
    assert b.downsample is not None and a.downsample is None
    assert b.conv2.dilation == (2, 2) and b.conv2.padding == (2, 2)
    # B block minus A block = the 1x1 1024->1024 projection + its BN.
    assert _params(b) - _params(a) == 1024 * 1024 + 2 * 1024


@pytest.mark.parametrize('name', ['hsrnet59', 'hsr_msnet59'])
def test_imagenet_key_map(tmp_path, name):
    """A torchvision-format ResNet-50 file (+ fake fc) loads into stem and layer1-3, tensor by tensor."""
    torch.manual_seed(0)
    state = build_resnet('resnet50').state_dict()
    state['fc.weight'], state['fc.bias'] = torch.randn(1000, 2048), torch.randn(1000)
    path = tmp_path / 'resnet50.pth'
    torch.save(state, str(path))
    model = build_model(_cfg(name, pretrained=str(path)))
    assert not torch.equal(model.backbone.conv1.weight, state['conv1.weight'])   # not loaded at build
    report = model.load_pretrained(str(path))   # build_model never reads MODEL.PRETRAINED; the trainer calls this
    target = model.backbone.state_dict()
    trunk = [k for k in target if k.split('.')[0] in ('conv1', 'bn1', 'layer1', 'layer2', 'layer3')]
    torchvision_named = [k for k in trunk if '.split.' not in k and '.se.' not in k]
    assert sorted(torchvision_named) == report.loaded
    for k in report.loaded:
        assert torch.equal(target[k], state[k]), k
    unused = set(report.unused)
    assert {k for k in state if k.startswith(('layer4.', 'fc.'))} <= unused
    assert not any(k.startswith(('new_layer', 'conv1', 'bn1')) for k in unused)
    if name == 'hsrnet59':
        assert len(unused) == sum(k.startswith(('layer4.', 'fc.')) for k in state)
        assert all(k.startswith(('new_layer4', 'new_layer5')) for k in report.missing)
    else:   # stride-1 blocks have the split instead of conv2/bn2: those ImageNet tensors are reported unused
        assert 'layer1.0.conv2.weight' in unused and 'layer2.0.conv2.weight' in report.loaded
        assert 'layer3.5.bn2.running_mean' in unused and 'layer3.0.bn2.weight' in report.loaded


def test_joints_mse_hand_computed():
    pred = torch.tensor([[[[1., 2.]], [[0., 4.]]], [[[3., 0.]], [[1., 1.]]]])   # (N=2, K=2, 1, 2)
    gt = torch.tensor([[[[0., 2.]], [[0., 0.]]], [[[1., 0.]], [[0., 1.]]]])
    w = torch.tensor([[1., 0.], [1., 1.]])
    # joint 0: sq errors (1, 0) and (4, 0) -> MSE 5/4; joint 1 weighted: (0, 0) and (1, 0) -> 1/4.
    # loss = mean over joints of 0.5 * MSE = (0.5 * 5/4 + 0.5 * 1/4) / 2 = 0.375
    torch.testing.assert_close(joints_mse_loss(pred, gt, w), torch.tensor(0.375))
    torch.testing.assert_close(JointsMSELoss()(pred, gt, w.unsqueeze(-1)), torch.tensor(0.375))
    # unweighted: joint 1 errors (0, 16) and (1, 0) -> 17/4; (0.5 * 5/4 + 0.5 * 17/4) / 2 = 1.375
    torch.testing.assert_close(JointsMSELoss(use_target_weight=False)(pred, gt, w), torch.tensor(1.375))
    with pytest.raises(ValueError, match='shapes differ'):
        joints_mse_loss(pred, gt[:, :1], w)


def test_joints_mse_matches_per_joint_loop():
    """The vectorised loss equals Simple Baselines' per-joint loop of nn.MSELoss on flattened maps."""
    torch.manual_seed(1)
    pred, gt = torch.randn(3, 5, 4, 6), torch.rand(3, 5, 4, 6)
    w = (torch.rand(3, 5, 1) > 0.3).float()
    mse = torch.nn.MSELoss()
    loop = sum(0.5 * mse(pred[:, k].reshape(3, -1) * w[:, k], gt[:, k].reshape(3, -1) * w[:, k])
               for k in range(5)) / 5
    torch.testing.assert_close(joints_mse_loss(pred, gt, w), loop)


@pytest.mark.parametrize('kernel,pads,params', [(4, (1, 0), 16), (3, (1, 1), 9), (2, (0, 0), 4)])
def test_deconv_kernels(kernel, pads, params):
    assert deconv_padding(kernel) == pads
    head = DeconvHead(64, 17, filters=(32, 32), kernels=(kernel, kernel))
    assert tuple(head(torch.randn(2, 64, 8, 6)).shape) == (2, 17, 32, 24)   # each deconv doubles exactly
    assert head.deconv_layers[0].weight.numel() == 64 * 32 * params
    cfg = _cfg('hsrnet59')
    cfg.MODEL.DECONV_KERNEL = kernel
    with torch.device('meta'):
        model = build_model(cfg).eval()
        assert tuple(model(torch.empty(1, 3, 256, 192)).shape) == (1, 17, 64, 48)


def test_deconv_bad_kernel():
    with pytest.raises(ValueError, match='2, 3 or 4'):
        DeconvHead(64, 17, filters=(32,), kernels=(5,))


def test_head_init_and_names():
    head = DeconvHead(64, 17, filters=(32, 32), kernels=(4, 4))
    assert abs(head.final_layer.weight.std().item() - 0.001) < 2e-4
    assert head.final_layer.bias.abs().sum() == 0
    assert canonical_name('HSRNet-59') == 'hsrnet59' and canonical_name('HSR-MSNet-161') == 'hsr_msnet161'
    with pytest.raises(KeyError, match='unknown HSRNet'):
        canonical_name('hsrnet60')
    cfg = _cfg('HSR-MSNet-110')
    assert cfg.MODEL.BACKBONE == 'hsr_msnet110' and cfg.MODEL.PRETRAINED is None


@pytest.mark.parametrize('name,hw', [('hsrnet59', (128, 96)), ('hsr_msnet59', (128, 96)),
                                     ('hsrnet110', (64, 48)), ('hsr_msnet161', (64, 48))])
def test_train_step(name, hw):
    """Training returns the loss dict; the loss equals the target-weighted MSE of the eval output."""
    torch.manual_seed(0)
    model = build_model(_cfg(name))
    x = torch.randn(2, 3, *hw)
    t = {'target': torch.rand(2, 17, hw[0] // 4, hw[1] // 4),
         'target_weight': torch.tensor([[1.0] * 16 + [0.0]] * 2)}
    losses = model.train()(x, t)
    assert set(losses) == {'joints_mse'}
    losses['joints_mse'].backward()
    assert model.head.final_layer.weight.grad.abs().sum() > 0
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    # The last joint has weight 0: its channel of the final conv gets no gradient.
    assert model.head.final_layer.weight.grad[16].abs().sum() == 0


def test_complexity_table():
    from projects.HSRNet.hsrnet.complexity import complexity
    assert complexity('resnet50', (256, 192))[0] == 33_999_697   # Simple Baselines R-50: 34.0 M as published
    params, macs = complexity('hsrnet59', (256, 192))
    # deconvs alone: 16*12*1024 inputs * 256 * 16 + 32*24*256 * 256 * 16; final conv 64*48*17*256
    head = 16 * 12 * 1024 * 256 * 16 + 32 * 24 * 256 * 256 * 16 + 64 * 48 * 17 * 256
    assert params == 22595921 and 6.4e9 < macs < 6.6e9 and macs > head


def test_build_model_checks_shapes():
    cfg = _cfg('hsrnet59')
    cfg.EXP_NAME, cfg.INPUT_SHAPE, cfg.OUTPUT_SHAPE = 'toy', [96, 72], [24, 18]
    with pytest.raises(ValueError, match='toy: HSRNet needs INPUT_SHAPE divisible by 16'):
        build_model(cfg)
    cfg.INPUT_SHAPE = [96, 64]
    with pytest.raises(ValueError, match=r'OUTPUT_SHAPE \[24, 18\] must be INPUT_SHAPE / 4 = \[24, 16\]'):
        build_model(cfg)
    del cfg['INPUT_SHAPE']          # was silently (256, 192)
    with pytest.raises(ValueError, match=r'toy: HSRNet needs INPUT_SHAPE \(h, w\) in the config.*got None'):
        build_model(cfg)


def test_build_never_reads_pretrained(tmp_path):
    """build_model leaves MODEL.PRETRAINED to the trainer (model.load_pretrained), so test.py needs no file."""
    cfg = _cfg('hsrnet59', pretrained=str(tmp_path / 'absent.pth'))
    with torch.device('meta'):
        model = build_model(cfg)
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        model.load_pretrained(cfg.MODEL.PRETRAINED)
