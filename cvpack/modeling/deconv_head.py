"""Simple Baselines deconvolution head (Xiao et al. 2018), shared by HSRNet and any SB-style model.

N x [ConvTranspose2d (stride 2, no bias) -> BN -> ReLU] then a final conv to the joint channels
(docs/reference/mlpe_hsrnet_gcpose.md §2.3). Kernel 2/3/4 use Simple Baselines' ``_get_deconv_cfg`` padding,
so each deconvolution exactly doubles the feature size.
"""
from typing import Sequence, Tuple

from torch import nn


def deconv_padding(kernel: int) -> Tuple[int, int]:
    """(padding, output_padding) for a stride-2 deconvolution of ``kernel`` (Simple Baselines' table)."""
    table = {4: (1, 0), 3: (1, 1), 2: (0, 0)}
    if kernel not in table:
        raise ValueError('deconv kernel must be 2, 3 or 4 (Simple Baselines), got %r' % (kernel,))
    return table[kernel]


class DeconvHead(nn.Module):
    """Deconvolution head.

    Args:
        in_channels: backbone output channels.
        num_joints: output heatmap channels.
        filters: channels of each deconvolution (its length is the number of deconvolutions).
        kernels: kernel of each deconvolution (2, 3 or 4), same length as ``filters``.
        final_kernel: 1 (pad 0) or 3 (pad 1) for the last conv, which has a bias.
    """

    def __init__(self, in_channels, num_joints, filters: Sequence[int] = (256, 256, 256),
                 kernels: Sequence[int] = (4, 4, 4), final_kernel=1):
        super().__init__()
        if len(filters) != len(kernels):
            raise ValueError('deconv filters %s and kernels %s differ in length' % (filters, kernels))
        layers = []
        for planes, kernel in zip(filters, kernels):
            pad, out_pad = deconv_padding(kernel)
            layers += [nn.ConvTranspose2d(in_channels, planes, kernel, 2, pad, out_pad, bias=False),
                       nn.BatchNorm2d(planes), nn.ReLU(inplace=True)]
            in_channels = planes
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(in_channels, num_joints, final_kernel, 1, 1 if final_kernel == 3 else 0)
        self.init_weights()

    def init_weights(self):
        """Simple Baselines' init: deconv and final conv N(0, 0.001), BN 1/0, final bias 0."""
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        """x (N, C, h, w) features -> (N, num_joints, h * 2**L, w * 2**L) heatmaps (L deconvolutions)."""
        return self.final_layer(self.deconv_layers(x))
