"""HSRNet and HSR-MSNet backbones (docs/reference/mlpe_hsrnet_gcpose.md §2.2, §2.4).

HSRNet = ResNet stem + layer1-3 (torchvision names, output stride 16) followed by two DetNet stages
(``new_layer4``, ``new_layer5``: 3 stride-1 bottlenecks each, 3x3 convs with dilation 2, 1024 channels),
so the pose head needs only two deconvolutions. HSR-MSNet swaps the 3x3 conv of every stride-1
bottleneck for a Res2Net-style hierarchical split (scale 4) and adds an SE block to every bottleneck.

Unlike the released HSR-MSNet code, the split blocks do not build the unused ``conv2``/``bn2``
(7.2 M dead parameters there, which also break DDP without ``find_unused_parameters``), and the
110/161-layer HSR-MSNets build (the original had no table entry for them).
"""
from typing import List

import torch
from torch import nn

from .resnet import ResNet, norm_layer


class SEModule(nn.Module):
    """Squeeze-and-excitation: avg-pool -> 1x1 conv C->C/r (bias) -> ReLU -> 1x1 conv -> sigmoid -> rescale."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x):
        """x (N, C, H, W) -> (N, C, H, W), each channel scaled by its gate in (0, 1)."""
        gate = self.fc2(self.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class HierarchicalConv(nn.Module):
    """Res2Net-style split of a 3x3 conv into ``scale`` groups with hierarchical sums
    (docs/reference/mlpe_hsrnet_gcpose.md §2.4).

    Groups x0..x3: y1 = BN(conv(x1)), y_i = BN(conv(x_i + y_{i-1})) for i >= 2 (pre-ReLU sums), and
    y0 = x0 (ResNet blocks) or y0 = BN(conv(x0)) with no sum (DetNet blocks, ``convolve_first``).
    Output: ReLU(concat(y0..y3)), as the original (its separate ReLUs on y1..y3 are the same thing).
    """

    def __init__(self, width, scale=4, dilation=1, convolve_first=False, norm='BN', init_std=None):
        super().__init__()
        if width % scale:
            raise ValueError('split width %d is not divisible by scale %d' % (width, scale))
        group = width // scale
        self.scale = scale
        self.convolve_first = convolve_first
        n = scale if convolve_first else scale - 1
        self.convs = nn.ModuleList(
            nn.Conv2d(group, group, 3, 1, dilation, dilation=dilation, bias=False) for _ in range(n))
        self.bns = nn.ModuleList(norm_layer(norm)(group) for _ in range(n))
        self.relu = nn.ReLU(inplace=True)
        self.init_std = init_std

    def reset_parameters(self):
        """The original initialised the split convs N(0, 0.001) except in DetNet A blocks (default init)."""
        for conv in self.convs:
            if self.init_std is None:
                conv.reset_parameters()
            else:
                nn.init.normal_(conv.weight, std=self.init_std)
        for bn in self.bns:
            if isinstance(bn, nn.BatchNorm2d):
                nn.init.ones_(bn.weight)
                nn.init.zeros_(bn.bias)

    def forward(self, x):
        """x (N, width, H, W) -> (N, width, H, W) (stride 1, same size)."""
        xs = torch.chunk(x, self.scale, dim=1)
        k = 0
        if self.convolve_first:
            ys = [self.bns[0](self.convs[0](xs[0]))]
            k = 1
        else:
            ys = [xs[0]]
        prev = None
        for i in range(1, self.scale):
            inp = xs[i] if prev is None else xs[i] + prev
            prev = self.bns[k](self.convs[k](inp))
            ys.append(prev)
            k += 1
        return self.relu(torch.cat(ys, dim=1))


class SplitSEBottleneck(nn.Module):
    """HSR-MSNet's ResNet bottleneck (docs/reference/mlpe_hsrnet_gcpose.md §2.4), a drop-in block for
    :func:`resnet.make_layer`.

    stride 1: 1x1 reduce + BN + ReLU -> hierarchical split (4 groups, y0 passed through) -> 1x1 expand + BN
    -> SE -> + shortcut -> ReLU. stride 2: the plain torchvision 3x3 stride-2 ``conv2``/``bn2`` instead of
    the split. Keys conv1/bn1/(conv2/bn2)/conv3/bn3/downsample match torchvision, so ImageNet weights load.
    """
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, norm='BN'):
        super().__init__()
        Norm = norm_layer(norm)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = Norm(planes)
        if stride == 1:
            self.split = HierarchicalConv(planes, norm=norm, init_std=0.001)
        else:
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = Norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = Norm(planes * 4)
        self.se = SEModule(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        """x (N, inplanes, H, W) -> (N, 4 * planes, H / stride, W / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        if hasattr(self, 'split'):
            out = self.split(out)
        else:
            out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


class DetNetBottleneck(nn.Module):
    """DetNet stage block (docs/reference/mlpe_hsrnet_gcpose.md §2.2): stride 1, dilation-2 3x3, width 256, 1024
    channels in and out.

    ``projection`` (the first, "B" block) adds a 1x1 conv + BN shortcut although the shapes match, as
    the original. ``multiscale`` (HSR-MSNet) replaces the dilated 3x3 with a 4-group split convolving all
    four groups, and adds SE before the residual add.
    """

    def __init__(self, channels=1024, width=256, projection=False, dilation=2, multiscale=False, norm='BN'):
        super().__init__()
        Norm = norm_layer(norm)
        self.conv1 = nn.Conv2d(channels, width, 1, bias=False)
        self.bn1 = Norm(width)
        if multiscale:
            # Original init: N(0, 0.001) split convs in B blocks, PyTorch default in A blocks
            # (docs/reference/mlpe_hsrnet_gcpose.md §2.4).
            self.split = HierarchicalConv(width, dilation=dilation, convolve_first=True, norm=norm,
                                          init_std=0.001 if projection else None)
        else:
            self.conv2 = nn.Conv2d(width, width, 3, 1, dilation, dilation=dilation, bias=False)
            self.bn2 = Norm(width)
        self.conv3 = nn.Conv2d(width, channels, 1, bias=False)
        self.bn3 = Norm(channels)
        self.se = SEModule(channels) if multiscale else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), Norm(channels)) \
            if projection else None

    def forward(self, x):
        """x (N, 1024, H, W) -> (N, 1024, H, W)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        if self.se is not None:
            out = self.se(self.bn3(self.conv3(self.split(out))))
        else:
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_detnet_stage(blocks=3, multiscale=False, norm='BN'):
    """One DetNet stage: a projection ("B") block then identity ("A") blocks."""
    return nn.Sequential(*[DetNetBottleneck(projection=(i == 0), multiscale=multiscale, norm=norm)
                           for i in range(blocks)])


# Variant table (timm style): name -> (ResNet depth for the stem + layer1-3, multi-scale blocks).
# 59/110/161 = 1 + 3 * (layer1-3 blocks + 3 + 3) + 1 conv layers (docs/reference/mlpe_hsrnet_gcpose.md §2.2).
HSRNET_VARIANTS = {
    'hsrnet59': ('resnet50', False),
    'hsrnet110': ('resnet101', False),
    'hsrnet161': ('resnet152', False),
    'hsr_msnet59': ('resnet50', True),
    'hsr_msnet110': ('resnet101', True),
    'hsr_msnet161': ('resnet152', True),
}


def canonical_name(name: str) -> str:
    """'HSRNet-59' -> 'hsrnet59', 'HSR-MSNet-110' -> 'hsr_msnet110' (the paper's spelling as the table's)."""
    key = name.lower().replace('hsr-msnet', 'hsr_msnet').replace('-', '')
    if key not in HSRNET_VARIANTS:
        raise KeyError('unknown HSRNet %r; known: %s' % (name, sorted(HSRNET_VARIANTS)))
    return key


class HSRNet(ResNet):
    """HSRNet / HSR-MSNet backbone: ResNet stem + layer1-3, then DetNet stages ``new_layer4/5``.

    Keys of the stem and layer1-3 are torchvision's (ImageNet ResNet-50/101/152 weights load by name);
    the DetNet stages keep the original's names and start from their init.
    """

    def __init__(self, name='hsrnet59', norm='BN', detnet_blocks=3):
        name = canonical_name(name)
        depth_name, multiscale = HSRNET_VARIANTS[name]
        super().__init__(depth_name, num_layers=3, norm=norm, block=SplitSEBottleneck if multiscale else None)
        self.name, self.multiscale = name, multiscale
        self.new_layer4 = make_detnet_stage(detnet_blocks, multiscale, norm)
        self.new_layer5 = make_detnet_stage(detnet_blocks, multiscale, norm)
        self.out_channels: List[int] = [1024]     # forward returns the stride-16 map only
        # ResNet's kaiming init touched every conv of layer1-3; the original left the SE convs at
        # PyTorch's default and drew the split convs from N(0, 0.001) (docs/reference/mlpe_hsrnet_gcpose.md §2.4).
        for m in self.modules():
            if isinstance(m, HierarchicalConv):
                m.reset_parameters()
            elif isinstance(m, SEModule):
                m.fc1.reset_parameters()
                m.fc2.reset_parameters()

    def forward(self, x):
        """Args: x (N, 3, H, W). Returns: (N, 1024, H/16, W/16) features (stride 16, ceil for odd sizes)."""
        c4 = super().forward(x)[-1]
        return self.new_layer5(self.new_layer4(c4))


def imagenet_key_map(key):
    """torchvision ResNet key -> HSRNet key: stem and layer1-3 by name; layer4 and fc have no place."""
    if key.startswith(('fc.', 'layer4.')):
        return None
    return key


def build_hsrnet(name='hsrnet59', **kw) -> HSRNet:
    """Builder for :class:`HSRNet` variants (see :data:`HSRNET_VARIANTS`)."""
    return HSRNet(name, **kw)
