"""MLPE's high-resolution fine-tuning network (``docs/reference/mlpe_hsrnet_gcpose.md`` §1.4).

CPN's RefineNet analogue: level i (strides 32/16/8/4) gets 3 - i refine bottlenecks and is brought
to stride 4 by 3 - i deconvs (released) or one bilinear resize (CPN, the "BI" ablation); the four
branches are concatenated, refined once more and predicted. PyTorch default init, as the original.
"""
import torch
import torch.nn.functional as F
from torch import nn


class RefineBottleneck(nn.Module):
    """CPN refine bottleneck (expansion 2) with an always-on projection shortcut."""

    def __init__(self, inplanes, planes=128):
        super().__init__()
        out = planes * 2
        self.body = nn.Sequential(
            nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, padding=1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
            nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out))
        self.shortcut = nn.Sequential(nn.Conv2d(inplanes, out, 1, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        """x: (N, inplanes, h, w) -> (N, 2 * planes, h, w)."""
        return F.relu(self.body(x) + self.shortcut(x), inplace=True)


def _deconv(channels):
    return [nn.ConvTranspose2d(channels, channels, 4, 2, 1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True)]


class HRFineNet(nn.Module):
    """Args: channels of the levels (256), num_levels (4), num_joints K, pred_kernel, upsample mode."""

    def __init__(self, channels=256, num_levels=4, num_joints=17, pred_kernel=3, upsample='deconv'):
        super().__init__()
        self.upsample = upsample
        branches = []
        for i in range(num_levels):
            n = num_levels - 1 - i
            layers = [RefineBottleneck(channels) for _ in range(n)]
            if upsample == 'deconv':
                for _ in range(n):
                    layers += _deconv(channels)
            branches.append(nn.Sequential(*layers))
        self.branches = nn.ModuleList(branches)
        self.fuse = RefineBottleneck(channels * num_levels)
        self.pred = nn.Conv2d(channels, num_joints, pred_kernel, padding=pred_kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(num_joints)

    def forward(self, levels):
        """levels: 4 maps (N, 256, h_i, w_i) coarsest first (strides 32..4).

        Returns: final heatmaps (N, K, h, w) on the stride-4 output grid (that of the last level).
        """
        output_hw = tuple(levels[-1].shape[-2:])
        outs = []
        for branch, x in zip(self.branches, levels):
            x = branch(x)
            if self.upsample == 'bilinear' and tuple(x.shape[-2:]) != output_hw:
                x = F.interpolate(x, size=output_hw, mode='bilinear', align_corners=True)
            outs.append(x)
        return self.bn(self.pred(self.fuse(torch.cat(outs, dim=1))))
