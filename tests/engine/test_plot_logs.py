"""python -m cvpack.tools.plot_logs: curves from log.txt (trainer format) and metrics.jsonl into a PNG."""
import subprocess
import sys

import cv2
import pytest

from cvpack.tools.plot_logs import read_run
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
    with pytest.raises(ValueError, match=r'metrics.jsonl: line 1 has no "iteration"'):
        read_run(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='no log.txt or metrics.jsonl'):
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
