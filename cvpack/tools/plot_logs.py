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

One panel per key, one line per run (labelled by the folder name).

Bad input (exit 2, one line ``plot_logs: error: ...`` on stderr, no traceback): a LOG_DIR that does not exist or
holds no log, no data point in any run, a ``--keys`` key no run has (the keys found are listed), a metrics.jsonl
line that is JSON but has no integer ``iteration``, an ``--out`` that cannot be written. Skipped with a warning
(the rest is kept): a line that is not JSON (a write cut by a crash: the truncated last line, or the partial line
a resumed run appended to) named ``file:line``; a last line without its newline (cut mid-number); NaN/inf values
(counted per key); a run with no data point. The PNG is written to a temporary file and renamed, so a failed
write never leaves a partial ``--out`` (an older one stays as it was).
"""
import argparse
import json
import logging
import math
import os.path as osp
import re
import sys

from ._cli import atomic_output

__all__ = ['read_run', 'plot_runs', 'main', 'RunSeries']

logger = logging.getLogger(__name__)
_ITER = re.compile(r'Iter: (\d+)/\d+, (.*?)(?:, [\d.]+ img/s)?(?:, ETA: .*)?$')
_PAIR = re.compile(r'([\w/.-]+): ([-+0-9.eEinfa]+)s?$')
_METRICS = re.compile(r'metrics: (.*?)(?: \(written to .*\))?$')
_RENAME = {'LR': 'lr', 'total_loss': 'loss/total', 'data': 'time/data', 'compute': 'time/compute'}
_ITER_KEYS = ('iteration', 'iter', 'step')


class RunSeries(dict):
    """``{key: {iteration: value}}`` of one run; ``nonfinite``: {key: count of NaN/inf values skipped}."""

    def __init__(self):
        super().__init__()
        self.nonfinite = {}


def _add(series, key, it, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):     # a diverged loss: a gap in the curve, counted (matplotlib would draw nothing)
        series.nonfinite[key] = series.nonfinite.get(key, 0) + 1
        return
    series.setdefault(key, {})[int(it)] = float(value)


def _lines(path, complete=None):
    """``(line number, text)`` of the complete lines of ``path``; a last line without its newline was cut
    by a crash mid-write (maybe mid-number: '1000.5' -> '10') and is skipped with a warning, unless
    ``complete(line)`` says it is whole (a JSON object that parses: a cut one cannot; files written with
    ``'\\n'.join`` end so)."""
    with open(path, errors='replace') as f:
        for n, line in enumerate(f, 1):
            if not line.endswith('\n'):
                if complete is not None and complete(line):
                    yield n, line
                elif line.strip():
                    logger.warning('%s:%d: last line has no newline (a cut write?), skipped: %r', path, n, line[:80])
                return
            yield n, line.rstrip('\n')


def _read_iter_line(m, series):
    it = int(m.group(1))
    for part in m.group(2).split(', '):
        kv = _PAIR.match(part.strip())
        if kv:
            name = kv.group(1)
            _add(series, _RENAME.get(name, 'loss/' + name), it, float(kv.group(2)))  # the trainer's scalar names
    return it


def _read_text_log(path, series):
    last = 0
    for _, line in _lines(path):
        m = _ITER.search(line)
        if m:
            last = _read_iter_line(m, series)
            continue
        m = _METRICS.search(line)
        if m:
            for part in m.group(1).split(', '):
                bits = part.strip().split(' ')
                if len(bits) == 2:
                    try:
                        _add(series, bits[0], last, float(bits[1]))
                    except ValueError:
                        pass


def _iteration(rec, path, n):
    it = next((rec[k] for k in _ITER_KEYS if k in rec), None) if isinstance(rec, dict) else None
    if isinstance(it, float) and it.is_integer():
        it = int(it)
    if it is None or isinstance(it, bool) or not isinstance(it, int) or it < 0:
        raise ValueError('%s:%d: no "iteration" (an int >= 0; also "iter" / "step") in %s'
                         % (path, n, json.dumps(rec)[:80]))
    return it


def _whole_object(line):
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _read_jsonl(path, series):
    for n, line in _lines(path, _whole_object):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:   # a write cut by a crash; a resumed run appends its next line after it
            logger.warning('%s:%d: not JSON (%s), skipped', path, n, e)
            continue
        it = _iteration(rec, path, n)
        for key, value in rec.items():
            if key not in _ITER_KEYS:
                _add(series, key, it, value)


def read_run(path):
    """:class:`RunSeries` of one run (folder or file). FileNotFoundError naming ``path`` when it does not exist
    or holds no log.txt / metrics.jsonl."""
    if not osp.exists(path):
        raise FileNotFoundError('%s does not exist' % path)
    series = RunSeries()
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


def _draw(runs, keys):
    import matplotlib
    matplotlib.use('Agg')             # files only, no display needed
    import matplotlib.pyplot as plt
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
    return fig, plt


def plot_runs(runs, keys, out):
    """``runs``: [(label, series)]; writes a PNG with one panel per key to ``out`` (through a temporary file
    renamed over ``out``: a failed write leaves no partial file). KeyError listing the keys found when a key is
    in no run; OSError naming ``out`` when it cannot be written."""
    available = sorted({k for _, s in runs for k in s})
    missing = [k for k in keys if not any(k in s for _, s in runs)]
    if missing:
        raise KeyError('no run has %s; keys found: %s' % (missing, ', '.join(available)))
    if osp.isdir(out):
        raise IsADirectoryError('--out %s is a directory' % out)
    fig, plt = _draw(runs, keys)
    try:
        with atomic_output(out) as tmp:
            fig.savefig(tmp, dpi=80, format=(osp.splitext(out)[1][1:] or 'png').lower())
    except OSError as e:
        raise OSError(e.errno, 'cannot write %s: %s' % (out, e.strerror or e)) from None
    finally:
        plt.close(fig)
    return out


def _read_runs(paths):
    """[(label, series)] of the runs with data; warnings for the others and for skipped non-finite values."""
    runs = []
    for path in paths:
        series = read_run(path)
        if series.nonfinite:
            logger.warning('%s: skipped %d non-finite values (%s)', path, sum(series.nonfinite.values()),
                           ', '.join('%s: %d' % kv for kv in sorted(series.nonfinite.items())))
        if not series:
            logger.warning('%s: no data point (an empty log?), skipped', path)
            continue
        runs.append((osp.basename(osp.normpath(path)), series))
    if not runs:
        raise ValueError('no data point in %s' % ', '.join(paths))
    return runs


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m cvpack.tools.plot_logs', description=__doc__.split('\n')[0])
    p.add_argument('logs', nargs='+', help="runs' OUTPUT_DIRs (log.txt / metrics.jsonl) or log files")
    p.add_argument('--keys', nargs='+', default=['loss/total', 'lr'], help='what to plot (default loss/total lr)')
    p.add_argument('--out', default='curves.png', help='PNG to write (default curves.png)')
    args = p.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(format='plot_logs: warning: %(message)s', stream=sys.stderr)
    try:
        print(plot_runs(_read_runs(args.logs), args.keys, args.out))
    except (OSError, ValueError, KeyError) as e:
        msg = e.strerror if isinstance(e, OSError) and e.strerror else (e.args[0] if e.args else e)
        print('plot_logs: error: %s' % ' '.join(str(msg).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
