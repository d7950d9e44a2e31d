"""python -m cvpack.tools.plot_logs: curves from log.txt (trainer format) and metrics.jsonl into a PNG."""
import os
import subprocess
import sys

import cv2
import pytest

from cvpack.tools import plot_logs
from cvpack.tools.plot_logs import plot_runs, read_run
from tests.projects.scripts import REPO

pytest.importorskip('matplotlib')

# lines as cvpack.engine.trainer.Trainer._log and the tester write them
LOG = '''2026-12-01 07:57:22,893 cvpack.train INFO: effective solver: LR 5.000e-04 (BASE_LR 5.000e-04)
2026-12-01 07:57:23,132 cvpack.train INFO: Iter: 1/3, LR: 5.000e-05, total_loss: 1904.6261, loss_s0_l0: 365.3086, \
data: 0.014s, compute: 0.222s, 8.5 img/s, ETA: 0h00min
2026-12-01 07:57:23,263 cvpack.train INFO: Iter: 2/3, LR: 5.000e-04, total_loss: 3012.8083, loss_s0_l0: 774.5692, \
data: 0.014s, compute: 0.118s, 10.9 img/s, ETA: 0h00min
2026-12-01 07:57:26,108 cvpack.test INFO: metrics: AP 0.2500, AP50 0.5000, APm -1.0000 (written to x/metrics.json)
2026-12-01 07:57:27,263 cvpack.train INFO: Iter: 3/3, LR: 4.000e-04, total_loss: 1000.5, loss_s0_l0: 100.5, \
data: 0.010s, compute: 0.100s, 10.9 img/s, ETA: 0h00min
'''


def test_read_text_log_and_jsonl(tmp_path):
    (tmp_path / 'log.txt').write_text(LOG)
    s = read_run(str(tmp_path))
    assert s['loss/total'] == {1: 1904.6261, 2: 3012.8083, 3: 1000.5}
    assert s['lr'] == {1: 5e-05, 2: 5e-04, 3: 4e-04}
    assert s['loss/loss_s0_l0'] == {1: 365.3086, 2: 774.5692, 3: 100.5}   # the trainer's scalar names
    assert s['time/compute'][1] == pytest.approx(0.222)
    assert s['AP'] == {2: 0.25} and s['AP50'] == {2: 0.5}
    (tmp_path / 'metrics.jsonl').write_text('{"iteration": 3, "AP": 0.5}\n{"iteration": 6, "AP": 0.75}\n')
    assert read_run(str(tmp_path))['AP'] == {2: 0.25, 3: 0.5, 6: 0.75}
    (tmp_path / 'metrics.jsonl').write_text('{"AP": 0.5}\n')
    with pytest.raises(ValueError, match=r'metrics.jsonl:1: no "iteration"'):
        read_run(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='nothing does not exist'):
        read_run(str(tmp_path / 'nothing'))
    (tmp_path / 'nothing').mkdir()
    with pytest.raises(FileNotFoundError, match='nothing: no log.txt or metrics.jsonl'):
        read_run(str(tmp_path / 'nothing'))


def test_cli_writes_png_of_two_runs(tmp_path):
    for name in ('a', 'b'):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'log.txt').write_text(LOG)
    out = tmp_path / 'plots' / 'curves.png'
    cmd = [sys.executable, '-m', 'cvpack.tools.plot_logs', str(tmp_path / 'a'), str(tmp_path / 'b'),
           '--keys', 'loss/total', 'AP', 'lr', '--out', str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={'PYTHONPATH': REPO, 'PATH': ''})
    assert proc.returncode == 0, proc.stderr
    img = cv2.imread(str(out))
    assert img is not None and img.shape == (3 * 3 * 80, 8 * 80, 3)     # 3 panels of 8x3 inches at 80 dpi
    assert img.std() > 10                                                # something is drawn
    bad = subprocess.run(cmd[:-4] + ['--keys', 'nope'], cwd=REPO, capture_output=True, text=True,
                         env={'PYTHONPATH': REPO, 'PATH': ''})
    assert bad.returncode != 0 and "no run has ['nope']; keys found:" in bad.stderr


def _cli(*args):
    return subprocess.run([sys.executable, '-m', 'cvpack.tools.plot_logs'] + [str(a) for a in args], cwd=REPO,
                          capture_output=True, text=True, env={'PYTHONPATH': REPO, 'PATH': ''})


def _error_line(proc):
    """The CLI's single stderr line for a bad input (no traceback)."""
    lines = [x for x in proc.stderr.splitlines() if not x.startswith('plot_logs: warning:')]
    assert proc.returncode == 2 and len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    return lines[0]


def test_missing_dir_empty_log_and_unknown_key_exit_2(tmp_path):
    out = tmp_path / 'c.png'
    assert _error_line(_cli(tmp_path / 'nope', '--out', out)) == 'plot_logs: error: %s does not exist' % (
        tmp_path / 'nope')
    (tmp_path / 'empty').mkdir()
    assert _error_line(_cli(tmp_path / 'empty', '--out', out)).endswith('empty: no log.txt or metrics.jsonl to plot')
    (tmp_path / 'empty' / 'log.txt').write_text('')
    proc = _cli(tmp_path / 'empty', '--out', out)
    assert _error_line(proc) == 'plot_logs: error: no data point in %s' % (tmp_path / 'empty')
    assert 'plot_logs: warning: %s: no data point (an empty log?), skipped' % (tmp_path / 'empty') in proc.stderr
    (tmp_path / 'a').mkdir()
    (tmp_path / 'a' / 'log.txt').write_text(LOG)
    proc = _cli(tmp_path / 'a', tmp_path / 'empty', '--out', out, '--keys', 'AP', 'nope')
    assert _error_line(proc) == ("plot_logs: error: no run has ['nope']; keys found: AP, AP50, APm, loss/loss_s0_l0, "
                                 "loss/total, lr, time/compute, time/data")
    assert not out.exists()
    proc = _cli(tmp_path / 'a', tmp_path / 'empty', '--out', out, '--keys', 'AP')   # the empty run is left out
    assert proc.returncode == 0 and out.exists() and 'empty: no data point' in proc.stderr


