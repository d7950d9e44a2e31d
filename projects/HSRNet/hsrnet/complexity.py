"""Parameter and MAC counts of the HSRNet exps (README table): ``python -m projects.HSRNet.hsrnet.complexity``.

MACs are the multiply-adds of convolutions, deconvolutions and linear layers for one image at the exp
input, counted by forward hooks on the meta device (no memory, no compute). Prefer
``cvpack.tools.complexity`` where it exists; this covers the HSRNet table until then.
"""
import argparse

import torch
from torch import nn

from cvpack.modeling.backbones import build_resnet
from cvpack.modeling.deconv_head import DeconvHead

from .model import HSRNetPose


class _SimpleBaseline(nn.Module):
    """Simple Baselines ResNet + 3 deconvolutions, built only to put its counts beside the paper's rows."""

    def __init__(self, depth_name, deconv_kernel):
        super().__init__()
        self.backbone = build_resnet(depth_name)
        self.head = DeconvHead(2048, 17, (256,) * 3, (deconv_kernel,) * 3)

    def forward(self, x):
        return self.head(self.backbone(x)[-1])


def count_macs(model: nn.Module, input_hw) -> int:
    """Multiply-adds of Conv2d / ConvTranspose2d / Linear for a (1, 3, H, W) input (model on any device)."""
    total = [0]

    def hook(m, inputs, output):
        if isinstance(m, nn.ConvTranspose2d):   # every input pixel scatters Cout * k * k / groups products
            k = m.kernel_size[0] * m.kernel_size[1]
            total[0] += inputs[0].numel() * m.out_channels * k // m.groups
        elif isinstance(m, nn.Conv2d):          # every output pixel gathers Cin * k * k / groups products
            k = m.kernel_size[0] * m.kernel_size[1]
            total[0] += output.numel() * m.in_channels * k // m.groups
        elif isinstance(m, nn.Linear):
            total[0] += output.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    device = next(model.parameters()).device
    with torch.no_grad():
        model.eval()(torch.empty(1, 3, *input_hw, device=device))
    for h in handles:
        h.remove()
    return total[0]


def complexity(backbone, input_hw, deconv_kernel=4):
    """(params, MACs) of the pose net (an HSRNet variant, or 'resnet50' ... for Simple Baselines) on meta."""
    with torch.device('meta'):
        if backbone.startswith('resnet'):
            model = _SimpleBaseline(backbone, deconv_kernel)
        else:
            model = HSRNetPose(backbone, deconv_kernel=deconv_kernel)
    return sum(p.numel() for p in model.parameters()), count_macs(model, input_hw)


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
