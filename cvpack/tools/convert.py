"""Convert trained weights of another framework into a checkpoint of one of our exps.

    python -m cvpack.tools.convert SRC --exp EXP_DIR --out DST.pth [--format auto|megvii|mmpose|...] [KEY VALUE ...]

SRC is a path or an http(s) URL, read without running code (cvpack.safe_load: a pickle that would run code is
refused). The format is detected (or forced with --format), every key is mapped explicitly, the result is checked
against the exp's model (every missing or unexpected key and every shape mismatch is named), the dropped source
entries are printed, and DST is written atomically as ``{'model', 'cfg_overrides', 'source'}``: ``test.py
--checkpoint DST``, ``MODEL.WEIGHT DST`` and the inference API apply the overrides (preprocessing, architecture
options) again when they load it, so the user never has to know them.
"""
import argparse
import collections
import re
import sys
import time


from ..safe_load import CheckpointError

__all__ = ['main', 'convert']


def _dropped_summary(dropped):
    """'num_batches_tracked x 300, meta, optimizer' style: counts per last name for long key lists."""
    groups = collections.Counter(re.sub(r'^.*\.', '', k) if '.' in k else k for k in dropped)
    return ', '.join('%s x %d' % (k, n) if n > 1 else k for k, n in sorted(groups.items())) or 'nothing'


def convert(src, exp_dir, out, fmt='auto', opts=None, log=print):
    """Convert ``src`` for the exp in ``exp_dir`` and write ``out``; returns the :class:`cvpack.weights.Prepared`."""
    from ..exp import import_exp_module, load_exp
    from ..weights import apply_overrides, match_state, prepare, save_converted
    start = time.perf_counter()
    cfg, _ = load_exp(exp_dir, opts, build=False)
    network = import_exp_module(exp_dir, 'network', aliases={'config': import_exp_module(exp_dir, 'config')})
    prepared = prepare(cfg, src, fmt)
    model_cfg = apply_overrides(cfg, prepared.cfg_overrides, prepared.source, log=_Quiet())
    model = network.build_model(model_cfg)   # (meta-device building is slower: it imports torch's prims)
    match_state(model, prepared.state_dict, prepared.source, strict=True)
    save_converted(prepared, out)
    log('format: %s' % prepared.format)
    log('converted %d tensors (%d values) for %s' % (len(prepared.state_dict),
                                                     sum(v.numel() for v in prepared.state_dict.values()), exp_dir))
    for key, value in prepared.cfg_overrides.items():
        log('config override stored with the weights: %s = %r' % (key, value))
    log('dropped %d source entries: %s' % (len(prepared.dropped), _dropped_summary(prepared.dropped)))
    log('wrote %s in %.2f s' % (out, time.perf_counter() - start))
    return prepared


class _Quiet:
    def info(self, *args, **kwargs):
        pass


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m cvpack.tools.convert', description=__doc__.split('\n')[1])
    p.add_argument('src', help='weights file: path or http(s) URL')
    p.add_argument('--exp', required=True, help='exp folder (config.py + network.py) the weights are for')
    p.add_argument('--out', required=True, help='checkpoint to write (.pth)')
    p.add_argument('--format', default='auto', help="'auto' (detect), 'megvii', 'mmpose' or a project format from "
                                                   'the exp config MODEL.WEIGHT_FORMATS')
    p.add_argument('opts', nargs='*', help='KEY VALUE overrides of the exp config')
    args = p.parse_intermixed_args(argv)
    try:
        convert(args.src, args.exp, args.out, args.format, args.opts)
    except (CheckpointError, FileNotFoundError, KeyError, ImportError) as e:
        print('error: %s' % (e.args[0] if isinstance(e, KeyError) and e.args else e), file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
