"""ResNeSt trunk: shapes, parameter counts (docs/reference/mlpe_hsrnet_gcpose.md §1.2), split attention by hand,
official key map."""
import pytest
import torch

from cvpack.modeling.backbones import RESNEST_VARIANTS, build_resnest
from cvpack.modeling.backbones.resnest import SplitAttentionConv, load_official_weights, official_key_map


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()   # two threads oversubscribe the shared CI cores
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope='module')
def r50():
    torch.manual_seed(0)
    return build_resnest('resnest50')


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_shapes_and_strides(r50):
    r50.eval()
    with torch.no_grad():
        feats = r50(torch.randn(1, 3, 128, 96))
    assert [tuple(f.shape) for f in feats] == [(1, 256, 32, 24), (1, 512, 16, 12), (1, 1024, 8, 6), (1, 2048, 4, 3)]
    assert r50.out_channels == [256, 512, 1024, 2048]


def test_parameter_counts(r50):
    # docs/reference/mlpe_hsrnet_gcpose.md §1.2 [VERIFIED]: ResNeSt-50 trunk 25.4 M (27.5 M with the 2048x1000 fc),
    # ResNeSt-101 46.2 M
    n50 = _params(r50)
    assert round(n50 / 1e6, 1) == 25.4
    assert round((n50 + 2048 * 1000 + 1000) / 1e6, 1) == 27.5
    assert round(_params(build_resnest('resnest101')) / 1e6, 1) == 46.2
    assert set(RESNEST_VARIANTS) == {'resnest50', 'resnest101'}
    with pytest.raises(KeyError, match='resnest18'):
        build_resnest('resnest18')


def test_structure_deep_stem_avd_avg_down(r50):
    assert tuple(r50.stem.conv1.weight.shape) == (32, 3, 3, 3) and r50.stem.conv1.stride == (2, 2)
    assert tuple(r50.stem.conv3.weight.shape) == (64, 32, 3, 3)
    r101 = build_resnest('resnest101')
    assert tuple(r101.stem.conv3.weight.shape) == (128, 64, 3, 3)
    assert r50.layer1[0].avd is None and r50.layer1[0].downsample.pool.kernel_size == 1
    for i in (2, 3, 4):
        block = getattr(r50, 'layer%d' % i)[0]
        assert block.conv2.conv.stride == (1, 1) and block.avd.stride == 2   # stride in the pool after the conv
        assert block.downsample.pool.kernel_size == 2 and block.downsample.conv.stride == (1, 1)


def test_split_attention_by_hand():
    torch.manual_seed(1)
    m = SplitAttentionConv(8, radix=2).eval()
    for bn in (m.bn, m.attn_bn):   # non-trivial BN statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 8, 5, 4)
    with torch.no_grad():
        y = torch.relu(m.bn(m.conv(x)))
        s1, s2 = y[:, :8], y[:, 8:]
        gap = (s1 + s2).mean(dim=(2, 3), keepdim=True)
        a = m.attn_fc2(torch.relu(m.attn_bn(m.attn_fc1(gap))))
        w1 = torch.exp(a[:, :8]) / (torch.exp(a[:, :8]) + torch.exp(a[:, 8:]))
        expected = w1 * s1 + (1 - w1) * s2
        assert torch.allclose(m(x), expected, atol=1e-5)
    # inter width = max(C * radix / 4, 32)
    assert m.attn_fc1.out_channels == 32 and SplitAttentionConv(128).attn_fc1.out_channels == 64


def _official_keys(counts=(3, 4, 6, 3)):
    """Official ResNeSt key names (Hang Zhang's resnet.py / splat.py), written out independently of the map."""
    keys = ['conv1.0.weight', 'conv1.3.weight', 'conv1.6.weight']
    def bn(p):
        return [p + s for s in ('.weight', '.bias', '.running_mean', '.running_var', '.num_batches_tracked')]

    keys += bn('conv1.1') + bn('conv1.4') + bn('bn1')
    for i, n in enumerate(counts):
        for b in range(n):
            p = 'layer%d.%d.' % (i + 1, b)
            keys += [p + 'conv1.weight', p + 'conv2.conv.weight', p + 'conv2.fc1.weight', p + 'conv2.fc1.bias',
                     p + 'conv2.fc2.weight', p + 'conv2.fc2.bias', p + 'conv3.weight']
            keys += bn(p + 'bn1') + bn(p + 'conv2.bn0') + bn(p + 'conv2.bn1') + bn(p + 'bn3')
            if b == 0:
                keys += [p + 'downsample.1.weight'] + bn(p + 'downsample.2')
    return keys + ['fc.weight', 'fc.bias']


def test_official_key_map_loads_every_tensor(r50, tmp_path):
    target = r50.state_dict()
    official_shapes = {'conv1.0.weight': (32, 3, 3, 3), 'conv1.6.weight': (64, 32, 3, 3), 'bn1.weight': (64,),
                       'layer1.0.conv2.conv.weight': (128, 32, 3, 3), 'layer1.0.conv2.fc1.weight': (32, 64, 1, 1),
                       'layer1.0.conv2.fc2.weight': (128, 32, 1, 1), 'layer1.0.downsample.1.weight': (256, 64, 1, 1),
                       'layer4.2.conv2.fc1.bias': (256,), 'fc.weight': (1000, 2048)}
    g = torch.Generator().manual_seed(3)
    state = {}
    for k in _official_keys():
        if k.endswith('num_batches_tracked'):
            state[k] = torch.tensor(7)
        elif k.startswith('fc.'):
            state[k] = torch.randn(official_shapes.get(k, (1000,)), generator=g)
        else:
            state[k] = torch.randn(target[official_key_map(k)].shape, generator=g)
    for k, shape in official_shapes.items():
        assert tuple(state[k].shape) == shape, k
    path = tmp_path / 'resnest50-test.pth'
    torch.save(state, path)
    model = build_resnest('resnest50', pretrained=str(path))
    report = load_official_weights(build_resnest('resnest50'), str(path))
    assert report.missing == [] and sorted(report.unused) == ['fc.bias', 'fc.weight']
    assert len(report.loaded) == len(target) == len(state) - 2
    loaded = model.state_dict()
    for k, v in state.items():
        if not k.startswith('fc.'):
            assert torch.equal(loaded[official_key_map(k)], v), k
    # a few pairs spelled out, so a consistent-but-wrong map cannot pass
    assert torch.equal(model.stem.conv1.weight, state['conv1.0.weight'])
    assert torch.equal(model.stem.bn3.running_var, state['bn1.running_var'])
    assert torch.equal(model.layer2[0].conv2.attn_fc1.bias, state['layer2.0.conv2.fc1.bias'])
    assert torch.equal(model.layer2[0].conv2.bn.weight, state['layer2.0.conv2.bn0.weight'])
    assert torch.equal(model.layer3[0].downsample.bn.bias, state['layer3.0.downsample.2.bias'])

    del state['layer4.2.conv3.weight']
    torch.save(state, path)
    with pytest.raises(ValueError, match='layer4.2.conv3.weight'):
        build_resnest('resnest50', pretrained=str(path))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        build_resnest('resnest50', pretrained=str(tmp_path / 'nope.pth'))
