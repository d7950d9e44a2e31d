"""ResNet + FPN backbone (Detectron2 flavour, docs/reference/mlpe_hsrnet_gcpose.md §4.1 "Backbone", "FPN")."""
import torch.nn.functional as F
from torch import nn

from cvpack.modeling.backbones.resnet import build_resnet


def c2_xavier_fill(module):
    """Detectron2's "c2_xavier_fill": Kaiming-uniform with a = 1, bias 0."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class FPN(nn.Module):
    """Lateral 1x1 + output 3x3 convs (bias, no norm), nearest x2 top-down sum, P6 = maxpool(k1, s2) of P5.

    Args: in_channels of C2..C5, out_channels (256). Forward: list [C2..C5] -> dict p2..p6.
    """

    strides = (4, 8, 16, 32, 64)

    def __init__(self, in_channels=(256, 512, 1024, 2048), out_channels=256):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, 1, 1) for _ in in_channels)
        for m in list(self.lateral) + list(self.output):
            c2_xavier_fill(m)

    def forward(self, feats):
        """Args:
            feats: [C2, C3, C4, C5], C_l (N, C_in_l, H / s, W / s) at strides s = 4, 8, 16, 32 of the padded
                input (H, W multiples of 32, so each level is exactly half the previous one).
        Returns:
            {'p2'..'p6'}: (N, out_channels, H / s, W / s) for s = 4 .. 64; feature cell (i, j) of level s covers
            input pixels [s * j, s * (j + 1)) x [s * i, s * (i + 1)) (P6: stride-2 subsample of P5).
        """
        prev = self.lateral[-1](feats[-1])
        outs = [self.output[-1](prev)]
        for i in range(len(feats) - 2, -1, -1):
            prev = self.lateral[i](feats[i]) + F.interpolate(prev, scale_factor=2, mode='nearest')
            outs.insert(0, self.output[i](prev))
        outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return {'p%d' % (i + 2): o for i, o in enumerate(outs)}


class ResNetFPN(nn.Module):
    """ResNet (FrozenBN, optional stride-in-1x1, freeze_at) followed by FPN; ``body`` keeps torchvision names."""

    def __init__(self, depth='resnet50', stride_in_1x1=True, freeze_at=2, norm='FrozenBN', out_channels=256):
        super().__init__()
        self.body = build_resnet(depth, norm=norm, stride_in_1x1=stride_in_1x1, freeze_at=freeze_at)
        self.fpn = FPN(tuple(self.body.out_channels), out_channels)

    def forward(self, x):
        """Args: x (N, 3, H, W) normalised input batch (per cfg.INPUT), H and W multiples of 32.
        Returns: {'p2'..'p6'}: (N, 256, H / s, W / s), s = 4, 8, 16, 32, 64 (input-pixel grid, see FPN.forward).
        """
        return self.fpn(self.body(x))
