"""Parameter and multiply-add counts (conv / deconv / linear only), by forward hooks.

Runs on the meta device by default, so counting MLPE-101 at 384x288 allocates nothing and takes well
under a second. BatchNorm, pooling, interpolation and activations are not counted (the usual MAC
convention of the papers' tables).
"""
import copy

import torch
from torch import nn


def _conv_macs(m, inp, out):
    if isinstance(m, nn.ConvTranspose2d):   # every input element is spread over Cout/g * kh * kw outputs
        return inp.numel() // inp.shape[0] * (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
    return out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]


def count_macs(model: nn.Module, input_hw, device='meta') -> int:
    """Multiply-adds of one (1, 3, H, W) forward of ``model`` in eval mode (conv, deconv, linear)."""
    model = copy.deepcopy(model).to(device).eval()
    total = [0]

    def hook(m, args, out):
        x = args[0]
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            total[0] += _conv_macs(m, x, out)
        else:
            total[0] += out.numel() // out.shape[0] * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, *input_hw, device=device))
    for h in handles:
        h.remove()
    return total[0]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
