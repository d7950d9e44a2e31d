"""RSN and MSPN end to end through the real exp scripts on the shipped COCO and MPII subsets.

Also the quick start (tools/quickstart.py, the README's main command) in a CI-sized version.
"""
import json
import os.path as osp

import pytest

from tests.projects.megvii_helpers import SMALL
from tests.projects.scripts import REPO, run_script


def _exp(project, exp):
    return osp.join(REPO, 'projects', project, 'exps', exp)


def test_quickstart_ci_sized(tmp_path):
    out = tmp_path / 'qs'
    log = run_script(REPO, 'tools/quickstart.py', ['--iters', 2, '--batch', 2, '--output', out, '--num-vis', 2],
                     threads=2)
    for sub in ('test_dir', 'test_on_train'):
        metrics = json.loads((out / sub / 'metrics.json').read_text())
        assert 0.0 <= metrics['metrics']['AP'] <= 1.0
    val = json.loads((out / 'test_dir' / 'results.json').read_text())
    assert len(val) == 125            # one instance per labelled val person (GT boxes, no NMS)
    train = json.loads((out / 'test_on_train' / 'results.json').read_text())
    assert len(train) == 86
    assert len(list((out / 'vis').glob('*.png'))) == 2
    assert 'AP on the train subset' in log and 'iter-2.pth' in log


@pytest.mark.parametrize('project, exp, data', [
    pytest.param('MSPN', 'mspn.2xstg.coco', 'coco', marks=pytest.mark.slow),
    pytest.param('MSPN', 'mspn.2xstg.mpii', 'mpii', marks=pytest.mark.slow),
    ('RSN', 'RSN18.mpii', 'mpii'),   # one real train.py + test.py in the default run
])
def test_train_then_test(tmp_path, coco_subset, mpii_subset, project, exp, data):
    out = tmp_path / 'out'
    common = ['DATASET.ROOT', coco_subset if data == 'coco' else mpii_subset, 'OUTPUT_DIR', out,
              'MODEL.PRETRAINED', '', 'DATALOADER.NUM_WORKERS', 0, 'TEST.USE_GT_BBOX', 'True'] + SMALL[data.upper()]
    train_log = run_script(_exp(project, exp), 'train.py', ['SOLVER.MAX_ITER', 2, 'SOLVER.IMS_PER_GPU', 2,
                                                          'SOLVER.WARMUP_ITERS', 1, 'SOLVER.CHECKPOINT_PERIOD', 2,
                                                          'SOLVER.REFERENCE_WORLD_SIZE', 'None'] + common)
    assert 'Iter: 2/2' in train_log and (out / 'iter-2.pth').is_file() and (out / 'config.json').is_file()
    stages = 2 if exp.startswith('mspn.2xstg') else 1
    assert 'loss_s%d_l3' % (stages - 1) in train_log      # every stage's loss terms are logged
    test_log = run_script(_exp(project, exp), 'test.py', ['-i', 2] + common)
    metrics = json.loads((out / 'test_dir' / 'metrics.json').read_text())['metrics']
    if data == 'coco':
        assert set(metrics) >= {'AP', 'AP50', 'AR'} and 0.0 <= metrics['AP'] <= 1.0
        assert len(json.loads((out / 'test_dir' / 'results.json').read_text())) == 125
    else:
        assert 0.0 <= metrics['Mean'] <= 100.0 and 'Head' in metrics   # PCKh table on the 5 MPII people
    assert 'ground-truth boxes' in test_log
