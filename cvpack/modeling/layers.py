"""Shared layers: the Megvii conv unit (``conv_bn_relu``), with checkpoint-safe activation checkpointing."""
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class ConvBnRelu(nn.Module):
    """Conv2d (with bias, as the original) -> BatchNorm2d -> optional in-place ReLU.

    ``bias=False`` drops the conv bias (mmpose's ``ConvModule`` with a norm layer has none; a bias followed by
    BN only shifts the BN input, so both compute the same functions, but their weights differ in keys).

    Children are named ``conv`` and ``bn`` so each unit has the original's 7 state_dict entries
    (docs/reference/rsn_mspn.md §1.1). ``efficient=True`` wraps the unit in non-reentrant activation
    checkpointing while training. Fix of docs/reference/defects.md R#5 (docs/reference/rsn_mspn.md §7): the original's
    reentrant checkpoint re-ran BN in training mode during backward and updated the running statistics twice per step
    (and torch's non-reentrant mode does the same); here the recomputation normalises with the batch statistics but
    leaves the running statistics alone, so one step updates them exactly once.
    """

    def __init__(self, in_planes, out_planes, kernel_size, stride=1, padding=0, has_bn=True, has_relu=True,
                 efficient=False, groups=1, bias=True):
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias=bias)
        self.has_bn = has_bn
        if has_bn:
            self.bn = nn.BatchNorm2d(out_planes)
        self.has_relu = has_relu
        self.efficient = efficient

    def _run(self, x, update_stats=True):
        x = self.conv(x)
        if self.has_bn:
            if update_stats:
                x = self.bn(x)
            else:  # recomputation in backward: same batch statistics; the running-stat update goes to copies
                bn = self.bn   # (copies, not None: the recomputation must save the same tensors as the forward)
                x = F.batch_norm(x, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias, True,
                                 bn.momentum, bn.eps)
        if self.has_relu:
            x = F.relu(x, inplace=True)
        return x

    def forward(self, x):
        """x: (N, C_in, H, W) -> (N, C_out, H', W'), H' = (H + 2p - k) // s + 1 (same frame, stride s)."""
        if not (self.efficient and self.training and torch.is_grad_enabled()):
            return self._run(x)
        calls = []

        def func(inp):
            calls.append(1)
            return self._run(inp, update_stats=len(calls) == 1)
        return checkpoint(func, x, use_reentrant=False)


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Inference copy of ``model`` with every :class:`ConvBnRelu`'s BN folded into its conv (eval statistics).

    w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta: the same function in eval mode up
    to float rounding, one pass less per unit. State-dict names change (no ``bn``): use for inference only.
    """
    import copy
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ConvBnRelu) and m.has_bn:
                bn = m.bn
                scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
                m.conv.weight.mul_(scale.view(-1, 1, 1, 1))
                if m.conv.bias is None:   # bias=False units (mmpose layout) get one for the folded shift
                    m.conv.bias = nn.Parameter(torch.zeros_like(bn.running_mean))
                m.conv.bias.copy_((m.conv.bias - bn.running_mean) * scale + bn.bias)
                m.has_bn = False
                del m.bn
    return model
