"""Parameter and MAC counts of the HSRNet exps (README table): ``python -m projects.HSRNet.hsrnet.complexity``.

MACs are the multiply-adds of convolutions, deconvolutions and linear layers for one image
(:func:`cvpack.tools.complexity.count_macs`), here on the meta device (no memory, no compute), for the
paper's rows that have no exp folder (Simple Baselines, kernel ablation). One exp:
``python -m cvpack.tools.complexity projects/HSRNet/exps/<exp>``.
"""
import argparse

import torch
from torch import nn

from cvpack.modeling.backbones import build_resnet
from cvpack.modeling.deconv_head import DeconvHead
from cvpack.tools.complexity import count_macs

from .model import HSRNetPose


class _SimpleBaseline(nn.Module):
    """Simple Baselines ResNet + 3 deconvolutions, built only to put its counts beside the paper's rows."""

    def __init__(self, depth_name, deconv_kernel):
        super().__init__()
        self.backbone = build_resnet(depth_name)
        self.head = DeconvHead(2048, 17, (256,) * 3, (deconv_kernel,) * 3)

    def forward(self, x):
        """x: (N, 3, H, W) -> (N, 17, H/4, W/4) heatmaps (counted only, never trained)."""
        return self.head(self.backbone(x)[-1])


def complexity(backbone, input_hw, deconv_kernel=4):
    """(params, MACs) of the pose net (an HSRNet variant, or 'resnet50' ... for Simple Baselines) on meta."""
    with torch.device('meta'):
        if backbone.startswith('resnet'):
            model = _SimpleBaseline(backbone, deconv_kernel)
        else:
            model = HSRNetPose(backbone, deconv_kernel=deconv_kernel)
    return sum(p.numel() for p in model.parameters()), count_macs(model, torch.empty(1, 3, *input_hw, device='meta'))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    rows = [('resnet50', (256, 192), 4), ('resnet101', (256, 192), 4), ('resnet152', (256, 192), 4),
            ('resnet50', (256, 192), 2), ('resnet50', (256, 192), 3), ('resnet50', (384, 288), 4)]
    rows += [(b, (256, 192), 4) for b in ('hsrnet59', 'hsrnet110', 'hsrnet161',
                                         'hsr_msnet59', 'hsr_msnet110', 'hsr_msnet161')]
    rows += [('hsrnet59', (256, 192), 2), ('hsrnet59', (256, 192), 3),
             ('hsrnet59', (384, 288), 4), ('hsr_msnet59', (384, 288), 4)]
    print('| backbone | input | deconv kernel | params (M) | GMACs |')
    print('|---|---|---|---|---|')
    for b, hw, k in rows:
        params, macs = complexity(b, hw, k)
        print('| %s | %dx%d | %d | %.2f | %.2f |' % (b, hw[0], hw[1], k, params / 1e6, macs / 1e9))


if __name__ == '__main__':
    main()
