"""Convert trained weights of another framework into a checkpoint of one of our exps.

    python -m cvpack.tools.convert SRC --exp EXP_DIR --out DST.pth [--format auto|megvii|mmpose|...] [KEY VALUE ...]

SRC is a path or an http(s) URL, read without running code (cvpack.safe_load: a pickle that would run code is
refused). The format is detected (or forced with --format), every key is mapped explicitly, the result is checked
against the exp's model (every missing or unexpected key and every shape mismatch is named), the dropped source
entries are printed, and DST is written atomically as ``{'model', 'cfg_overrides', 'source'}``: ``test.py
--checkpoint DST``, ``MODEL.WEIGHT DST`` and the inference API apply the overrides (preprocessing, architecture
options) again when they load it, so the user never has to know them.
"""
import collections
import os.path as osp
import re
import sys
import time
import zipfile

from ..config.schema import ConfigError
from ..safe_load import CheckpointError, is_url
from ._cli import OneLineParser, UsageError, check_output_file

__all__ = ['main', 'convert', 'check_checkpoint_file', 'CHECKPOINT_FORMATS']

PROG = 'python -m cvpack.tools.convert'
CHECKPOINT_FORMATS = ('PyTorch .pth / .pt / .pth.tar (torch.save, zip or legacy pickle), '
                      'pickle of arrays .pkl (Detectron2 model zoo)')
# Files people mistake for checkpoints, by their first bytes (what the refusal calls them)
_MAGIC = ((b'\x93NUMPY', 'a numpy .npy array'), (b'\x89HDF', 'an HDF5 file (Keras .h5?)'),
          (b'{', 'a JSON or text file'), (b'#', 'a text file'))


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


def check_checkpoint_file(path):
    """Raise CheckpointError naming ``path`` and the supported formats when the local file is not one of them
    (a numpy .npz, an .npy, HDF5, text, ...): the loader would only say 'could not be read'. Files the
    loader tells better (a truncated zip, a .pkl of any protocol) pass."""
    with open(path, 'rb') as f:
        head = f.read(512)
    if head.startswith(b'PK\x03\x04') and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.endswith('/data.pkl') for n in names):   # torch.save's zip layout: <name>/data.pkl
            return
        what = 'a numpy .npz archive' if names and all(n.endswith('.npy') for n in names) else 'a zip archive'
    elif head.startswith(b'PK') or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) \
            or head[257:262] == b'ustar' or path.lower().endswith(('.pkl', '.pickle')):   # (tar: torch < 0.4)
        return
    else:
        what = next((name for magic, name in _MAGIC if head.startswith(magic)),
                    'empty' if not head else 'of unknown content')
    raise CheckpointError(path, 'not a supported checkpoint format: the file is %s; supported: %s'
                          % (what, CHECKPOINT_FORMATS))


def main(argv=None):
    """Convert as the command line asks; 0, or 2 after one line naming the bad argument or file."""
    p = OneLineParser(prog=PROG, description=__doc__.split('\n')[1])
    p.add_argument('src', help='weights file: path or http(s) URL')
    p.add_argument('--exp', required=True, help='exp folder (config.py + network.py) the weights are for')
    p.add_argument('--out', required=True, help='checkpoint to write (.pth)')
    p.add_argument('--format', default='auto', help="'auto' (detect), 'megvii', 'mmpose' or a project format from "
                                                   'the exp config MODEL.WEIGHT_FORMATS')
    p.add_argument('opts', nargs='*', help='KEY VALUE overrides of the exp config')
    args = p.parse_intermixed_args(argv)
    try:
        out = check_output_file(args.out)   # before the conversion, which reads and checks the whole file
        if not is_url(args.src):
            if not osp.isfile(args.src):
                raise FileNotFoundError('source weights not found: %s' % args.src)
            check_checkpoint_file(args.src)
        convert(args.src, args.exp, out, args.format, args.opts)
    except (CheckpointError, ConfigError, UsageError, FileNotFoundError, KeyError, ImportError) as e:
        print('%s: error: %s' % (PROG, e.args[0] if isinstance(e, KeyError) and e.args else e), file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
