"""Training curves of one or several runs as a PNG.

    python -m cvpack.tools.plot_logs LOG_DIR [LOG_DIR ...] [--keys loss/total AP lr] [--out curves.png]

Each LOG_DIR is a run's OUTPUT_DIR (or a log file). Read from it:

- ``log.txt`` (the trainer's text log, :meth:`cvpack.engine.trainer.Trainer._log`): every
  ``Iter: N/M, LR: x, total_loss: y, <term>: v, ..., data: t, compute: t`` line gives ``lr``, ``loss/total``,
  ``loss/<term>`` (e.g. ``loss/loss_s0_l0``), ``time/data``, ``time/compute`` at iteration N (the names of the
  tensorboard scalars);
  a ``metrics: AP a, AP50 b, ...`` line gives those metrics at the last iteration seen (0 before any);
- ``metrics.jsonl`` when present: one JSON object per line with ``iteration`` (or ``iter`` / ``step``) and
  numeric values, which add to / replace the text log's points at the same iteration.

One panel per key, one line per run (labelled by the folder name). A key no run has is an error naming the
keys that were found.
"""
import argparse
import json
import math
import os
import os.path as osp
import re
import sys

__all__ = ['read_run', 'plot_runs', 'main']

_ITER = re.compile(r'Iter: (\d+)/\d+, (.*?)(?:, [\d.]+ img/s)?(?:, ETA: .*)?$')
_PAIR = re.compile(r'([\w/.-]+): ([-+0-9.eEinfa]+)s?$')
_METRICS = re.compile(r'metrics: (.*?)(?: \(written to .*\))?$')
_RENAME = {'LR': 'lr', 'total_loss': 'loss/total', 'data': 'time/data', 'compute': 'time/compute'}


def _add(series, key, it, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return
    series.setdefault(key, {})[int(it)] = float(value)


def _read_text_log(path, series):
    last = 0
    with open(path, errors='replace') as f:
        for line in f:
            m = _ITER.search(line.rstrip('\n'))
            if m:
                last = int(m.group(1))
                for part in m.group(2).split(', '):
                    kv = _PAIR.match(part.strip())
                    if kv:
                        name = kv.group(1)
                        key = _RENAME.get(name, 'loss/' + name)    # the loss terms, as the trainer's scalars
                        _add(series, key, last, float(kv.group(2)))
                continue
            m = _METRICS.search(line.rstrip('\n'))
            if m:
                for part in m.group(1).split(', '):
                    bits = part.strip().split(' ')
                    if len(bits) == 2:
                        try:
                            _add(series, bits[0], last, float(bits[1]))
                        except ValueError:
                            pass


def _read_jsonl(path, series):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise ValueError('%s: line %d is not JSON (%s)' % (path, n, e)) from None
            it = next((rec[k] for k in ('iteration', 'iter', 'step') if k in rec), None)
            if not isinstance(rec, dict) or it is None:
                raise ValueError('%s: line %d has no "iteration"' % (path, n))
            for key, value in rec.items():
                if key not in ('iteration', 'iter', 'step'):
                    _add(series, key, it, value)


def read_run(path):
    """{key: {iteration: value}} of one run (folder or file). FileNotFoundError when nothing is readable."""
    series = {}
    if osp.isdir(path):
        text, jsonl = osp.join(path, 'log.txt'), osp.join(path, 'metrics.jsonl')
    else:
        text, jsonl = (path, None) if not path.endswith('.jsonl') else (None, path)
    found = False
    if text and osp.isfile(text):
        _read_text_log(text, series)
        found = True
    if jsonl and osp.isfile(jsonl):
        _read_jsonl(jsonl, series)
        found = True
    if not found:
        raise FileNotFoundError('%s: no log.txt or metrics.jsonl to plot' % path)
    return series


def plot_runs(runs, keys, out):
    """``runs``: [(label, series)]; writes a PNG with one panel per key to ``out``."""
    import matplotlib
    matplotlib.use('Agg')             # files only, no display needed
    import matplotlib.pyplot as plt
    available = sorted({k for _, s in runs for k in s})
    missing = [k for k in keys if not any(k in s for _, s in runs)]
    if missing:
        raise KeyError('no run has %s; keys found: %s' % (missing, available))
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 3 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        for label, s in runs:
            if key in s:
                its = sorted(s[key])
                ax.plot(its, [s[key][i] for i in its], marker='.' if len(its) < 50 else None, label=label)
        ax.set_ylabel(key)
        ax.set_xlabel('iteration')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m cvpack.tools.plot_logs', description=__doc__.split('\n')[0])
    p.add_argument('logs', nargs='+', help="runs' OUTPUT_DIRs (log.txt / metrics.jsonl) or log files")
    p.add_argument('--keys', nargs='+', default=['loss/total', 'lr'], help='what to plot (default loss/total lr)')
    p.add_argument('--out', default='curves.png', help='PNG to write (default curves.png)')
    args = p.parse_args(argv)
    runs = [(osp.basename(osp.normpath(path)), read_run(path)) for path in args.logs]
    print(plot_runs(runs, args.keys, args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
