"""ResNet with torchvision parameter names (``conv1/bn1/layer1..4``), written in plain torch.

Options cover what the projects need: bottleneck or basic blocks, the MSRA/Detectron2 "stride in the
1x1 conv" variant (GCPose's R-50/R-101), frozen BatchNorm, and stopping after any layer (HSRNet keeps
layers 1-3). torchvision weights load with ``strict=True`` when the variant is torchvision's.
"""
from typing import List, Sequence

import torch
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (buffers, not parameters), as Detectron2.

    Keeps BatchNorm's key names, so a BatchNorm state dict loads into it unchanged.
    """

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.eps = eps
        for name, value in (('weight', 1.0), ('bias', 0.0), ('running_mean', 0.0), ('running_var', 1.0)):
            self.register_buffer(name, torch.full((num_features,), value))
        self.register_buffer('num_batches_tracked', torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        """x: (N, C, H, W), any float dtype -> same shape and dtype: ``(x - mean) / sqrt(var + eps) * w + b``."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)


def norm_layer(kind):
    return {'BN': nn.BatchNorm2d, 'FrozenBN': FrozenBatchNorm2d}[kind]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, norm='BN'):
        super().__init__()
        Norm = norm_layer(norm)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = Norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = Norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        """x: (N, inplanes, H, W) -> (N, planes, H / stride, W / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's v1.5 bottleneck (stride in the 3x3), or v1 (stride in the 1x1) with ``stride_in_1x1``."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, norm='BN', stride_in_1x1=False, dilation=1):
        super().__init__()
        Norm = norm_layer(norm)
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, s1, bias=False)
        self.bn1 = Norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, s3, dilation, dilation=dilation, bias=False)
        self.bn2 = Norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = Norm(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        """x: (N, inplanes, H, W) -> (N, 4 * planes, H / stride, W / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_layer(block, inplanes, planes, blocks, stride=1, norm='BN', **block_kw):
    """One ResNet layer (``nn.Sequential`` of blocks, torchvision names); returns (layer, out_channels)."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
            norm_layer(norm)(planes * block.expansion))
    layers = [block(inplanes, planes, stride, downsample, norm=norm, **block_kw)]
    inplanes = planes * block.expansion
    layers += [block(inplanes, planes, norm=norm, **block_kw) for _ in range(1, blocks)]
    return nn.Sequential(*layers), inplanes


# torchvision's ImageNet weights (IMAGENET1K_V1) for MODEL.PRETRAINED, one table for every project; read only
# when a training run starts from scratch. ResNet-101/152: the exact files of the original HSRNet yamls
# (docs/reference/mlpe_hsrnet_gcpose.md §2.5). Offline: set MODEL.PRETRAINED to a local copy's path.
TORCHVISION_URLS = {
    'resnet50': 'https://download.pytorch.org/models/resnet50-0676ba61.pth',
    'resnet101': 'https://download.pytorch.org/models/resnet101-5d3b4d8f.pth',
    'resnet152': 'https://download.pytorch.org/models/resnet152-b121ed2d.pth',
}

# One table of variants (timm style): name -> (block, blocks per layer).
RESNET_VARIANTS = {
    'resnet18': (BasicBlock, [2, 2, 2, 2]),
    'resnet34': (BasicBlock, [3, 4, 6, 3]),
    'resnet50': (Bottleneck, [3, 4, 6, 3]),
    'resnet101': (Bottleneck, [3, 4, 23, 3]),
    'resnet152': (Bottleneck, [3, 8, 36, 3]),
}


class ResNet(nn.Module):
    """ResNet trunk without the classifier.

    Args:
        depth_name: a key of :data:`RESNET_VARIANTS`.
        num_layers: keep ``layer1..layer{num_layers}`` (HSRNet uses 3).
        norm: 'BN' or 'FrozenBN'.
        stride_in_1x1: MSRA/Detectron2 bottleneck variant (Bottleneck only; basic blocks have no 1x1 conv, as in
            Detectron2).
        freeze_at: 0 = train everything; 1 = freeze the stem; k>1 = also freeze layer1..layer{k-1} (Detectron2).
        block: optional block class replacing the variant's (same ``make_layer`` signature and
            ``expansion``), e.g. HSR-MSNet's split+SE bottleneck; the depth table stays the variant's.
    """

    def __init__(self, depth_name='resnet50', num_layers=4, norm='BN', stride_in_1x1=False, freeze_at=0,
                 block=None):
        super().__init__()
        variant_block, counts = RESNET_VARIANTS[depth_name]
        block = block or variant_block
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = norm_layer(norm)(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        self.out_channels: List[int] = []
        kw = {'stride_in_1x1': stride_in_1x1} if block is Bottleneck else {}
        for i in range(num_layers):
            layer, inplanes = make_layer(block, inplanes, 64 * 2 ** i, counts[i], 1 if i == 0 else 2, norm, **kw)
            self.add_module('layer%d' % (i + 1), layer)
            self.out_channels.append(inplanes)
        self.num_layers = num_layers
        self._init_weights()
        self._freeze(freeze_at)

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _freeze(self, freeze_at):
        frozen = []
        if freeze_at >= 1:
            frozen += [self.conv1, self.bn1]
        frozen += [getattr(self, 'layer%d' % i) for i in range(1, min(freeze_at, self.num_layers + 1))]
        for m in frozen:
            for p in m.parameters():
                p.requires_grad_(False)

    def forward(self, x) -> Sequence[torch.Tensor]:
        """Args: x (N,3,H,W). Returns: list of layer outputs [C2, C3, ...] at strides 4, 8, 16, 32."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for i in range(1, self.num_layers + 1):
            x = getattr(self, 'layer%d' % i)(x)
            feats.append(x)
        return feats


def build_resnet(name='resnet50', **kw) -> ResNet:
    """Builder for :class:`ResNet` variants (see :data:`RESNET_VARIANTS`)."""
    if name not in RESNET_VARIANTS:
        raise KeyError('unknown ResNet %r; known: %s' % (name, sorted(RESNET_VARIANTS)))
    return ResNet(name, **kw)
