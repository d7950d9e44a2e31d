"""MLPE's multi-level prediction network (``docs/reference/mlpe_hsrnet_gcpose.md`` §1.3).

CPN's GlobalNet analogue: C5 lateral + a C5 context ("feature retention") branch, upsampled three
times to strides 16/8/4, one supervised heatmap head per level. Fixes of the released code
(docs/reference/mlpe_hsrnet_gcpose.md §1.11): the context branch uses the actual C5 size (the original hard-coded 12x9,
i.e. 384x288 only), and the C4-C2 laterals the original built but never called are an option (``lateral_skips``), not
built when off.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn_relu(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ContextFusion(nn.Module):
    """Ratio-invariant adaptive pooling of C5 + adaptive spatial fusion (AugFPN-style,
    docs/reference/mlpe_hsrnet_gcpose.md §1.3-1).

    Works at any C5 size: each ratio r pools C5 to (max(1, floor(h r)), max(1, floor(w r))).
    """

    def __init__(self, in_channels=2048, channels=256, ratios=(0.1, 0.2, 0.3)):
        super().__init__()
        self.ratios = tuple(ratios)
        self.reduce = nn.ModuleList(nn.Conv2d(in_channels, channels, 1) for _ in self.ratios)
        n = len(self.ratios)
        self.weight_net = nn.Sequential(nn.Conv2d(channels * n, channels, 1), nn.ReLU(inplace=True),
                                        nn.Conv2d(channels, n, 3, padding=1))

    def pooled_sizes(self, h, w):
        # int() of the product (floor), as the original's ratio pooling; at least one cell
        return [(max(1, int(h * r)), max(1, int(w * r))) for r in self.ratios]

    def forward(self, c5):
        """c5 (N, Cin, h, w) -> fused context (N, 256, h, w) on the C5 grid."""
        h, w = c5.shape[-2:]
        maps = [F.interpolate(conv(F.adaptive_avg_pool2d(c5, size)), size=(h, w), mode='bilinear',
                              align_corners=True)
                for conv, size in zip(self.reduce, self.pooled_sizes(h, w))]
        weights = torch.sigmoid(self.weight_net(torch.cat(maps, dim=1)))  # (N, n, h, w)
        return sum(weights[:, j:j + 1] * m for j, m in enumerate(maps))


class Upsample2x(nn.Module):
    """x2 upsampling of a 256-ch level: 'deconv' = ConvTranspose 4x4/2 + BN, no ReLU (MLPE,
    docs/reference/mlpe_hsrnet_gcpose.md §1.3-3); 'bilinear' = bilinear x2 (align_corners) + 1x1 conv (bias) + BN (CPN
    GlobalNet, the "BI" ablation)."""

    def __init__(self, channels=256, mode='deconv'):
        super().__init__()
        if mode not in ('deconv', 'bilinear'):
            raise ValueError('MODEL.UPSAMPLE must be deconv or bilinear, got %r' % mode)
        self.mode = mode
        if mode == 'deconv':
            self.conv = nn.ConvTranspose2d(channels, channels, 4, 2, 1, bias=False)
        else:
            self.conv = nn.Conv2d(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        """x: (N, C, h, w) -> (N, C, 2h, 2w) (deconv 4x4/2, or bilinear x2 then 1x1 conv), then BN."""
        if self.mode == 'bilinear':
            x = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True)
        return self.bn(self.conv(x))


class PredictHead(nn.Module):
    """1x1 conv + BN + ReLU -> kxk conv to K -> bilinear to the output size -> BN(K)
    (docs/reference/mlpe_hsrnet_gcpose.md §1.3-4)."""

    def __init__(self, channels, num_joints, kernel=3):
        super().__init__()
        self.body = _conv_bn_relu(channels, channels)
        self.pred = nn.Conv2d(channels, num_joints, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(num_joints)

    def forward(self, x, output_hw):
        """x: (N, C, h, w) level feature -> (N, K, *output_hw) heatmaps on the stride-4 output grid."""
        x = F.interpolate(self.pred(self.body(x)), size=output_hw, mode='bilinear', align_corners=True)
        return self.bn(x)


class MultiLevelNet(nn.Module):
    """Args:
        in_channels: backbone channels deepest first, (C5, C4, C3, C2).
        num_joints: K.
        feature_retention: build the C5 context branch.
        pred_kernel: kernel of the heatmap convs (the "receptive field" ablation, 3 as released).
        upsample: 'deconv' (released) or 'bilinear'.
        lateral_skips: add CPN-style 1x1 laterals of C4/C3/C2 to the upsampled levels (off as released).
    """

    def __init__(self, in_channels=(2048, 1024, 512, 256), num_joints=17, channels=256,
                 feature_retention=True, pred_kernel=3, upsample='deconv', lateral_skips=False):
        super().__init__()
        self.lateral5 = _conv_bn_relu(in_channels[0], channels)
        self.context = ContextFusion(in_channels[0], channels) if feature_retention else None
        self.laterals = nn.ModuleList(_conv_bn_relu(c, channels) for c in in_channels[1:]) if lateral_skips else None
        self.ups = nn.ModuleList(Upsample2x(channels, upsample) for _ in in_channels[1:])
        self.heads = nn.ModuleList(PredictHead(channels, num_joints, pred_kernel) for _ in in_channels)
        self._init_weights()

    def _init_weights(self):
        # the original: Conv2d ~ N(0, sqrt(2 / (k^2 C_out))), bias 0; BN 1/0; ConvTranspose keeps torch's default
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / n))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats, heads=True):
        """feats: [C5, C4, C3, C2] (strides 32, 16, 8, 4).

        Returns: (levels, heatmaps), both coarsest first: levels are 4 maps (N, 256, h_i, w_i) at strides
        32/16/8/4 (input grid), heatmaps 4 maps (N, K, H/4, W/4) on the output (stride-4) grid; None when
        ``heads`` is False (the heads feed only the global loss).
        """
        x = self.lateral5(feats[0])
        if self.context is not None:
            x = x + self.context(feats[0])
        levels = [x]
        for i, up in enumerate(self.ups):
            x = up(x)
            if self.laterals is not None:
                x = x + self.laterals[i](feats[i + 1])
            levels.append(x)
        if not heads:
            return levels, None
        output_hw = tuple(levels[-1].shape[-2:])
        return levels, [head(f, output_hw) for head, f in zip(self.heads, levels)]
