"""Command-line parsing of train.py / test.py (docs/reference/rsn_mspn.md §6, docs/reference/defects.md R#1).

Both spellings of the launcher flag are accepted (``--local-rank`` from torch >= 2.0's
``torch.distributed.launch``, ``--local_rank`` from older ones); torchrun passes none. ``KEY VALUE`` pairs
override the config (``cvpack.config.merge_from_list``); flags may come anywhere between the pairs
(:func:`split_argv`: ``train.py SOLVER.MAX_ITER 10 --no-auto-resume`` is a flag, not an override).
"""
import argparse

from ..config.argv import parse_overrides, split_argv, usage_error

__all__ = ['train_parser', 'test_parser', 'parse_args', 'split_argv']


def _common(parser):
    parser.add_argument('--local-rank', '--local_rank', dest='local_rank', type=int, default=None,
                        help='set by torch.distributed.launch; torchrun uses the LOCAL_RANK env instead')
    parser.add_argument('-d', '--devices', default=None,
                        help='ignored, kept for the original command lines (use CUDA_VISIBLE_DEVICES)')
    parser.add_argument('opts', nargs='*', metavar='KEY VALUE',
                        help='config overrides; flags may come before, between or after them')
    return parser


def train_parser(exp_name=''):
    p = argparse.ArgumentParser(description='Train exp %s' % exp_name)
    p.add_argument('-c', '--continue', dest='resume', default=None,
                   help='resume from this checkpoint (default: OUTPUT_DIR/iter-last.pth when present)')
    p.add_argument('--no-auto-resume', action='store_true',
                   help='start from scratch; the checkpoints already in OUTPUT_DIR are moved into '
                        'OUTPUT_DIR/previous-run-<time>/ (never overwritten)')
    p.add_argument('--weights', default=None, help='initial weights (overrides MODEL.WEIGHT); no optimizer state')
    return _common(p)


def test_parser(exp_name=''):
    p = argparse.ArgumentParser(description='Test exp %s' % exp_name)
    p.add_argument('-i', '--iter', dest='iter', type=int, default=None, help='evaluate OUTPUT_DIR/iter-ITER.pth')
    p.add_argument('--checkpoint', '--weights', dest='checkpoint', default=None, help='evaluate this checkpoint')
    p.add_argument('--non-strict', action='store_true', help='allow missing/unexpected keys when loading')
    return _common(p)


def parse_args(parser, argv=None):
    """The flags of ``argv`` (default ``sys.argv[1:]``) parsed by ``parser``, the overrides in ``args.opts``;
    a KEY without its VALUE (a flag or nothing after it) exits 2 with one line (``config.argv.parse_overrides``)."""
    import sys
    return parse_overrides(parser, sys.argv[1:] if argv is None else argv)


def parse_with_config(parser, cfg, argv=None):
    """``(args, resolved cfg)``: the command line parsed and the exp's cfg resolved with its KEY VALUE overrides.

    A bad key or value (``cvpack.config.ConfigError``, an unknown key) ends the program as any usage error does:
    exit code 2 and one line naming the key and the value, no traceback.
    """
    from ..config import ConfigError
    from .utils import resolve_cfg
    args = parse_args(parser, argv)
    try:
        return args, resolve_cfg(cfg, args.opts)
    except (ConfigError, KeyError) as e:
        usage_error(parser, e.args[0] if e.args else e)
