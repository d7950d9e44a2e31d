"""Parameter and MAC counts of an exp's model at its input size.

``python -m cvpack.tools.complexity EXP_DIR [--json] [KEY VALUE ...]`` prints params and GMACs; ``--json``
prints ``{"params": int, "gmacs": float}``. MACs are counted like reference_rsn_mspn.md §8: multiply-adds of
Conv2d, ConvTranspose2d and Linear layers only (no bias, BN, activation, add or interpolation), measured by
forward hooks on one image in eval mode. The model is built with MODEL.PRETRAINED and MODEL.WEIGHT cleared, so
no weights are read or downloaded.
"""
import argparse
import json
import math
import os.path as osp

import torch
from torch import nn

from ..exp import load_exp


def count_macs(model: nn.Module, inputs: torch.Tensor) -> int:
    """Multiply-adds of Conv2d / ConvTranspose2d / Linear layers in one forward of ``inputs`` (bias excluded)."""
    total = [0]

    def conv_hook(m, inp, out):
        # each output element of a conv costs C_in/groups * prod(kernel) MACs
        total[0] += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def deconv_hook(m, inp, out):
        # transposed conv: every input element is scattered through C_out/groups * prod(kernel) weights
        total[0] += inp[0].numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size)

    def linear_hook(m, inp, out):
        total[0] += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.ConvTranspose2d):
            hooks.append(m.register_forward_hook(deconv_hook))
        elif isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total[0]


def complexity(exp_dir, opts=None, meta=True):
    """Return ``{'params': int, 'gmacs': float}`` for the exp's model at cfg.INPUT_SHAPE (batch 1).

    With ``meta`` (default) the model is built and run on the meta device: exact counts, no compute.
    """
    # '' (not None): a str key keeps str type under merge_from_list, and '' is falsy for the builders
    opts = ['MODEL.PRETRAINED', '', 'MODEL.WEIGHT', ''] + list(opts or [])
    with torch.device('meta' if meta else 'cpu'):   # meta: shapes only, no memory, no arithmetic
        cfg, model = load_exp(exp_dir, opts)
    params = sum(p.numel() for p in model.parameters())
    h, w = cfg.INPUT_SHAPE
    macs = count_macs(model, torch.zeros(1, 3, h, w, device=next(model.parameters()).device))
    return {'params': int(params), 'gmacs': macs / 1e9}


def main(argv=None):
    parser = argparse.ArgumentParser(description='Params and GMACs of an exp model')
    parser.add_argument('exp_dir')
    parser.add_argument('--json', action='store_true', help='print {"params": int, "gmacs": float}')
    args, opts = parser.parse_known_args(argv)   # the rest: KEY VALUE config overrides
    torch.set_num_threads(min(2, torch.get_num_threads()))
    res = complexity(args.exp_dir, opts)
    if args.json:
        print(json.dumps(res))
    else:
        print('%s: params %s (%.2f M), %.3f GMACs at the input size'
              % (osp.basename(osp.abspath(args.exp_dir)), format(res['params'], ','), res['params'] / 1e6,
                 res['gmacs']))
    return res


if __name__ == '__main__':
    main()
