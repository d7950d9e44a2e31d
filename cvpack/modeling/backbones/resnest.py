"""ResNeSt (Zhang et al. 2020) trunk: split-attention bottlenecks, deep stem, avd and avg_down.

The variant is the one MLPE uses (``docs/reference/mlpe_hsrnet_gcpose.md`` §1.2): radix 2, cardinality 1,
bottleneck width 64, deep stem (width 32 for ResNeSt-50, 64 for ResNeSt-101), average-pool
downsampling after the split-attention conv (avd, not avd_first) in the first block of stages 2-4,
and an average-pool + 1x1 conv shortcut (avg_down). No classifier.

Our parameter names are readable (``stem.conv1``, ``layer1.0.conv2.attn_fc1`` ...); the official
ImageNet weights (``resnest50-528c19ca.pth`` / ``resnest101-22405ba7.pth``, Hang Zhang's key names)
load through :func:`official_key_map` + :func:`cvpack.modeling.pretrained.load_mapped`.
"""
import re
from collections import OrderedDict
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..pretrained import LoadReport, load_mapped, load_state_dict


class SplitAttentionConv(nn.Module):
    """Split-attention 3x3 conv (radix splits, attention over the splits), ResNeSt §3.

    Args:
        channels: input and output channels (the group width).
        radix: number of splits; 1 means a sigmoid gate instead of the softmax.
        cardinality: cardinal groups.
        reduction: the attention bottleneck is ``max(channels * radix // reduction, 32)`` wide.
    """

    def __init__(self, channels, radix=2, cardinality=1, reduction=4):
        super().__init__()
        inter = max(channels * radix // reduction, 32)
        self.radix, self.cardinality = radix, cardinality
        self.conv = nn.Conv2d(channels, channels * radix, 3, 1, 1, groups=cardinality * radix, bias=False)
        self.bn = nn.BatchNorm2d(channels * radix)
        self.attn_fc1 = nn.Conv2d(channels, inter, 1, groups=cardinality)
        self.attn_bn = nn.BatchNorm2d(inter)
        self.attn_fc2 = nn.Conv2d(inter, channels * radix, 1, groups=cardinality)

    def forward(self, x):
        """x (N, C, H, W) -> (N, C, H, W): attention-weighted sum of the ``radix`` conv splits."""
        n = x.shape[0]
        x = F.relu(self.bn(self.conv(x)), inplace=True)
        splits = torch.chunk(x, self.radix, dim=1) if self.radix > 1 else (x,)
        gap = F.adaptive_avg_pool2d(sum(splits), 1)
        attn = self.attn_fc2(F.relu(self.attn_bn(self.attn_fc1(gap)), inplace=True))
        if self.radix > 1:
            # (N, card, radix, -1) -> softmax over the radix axis, back to radix-major channel order
            attn = attn.view(n, self.cardinality, self.radix, -1).transpose(1, 2)
            attn = F.softmax(attn, dim=1).reshape(n, -1, 1, 1)
            return sum(a * s for a, s in zip(torch.chunk(attn, self.radix, dim=1), splits))
        return torch.sigmoid(attn) * x


class SplitAttentionBottleneck(nn.Module):
    """1x1 -> split-attention 3x3 (stride 1) -> [3x3/s avg pool if downsampling] -> 1x1, expansion 4."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, radix=2, avd=False):
        super().__init__()
        width = planes  # bottleneck width 64, cardinality 1 -> group width = planes
                        # (docs/reference/mlpe_hsrnet_gcpose.md §1.2)
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = SplitAttentionConv(width, radix=radix)
        # avd: the stride moves from the conv into an average pool *after* it (avd_first=False)
        self.avd = nn.AvgPool2d(3, stride, padding=1) if avd else None
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        """x: (N, inplanes, H, W) -> (N, 4 * planes, H / stride, W / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.conv2(out)
        if self.avd is not None:
            out = self.avd(out)
        out = self.bn3(self.conv3(out))
        return F.relu(out + identity, inplace=True)


def _avg_down(inplanes, outplanes, stride):
    """avg_down shortcut: AvgPool(k = s = stride, ceil, no pad counting) -> 1x1 conv -> BN."""
    return nn.Sequential(OrderedDict([
        ('pool', nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)),
        ('conv', nn.Conv2d(inplanes, outplanes, 1, bias=False)),
        ('bn', nn.BatchNorm2d(outplanes))]))


# One table of variants (timm style): name -> (blocks per stage, deep-stem width).
RESNEST_VARIANTS = {
    'resnest50': ([3, 4, 6, 3], 32),
    'resnest101': ([3, 4, 23, 3], 64),
}


class ResNeSt(nn.Module):
    """ResNeSt trunk without the classifier (docs/reference/mlpe_hsrnet_gcpose.md §1.2).

    Args:
        name: a key of :data:`RESNEST_VARIANTS`.
        radix: split-attention radix (2 in the released models).
    """

    def __init__(self, name='resnest50', radix=2):
        super().__init__()
        if name not in RESNEST_VARIANTS:
            raise KeyError('unknown ResNeSt %r; known: %s' % (name, sorted(RESNEST_VARIANTS)))
        counts, stem = RESNEST_VARIANTS[name]
        self.name = name
        # deep stem: 3x3/2 (3->w), 3x3 (w->w), 3x3 (w->2w), each but the last with BN+ReLU; BN+ReLU; maxpool
        self.stem = nn.Sequential(OrderedDict([
            ('conv1', nn.Conv2d(3, stem, 3, 2, 1, bias=False)), ('bn1', nn.BatchNorm2d(stem)),
            ('relu1', nn.ReLU(inplace=True)),
            ('conv2', nn.Conv2d(stem, stem, 3, 1, 1, bias=False)), ('bn2', nn.BatchNorm2d(stem)),
            ('relu2', nn.ReLU(inplace=True)),
            ('conv3', nn.Conv2d(stem, 2 * stem, 3, 1, 1, bias=False)), ('bn3', nn.BatchNorm2d(2 * stem)),
            ('relu3', nn.ReLU(inplace=True)),
            ('pool', nn.MaxPool2d(3, 2, 1))]))
        inplanes = 2 * stem
        self.out_channels: List[int] = []
        for i, blocks in enumerate(counts):
            planes, stride = 64 * 2 ** i, (1 if i == 0 else 2)
            # avg_down shortcut; stage 1 keeps a kernel-1 pool (shape changes only in channels)
            downsample = _avg_down(inplanes, planes * 4, stride)
            # avd only where the block downsamples: stage 1 is not "is_first" in this variant
            # (docs/reference/mlpe_hsrnet_gcpose.md §1.2)
            layer = [SplitAttentionBottleneck(inplanes, planes, stride, downsample, radix, avd=stride > 1)]
            inplanes = planes * 4
            layer += [SplitAttentionBottleneck(inplanes, planes, 1, None, radix) for _ in range(1, blocks)]
            self.add_module('layer%d' % (i + 1), nn.Sequential(*layer))
            self.out_channels.append(inplanes)
        self._init_weights()

    def _init_weights(self):
        # the official trunk init: kaiming normal (fan_out) convs, BN gamma 1 / beta 0
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x) -> List[torch.Tensor]:
        """Args: x (N, 3, H, W) normalised image.

        Returns: [C2, C3, C4, C5] (strides 4, 8, 16, 32; 256/512/1024/2048 channels), shallowest first
        like :class:`cvpack.modeling.backbones.resnet.ResNet` (the original returned them deepest first).
        """
        x = self.stem(x)
        feats = []
        for i in range(1, 5):
            x = getattr(self, 'layer%d' % i)(x)
            feats.append(x)
        return feats