def test_a_whole_last_json_line_without_newline_is_read(tmp_path, caplog):
    """metrics.jsonl written with '\\n'.join (no final newline): its last record was dropped as 'a cut write'."""
    (tmp_path / 'metrics.jsonl').write_text('{"iteration": 100, "AP": 0.5}\n{"iteration": 200, "AP": 0.6}')
    with caplog.at_level('WARNING', logger='cvpack.tools.plot_logs'):
        assert read_run(str(tmp_path))['AP'] == {100: 0.5, 200: 0.6}
    assert 'no newline' not in caplog.text


def test_truncated_and_corrupt_lines_are_skipped_with_file_and_line(tmp_path, caplog):
    # the run died writing 'total_loss: 1000.5': the cut line would read as 10
    (tmp_path / 'log.txt').write_text(LOG + '2026-12-01 07:57:28,263 cvpack.train INFO: Iter: 4/4, LR: 4.000e-04, '
                                            'total_loss: 10')
    (tmp_path / 'metrics.jsonl').write_text('{"iteration": 3, "AP": 0.5}\n{"iteration": 4, "A{"iteration": 5, '
                                            '"AP": 0.7}\n{"iteration": 6, "AP": 0.75}\n{"iteration": 7, "AP": 0.')
    with caplog.at_level('WARNING', logger='cvpack.tools.plot_logs'):
        s = read_run(str(tmp_path))
    assert s['loss/total'] == {1: 1904.6261, 2: 3012.8083, 3: 1000.5}          # the cut 'Iter: 4' line is not read
    assert s['AP'] == {2: 0.25, 3: 0.5, 6: 0.75}                                 # lines 2 and 4 skipped, the rest kept
    text = caplog.text
    assert '%s:6: last line has no newline (a cut write?), skipped' % (tmp_path / 'log.txt') in text
    assert '%s:2: not JSON' % (tmp_path / 'metrics.jsonl') in text
    assert '%s:4: last line has no newline' % (tmp_path / 'metrics.jsonl') in text
    for line in ('[1, 2]', '{"iteration": "3", "AP": 1}', '{"iteration": true, "AP": 1}', '{"step": -1}'):
        (tmp_path / 'metrics.jsonl').write_text('{"iteration": 3, "AP": 0.5}\n%s\n' % line)
        with pytest.raises(ValueError, match=r'metrics.jsonl:2: no "iteration" \(an int >= 0'):
            read_run(str(tmp_path))


def test_non_finite_values_are_skipped_and_counted(tmp_path):
    (tmp_path / 'log.txt').write_text(LOG.replace('total_loss: 3012.8083', 'total_loss: nan').replace(
        'loss_s0_l0: 100.5', 'loss_s0_l0: inf'))
    (tmp_path / 'metrics.jsonl').write_text('{"iteration": 3, "AP": NaN}\n{"iteration": 4, "AP": 0.5, "x": '
                                            'Infinity}\n')
    s = read_run(str(tmp_path))
    assert s['loss/total'] == {1: 1904.6261, 3: 1000.5} and s['loss/loss_s0_l0'] == {1: 365.3086, 2: 774.5692}
    assert s['AP'] == {2: 0.25, 4: 0.5} and 'x' not in s
    assert s.nonfinite == {'loss/total': 1, 'loss/loss_s0_l0': 1, 'AP': 1, 'x': 1}
    proc = _cli(tmp_path, '--out', tmp_path / 'c.png')
    assert proc.returncode == 0, proc.stderr
    assert ('plot_logs: warning: %s: skipped 4 non-finite values (AP: 1, loss/loss_s0_l0: 1, loss/total: 1, x: 1)'
            % tmp_path) in proc.stderr


def test_unwritable_out_is_one_line_and_never_partial(tmp_path, monkeypatch):
    (tmp_path / 'log.txt').write_text(LOG)
    (tmp_path / 'file').write_text('x')
    proc = _cli(tmp_path, '--out', tmp_path / 'file' / 'c.png')        # a folder that is a file
    assert _error_line(proc).startswith('plot_logs: error: cannot write %s: ' % (tmp_path / 'file' / 'c.png'))
    assert _error_line(_cli(tmp_path, '--out', tmp_path)) == 'plot_logs: error: --out %s is a directory' % tmp_path
    out = tmp_path / 'plots' / 'c.png'
    out.parent.mkdir()
    out.write_bytes(b'old')
    from matplotlib.figure import Figure

    def disk_full(self, fname, **kwargs):        # half a PNG written, then ENOSPC
        with open(fname, 'wb') as f:
            f.write(b'\x89PNG\r\n')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(Figure, 'savefig', disk_full)
    with pytest.raises(OSError, match=r'cannot write .*c.png: No space left on device'):
        plot_runs([('a', read_run(str(tmp_path)))], ['loss/total'], str(out))
    assert out.read_bytes() == b'old' and os.listdir(out.parent) == ['c.png']    # the old PNG, no partial file
    assert plot_logs.main([str(tmp_path), '--out', str(out)]) == 2
