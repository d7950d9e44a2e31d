"""Parameter and MAC counts of an exp's model at its input size.

``python -m cvpack.tools.complexity EXP_DIR [--json] [KEY VALUE ...]`` prints params and GMACs; ``--json``
prints ``{"params": int, "gmacs": float}``. MACs are counted like docs/reference/rsn_mspn.md §8: multiply-adds of
Conv2d, ConvTranspose2d and Linear layers only (no bias, BN, activation, add or interpolation), measured by
forward hooks on one image in eval mode. The model is built with MODEL.PRETRAINED and MODEL.WEIGHT cleared, so
no weights are read or downloaded.

``gmacs`` counts the network as published: a model whose eval forward takes shortcuts (attribute
``original_eval``: the Megvii networks and MLPE skip the heads they do not return, the Megvii networks run a
1x1 conv before a resize, not after) runs its original form for the count, as the original code does at test
time. ``eval_gmacs`` is what the eval forward computes.

Whole-image models (DATASET.PIPELINE 'detection', GCPose / Keypoint R-CNN) have no INPUT_SHAPE and their cost
depends on the number of proposals and detections; such a model exposes ``complexity_parts(cfg)`` (sub-network,
input, calls per image) and the tool reports each part's GMACs per call, at the part's input (the trunk at
MIN_SIZE_TEST, a RoI head per RoI), and ``gmacs`` = the sum with every part run its number of calls per image
(an upper bound: all test proposals through the box head, DETECTIONS_PER_IMAGE RoIs through the keypoint head).
Any other model without INPUT_SHAPE gets a ValueError saying so.
"""
import json
import math
import os.path as osp

import torch
from torch import nn

from ..exp import load_exp
from ..protocols import ComplexityParts
from ._cli import OneLineParser, UsageError, check_exp_dir, die

PROG = 'python -m cvpack.tools.complexity'


def count_macs(model: nn.Module, inputs: torch.Tensor, original: bool = True) -> int:
    """Multiply-adds of Conv2d / ConvTranspose2d / Linear layers in one eval forward of ``inputs`` (bias
    excluded). ``original``: modules with an ``original_eval`` switch run their original form (the network as
    published); False counts what the eval forward computes."""
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
    switches = {m: m.original_eval for m in model.modules() if hasattr(m, 'original_eval')}
    was_training = model.training
    model.eval()
    try:
        for m in switches:
            m.original_eval = original
        with torch.no_grad():
            model(inputs)
    finally:
        model.train(was_training)
        for m, value in switches.items():
            m.original_eval = value
        for h in hooks:
            h.remove()
    return total[0]


def _parts_complexity(model, cfg):
    """Per-part MACs of a whole-image model (see the module docstring); returns (gmacs, parts dict)."""
    parts, total = {}, 0
    for name, module, inputs, calls in model.complexity_parts(cfg):
        macs = count_macs(module, inputs)
        parts[name] = {'gmacs': macs / 1e9, 'calls': int(calls)}
        total += macs * int(calls)
    return total / 1e9, parts


def complexity(exp_dir, opts=None, meta=True):
    """Return ``{'params': int, 'gmacs': float, 'eval_gmacs': float}`` for the exp's model at cfg.INPUT_SHAPE
    (batch 1): the network as published, and what its eval forward computes (see the module docstring).
    Whole-image models return ``parts`` instead of ``eval_gmacs``.

    Whole-image models (``model.complexity_parts``, :class:`cvpack.protocols.ComplexityParts`) also get
    ``parts`` {name: {gmacs per call, calls per image}}; ``gmacs`` is then the per-image upper bound. With
    ``meta`` (default) the model is built and run on the meta device: exact counts, no compute.
    """
    # '' (not None): a str key keeps str type under merge_from_list, and '' is falsy for the builders
    opts = ['MODEL.PRETRAINED', '', 'MODEL.WEIGHT', ''] + list(opts or [])
    with torch.device('meta' if meta else 'cpu'):   # meta: shapes only, no memory, no arithmetic
        cfg, model = load_exp(exp_dir, opts)
    params = int(sum(p.numel() for p in model.parameters()))
    if isinstance(model, ComplexityParts):
        gmacs, parts = _parts_complexity(model, cfg)
        return {'params': params, 'gmacs': gmacs, 'parts': parts}
    if 'INPUT_SHAPE' not in cfg:   # whole-image pipelines (GCPose) have no fixed input size
        raise ValueError('%s: cfg has no INPUT_SHAPE (DATASET.PIPELINE %r) and the model has no '
                         'complexity_parts(cfg): cannot choose an input to count MACs at'
                         % (exp_dir, cfg.DATASET.PIPELINE))
    h, w = cfg.INPUT_SHAPE
    images = torch.zeros(1, 3, h, w, device=next(model.parameters()).device)
    return {'params': params, 'gmacs': count_macs(model, images) / 1e9,
            'eval_gmacs': count_macs(model, images, original=False) / 1e9}


def main(argv=None):
    """Print (or with --json, print as JSON) and return :func:`complexity`; a bad exp folder or KEY VALUE override,
    or a model refusing its config at build (a ValueError), ends the tool with one line on stderr, exit 2."""
    parser = OneLineParser(
        prog=PROG,
        description='Params and GMACs of an exp model at cfg.INPUT_SHAPE. Whole-image detection exps (GCPose, '
                    'no INPUT_SHAPE): GMACs per part (trunk at INPUT.MIN_SIZE_TEST on a 4:3 image, box and '
                    'keypoint heads per RoI) and their per-image upper bound (all proposals / detections).',
        epilog='GMACs count the network as published; networks whose eval forward skips heads it does not return '
               '(RSN, MSPN, MLPE) also get what that forward computes (eval_gmacs). Further arguments are KEY VALUE '
               'config overrides (e.g. INPUT_SHAPE "[384, 288]").')
    parser.add_argument('exp_dir', help='exp folder (config.py, network.py)')
    parser.add_argument('--json', action='store_true',
                        help='print {"params": int, "gmacs": float, "eval_gmacs": float} ("parts" instead of '
                             '"eval_gmacs" for detection exps)')
    args, opts = parser.parse_known_args(argv)   # the rest: KEY VALUE config overrides
    from ..config import ConfigError
    try:
        check_exp_dir(args.exp_dir)
        load_exp(args.exp_dir, opts, build=False)   # the config alone: a bad override fails here, in one line
    except UsageError as e:
        parser.error(str(e))
    except (ConfigError, KeyError) as e:   # unknown key (KeyError), a value of the wrong type or range
        die('%s: error: %s' % (PROG, e.args[0] if isinstance(e, KeyError) and e.args else e))
    torch.set_num_threads(min(2, torch.get_num_threads()))
    try:
        res = complexity(args.exp_dir, opts)
    except ValueError as e:   # the model refuses its config at build (HSRNet: INPUT_SHAPE not divisible by 16)
        die('%s: error: %s' % (PROG, e))
    if args.json:
        print(json.dumps(res))
    else:
        print('%s: params %s (%.2f M), %.3f GMACs at the input size'
              % (osp.basename(osp.abspath(args.exp_dir)), format(res['params'], ','), res['params'] / 1e6,
                 res['gmacs']) + (' (upper bound per image, parts below)' if 'parts' in res else '')
              + ('; its eval forward computes %.3f GMACs (see --help)' % res['eval_gmacs']
                 if res.get('eval_gmacs', res['gmacs']) != res['gmacs'] else ''))
        for name, part in res.get('parts', {}).items():
            print('  %-28s %9.3f GMACs x %d per image' % (name, part['gmacs'], part['calls']))
    return res


if __name__ == '__main__':
    main()