# Official (Hang Zhang) key names -> ours. Applied in order to the key; the classifier 'fc.*' is skipped.
_OFFICIAL_RULES = [
    (r'^conv1\.0\.', 'stem.conv1.'), (r'^conv1\.1\.', 'stem.bn1.'),
    (r'^conv1\.3\.', 'stem.conv2.'), (r'^conv1\.4\.', 'stem.bn2.'),
    (r'^conv1\.6\.', 'stem.conv3.'), (r'^bn1\.', 'stem.bn3.'),
    (r'\.conv2\.bn0\.', '.conv2.bn.'),
    (r'\.conv2\.fc1\.', '.conv2.attn_fc1.'), (r'\.conv2\.bn1\.', '.conv2.attn_bn.'),
    (r'\.conv2\.fc2\.', '.conv2.attn_fc2.'),
    (r'\.downsample\.1\.', '.downsample.conv.'), (r'\.downsample\.2\.', '.downsample.bn.'),
]


def official_key_map(key: str) -> Optional[str]:
    """Map an official ResNeSt ImageNet key (``conv1.0.weight``, ``layer2.0.conv2.fc1.bias``,
    ``layer3.0.downsample.1.weight`` ...) to our name; None for the classifier (``fc.*``)."""
    if key.startswith('fc.'):
        return None
    for pattern, repl in _OFFICIAL_RULES:
        key = re.sub(pattern, repl, key)
    return key


def load_official_weights(model: ResNeSt, source, strict=True) -> LoadReport:
    """Load official ResNeSt ImageNet weights (local path or URL) into ``model``.

    With ``strict`` a trunk tensor left without a weight or an unused non-classifier tensor raises,
    naming the file and the keys.
    """
    state = load_state_dict(source)
    report = load_mapped(model, state, official_key_map)
    if strict:
        unused = [k for k in report.unused if not k.startswith('fc.')]
        if report.missing or unused:
            raise ValueError('%s does not match %s: missing %s, unused %s'
                             % (source, model.name, report.missing[:5], unused[:5]))
    return report


def build_resnest(name='resnest50', pretrained=None, **kw) -> ResNeSt:
    """Builder for :class:`ResNeSt` variants (see :data:`RESNEST_VARIANTS`); ``pretrained``: official weights."""
    model = ResNeSt(name, **kw)
    if pretrained:
        load_official_weights(model, pretrained)
    return model
