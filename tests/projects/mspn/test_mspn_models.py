"""MSPN exps: original names/shapes/order, params/MACs (docs/reference/rsn_mspn.md §1.5, §8), ImageNet key map (§1.8,
§9.5); every exp's train/eval in tests/projects/test_all_exps.py."""
import glob

import pytest
import torch

from cvpack.exp import load_exp
from cvpack.modeling.backbones import build_resnet
from cvpack.tools.complexity import complexity
from projects.MSPN.mspn import build_model
from projects.MSPN.mspn.imagenet import load_imagenet_resnet, resnet_key_map
from tests.projects.megvii_helpers import SMALL, assert_matches_ref, build, exp_dir, one_thread


def test_state_dict_matches_original():
    _, model = build('MSPN', 'mspn.2xstg.coco', device='meta')
    assert_matches_ref(model, 'MSPN2stg')


@pytest.mark.parametrize('exp,params,gmacs', [
    ('mspn.1xstg.coco', 25.14e6, 5.07), ('mspn.2xstg.coco', 56867032, 11.263), ('mspn.3xstg.coco', 88.59e6, 17.45),
    ('mspn.4xstg.coco', 120.32e6, 23.64), ('mspn.4xstg.384x288.coco', 120.32e6, 23.64 * 2.25)])
def test_params_and_macs(exp, params, gmacs):
    res = complexity(exp_dir('MSPN', exp))
    assert res['params'] == pytest.approx(params, rel=1e-3 if isinstance(params, float) else 0)
    assert res['gmacs'] == pytest.approx(gmacs, rel=2e-3)


def test_every_exp_is_a_resnet50_mspn():
    """Train/eval of every exp: tests/projects/test_all_exps.py; here what only MSPN promises."""
    for d in glob.glob(exp_dir('MSPN', '*')):
        cfg, _ = load_exp(d, build=False)
        assert cfg.MODEL.BACKBONE == 'Res-50' and cfg.MODEL.STAGE_NUM in (1, 2, 3, 4), d


def _torchvision_resnet50_state():
    """A torchvision-format ResNet-50 state dict (our torchvision-named ResNet + a fake fc head)."""
    torch.manual_seed(0)
    state = build_resnet('resnet50').state_dict()
    for k, v in state.items():   # non-default BN values and buffers; convs keep their random init; stays finite
        if k.startswith('bn') or '.bn' in k or 'downsample.1' in k:
            if k.endswith('weight'):
                v.uniform_(0.2, 0.5)
            elif k.endswith(('bias', 'running_mean')):
                v.normal_(0, 0.1)
            elif k.endswith('running_var'):
                v.uniform_(0.5, 1.5)
    state['fc.weight'] = torch.randn(1000, 2048)
    state['fc.bias'] = torch.randn(1000)
    return state


def test_key_map():
    key_map = resnet_key_map(2)
    assert key_map('conv1.weight') == ['top.conv.conv.weight']
    assert key_map('bn1.running_var') == ['top.conv.bn.running_var']
    assert key_map('layer3.5.bn2.bias') == ['stage%d.downsample.layer3.5.conv_bn_relu2.bn.bias' % s for s in (0, 1)]
    assert key_map('layer1.0.downsample.0.weight') == ['stage0.downsample.layer1.0.downsample.conv.weight',
                                                       'stage1.downsample.layer1.0.downsample.conv.weight']
    assert key_map('layer1.0.downsample.1.num_batches_tracked')[1] == \
        'stage1.downsample.layer1.0.downsample.bn.num_batches_tracked'
    assert key_map('fc.weight') is None


@one_thread()
def test_imagenet_init_loads_every_stage(tmp_path):
    state = _torchvision_resnet50_state()
    path = tmp_path / 'resnet50.pth'
    torch.save(state, path)
    cfg, model = build('MSPN', 'mspn.2xstg.coco', SMALL['COCO'] + ['MODEL.PRETRAINED', str(path)])
    stem = resnet_key_map(2)('conv1.weight')[0]
    assert not torch.equal(model.state_dict()[stem], state['conv1.weight'].flip(1))   # build_model reads nothing
    model.load_pretrained(str(path))      # what the trainer calls when a run starts from scratch
    ours = model.state_dict()
    key_map = resnet_key_map(2)
    n_loaded = 0
    for src, tensor in state.items():
        for dst in key_map(src) or []:
            want = tensor.flip(1) if src == 'conv1.weight' else tensor   # BGR input: stem channels reversed
            assert torch.equal(ours[dst], want), (src, dst)
            n_loaded += 1
            if dst.endswith('conv.weight'):
                assert not ours[dst[:-len('weight')] + 'bias'].any(), dst   # torchvision convs have no bias
    assert n_loaded == 2 * (len(state) - 2) - 6   # all but fc, in both stages; the stem (6 tensors) once
    # the full report, as build_model would log it
    _, fresh = build('MSPN', 'mspn.2xstg.coco', SMALL['COCO'])
    report = load_imagenet_resnet(fresh, state)
    assert sorted(report.unused) == ['fc.bias', 'fc.weight'] and not report.shape_mismatch
    assert not [k for k in report.missing if '.downsample.layer' in k or k.startswith('top.')]
    assert all('.upsample.' in k for k in report.missing)
    assert {k.split('.')[0] for k in report.loaded} == {'top', 'stage0', 'stage1'}
    # loaded = the tensors copied from the file (the zeroed conv biases were counted too: 53 more "loaded")
    copied = sorted(dst for src in state for dst in key_map(src) or [])
    assert report.loaded == copied and len(copied) == n_loaded
    biases = sorted(k[:-len('weight')] + 'bias' for k in copied if k.endswith('conv.weight'))
    assert report.initialised == biases and len(biases) == 1 + 2 * 52   # the stem once, 52 encoder convs a stage
    assert not set(biases) & (set(report.loaded) | set(report.missing))
    assert report.summary().startswith('loaded %d tensors;' % n_loaded)
    assert report.summary().endswith('; %d set by the loader (not in the file)' % len(biases))
    # the RGB flip is optional (COLOR_RGB pipelines)
    rgb = load_imagenet_resnet(fresh, state, bgr_input=False)
    assert torch.equal(fresh.top.conv.conv.weight, state['conv1.weight']) and rgb.summary() == report.summary()


@one_thread()
def test_imagenet_encoder_equals_torchvision_resnet():
    """Eval mode: stage0's loaded encoder computes what the torchvision-format ResNet-50 computes."""
    state = _torchvision_resnet50_state()
    _, model = build('MSPN', 'mspn.1xstg.coco', SMALL['COCO'])
    load_imagenet_resnet(model, state, bgr_input=False)
    resnet = build_resnet('resnet50')
    resnet.load_state_dict({k: v for k, v in state.items() if not k.startswith('fc.')})
    x = torch.randn(1, 3, 64, 48)
    model.eval()
    resnet.eval()
    with torch.no_grad():
        ours = model.stage0.downsample(model.top(x))[::-1]
        ref = resnet(x)
    for a, b in zip(ours, ref):
        assert torch.isfinite(b).all() and b.abs().max() > 0
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_missing_pretrained_file_is_named(tmp_path):
    """build_model never touches MODEL.PRETRAINED (test.py / resumes need no file); load_pretrained names it."""
    cfg, _ = build('MSPN', 'mspn.1xstg.coco', SMALL['COCO'] + ['MODEL.PRETRAINED', str(tmp_path / 'nope.pth')],
                   device='meta')
    with torch.device('meta'):
        model = build_model(cfg)
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        model.load_pretrained(cfg.MODEL.PRETRAINED)
