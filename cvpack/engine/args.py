"""Command-line parsing of train.py / test.py (docs/reference/rsn_mspn.md §6, docs/reference/defects.md R#1).

Both spellings of the launcher flag are accepted (``--local-rank`` from torch >= 2.0's
``torch.distributed.launch``, ``--local_rank`` from older ones); torchrun passes none. Trailing
``KEY VALUE`` pairs override the config (``cvpack.config.merge_from_list``).
"""
import argparse

__all__ = ['train_parser', 'test_parser', 'parse_args']


def _common(parser):
    parser.add_argument('--local-rank', '--local_rank', dest='local_rank', type=int, default=None,
                        help='set by torch.distributed.launch; torchrun uses the LOCAL_RANK env instead')
    parser.add_argument('-d', '--devices', default=None,
                        help='ignored, kept for the original command lines (use CUDA_VISIBLE_DEVICES)')
    parser.add_argument('opts', nargs=argparse.REMAINDER, help='config overrides: KEY VALUE ...')
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


def _strip_local_rank(opts, args):
    """Remove launcher flags that landed after the first override (argparse REMAINDER swallows them)."""
    out, i = [], 0
    while i < len(opts):
        tok = opts[i]
        if tok.startswith(('--local-rank=', '--local_rank=')):
            args.local_rank = int(tok.split('=', 1)[1])
        elif tok in ('--local-rank', '--local_rank') and i + 1 < len(opts):
            args.local_rank = int(opts[i + 1])
            i += 1
        else:
            out.append(tok)
        i += 1
    return out


def parse_args(parser, argv=None):
    args = parser.parse_args(argv)
    args.opts = _strip_local_rank(list(args.opts or []), args)
    return args


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
        parser.error(str(e.args[0]) if e.args else str(e))
