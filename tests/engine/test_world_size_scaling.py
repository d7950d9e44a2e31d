"""World-size scaling as a user meets it: the real train.py of a Megvii exp (REFERENCE_WORLD_SIZE 8) on one process,
on the shipped COCO subset with a tiny network (docs/ENGINE.md "World-size scaling")."""
import json
import os.path as osp
import re

import pytest

from tests.projects.scripts import REPO, run_script

EXP = osp.join(REPO, 'projects', 'RSN', 'exps', 'Res18.coco')


def _tiny(coco_subset, out, *extra):
    """A tiny Res18.coco; the solver keys are the preset's (MAX_ITER 2 aside) unless ``extra`` sets them."""
    return ['DATASET.ROOT', coco_subset, 'INPUT_SHAPE', '[64, 48]', 'OUTPUT_SHAPE', '[16, 12]',
            'MODEL.BLOCKS', '[1, 1, 1, 1]', 'MODEL.UPSAMPLE_CHANNEL_NUM', '16', 'MODEL.DEVICE', 'cpu',
            'MODEL.PRETRAINED', '', 'SOLVER.IMS_PER_GPU', '2', 'SOLVER.LOG_PERIOD', '1', 'SOLVER.MAX_ITER', '2',
            'DATALOADER.NUM_WORKERS', '0', 'OUTPUT_DIR', str(out)] + list(extra)


def _lrs(log):
    return [float(v) for v in re.findall(r'Iter: \d+/\d+, LR: ([0-9.e+-]+)', log)]


@pytest.mark.slow
def test_scaled_by_default_with_one_line_showing_each_value(tmp_path, coco_subset):
    """MAX_ITER 2 on 1 of the preset's 8 processes: 16 iterations, and one log line says so, key by key."""
    log = run_script(EXP, 'train.py', _tiny(coco_subset, tmp_path / 'out', 'SOLVER.CHECKPOINT_PERIOD', '300'))
    lines = [line for line in log.splitlines() if 'world-size scaling' in line]
    assert len(lines) == 1, lines
    assert ('world-size scaling (8 -> 1 processes): BASE_LR 0.0005 -> 0.0005, MAX_ITER 2 -> 16, '
            'CHECKPOINT_PERIOD 300 -> 2400, WARMUP_ITERS 2400 -> 19200, STEPS [] -> []') in lines[0]
    assert 'SOLVER.REFERENCE_WORLD_SIZE None' in lines[0]
    assert 'Iter: 16/16' in log and osp.isfile(tmp_path / 'out' / 'iter-16.pth')
    # the 19200-iteration warm-up is cut at 16: said once, and the LR follows the warm-up ramp
    assert log.count('the warm-up (WARMUP_ITERS 19200) is as long as the run (MAX_ITER 16)') == 1
    lrs = _lrs(log)
    assert len(lrs) == 16 and lrs[0] == 5e-5 and lrs[-1] == float('%.3e' % (5e-4 * (0.1 + 0.9 * 15 / 19200)))
    solver = json.load(open(tmp_path / 'out' / 'config.json'))['_RUNTIME']['SOLVER']
    assert (solver['MAX_ITER'], solver['WARMUP_ITERS'], solver['REFERENCE_WORLD_SIZE']) == (16, 19200, 8)


def test_reference_world_size_none_uses_the_values_as_given(tmp_path, coco_subset):
    """The documented way to give unscaled values; the preset's 2400-iteration warm-up is cut at MAX_ITER 2."""
    log = run_script(EXP, 'train.py', _tiny(coco_subset, tmp_path / 'out', 'SOLVER.REFERENCE_WORLD_SIZE', 'None'))
    assert 'world-size scaling' not in log
    assert 'Iter: 2/2' in log and 'Iter: 3/' not in log and osp.isfile(tmp_path / 'out' / 'iter-2.pth')
    assert 'the warm-up (WARMUP_ITERS 2400) is as long as the run (MAX_ITER 2)' in log
    assert _lrs(log) == [5e-5, float('%.3e' % (5e-4 * (0.1 + 0.9 / 2400)))]
