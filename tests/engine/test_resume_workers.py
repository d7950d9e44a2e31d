"""Exact resume WITH DataLoader worker processes, through the real train.py of projects/RSN/exps/Res18.coco
(shrunk: 64x48 input, one block per stage) on the shipped COCO subset, 1 process and 2 gloo processes (torchrun):
N iterations straight and N/2 + auto-resume + N/2 give bit-identical parameters (diff exactly 0), and so does
the same run without worker processes."""
import os.path as osp

import pytest

from tests.engine.real_runs import copy_as_last, launcher, model_diff, res18_opts, run_train


@pytest.mark.parametrize('nproc', [1, pytest.param(2, marks=pytest.mark.slow)])
def test_resume_with_workers_is_exact(nproc, repo_root, coco_subset, tmp_path, sub_env):
    exp = osp.join(repo_root, 'projects', 'RSN', 'exps', 'Res18.coco')
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    run_train(exp, sub_env, launcher(nproc), res18_opts(coco_subset, straight))
    copy_as_last(str(straight / 'iter-2.pth'), resumed, 'iter-2.pth')
    out = run_train(exp, sub_env, launcher(nproc), res18_opts(coco_subset, resumed))
    log = open(resumed / 'log.txt').read()
    assert 'at iteration 2' in log and 'Iter: 1/4' not in log and 'Iter: 3/4' in log, out[-3000:]
    assert model_diff(str(straight / 'iter-4.pth'), str(resumed / 'iter-4.pth')) == 0
    if nproc == 1:   # and the workers change nothing: the same run without worker processes ends identically
        run_train(exp, sub_env, launcher(1), res18_opts(coco_subset, tmp_path / 'w0', 'DATALOADER.NUM_WORKERS', '0'))
        assert model_diff(str(straight / 'iter-4.pth'), str(tmp_path / 'w0' / 'iter-4.pth')) == 0
