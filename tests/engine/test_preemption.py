"""SIGTERM (cluster preemption) through the real train.py of a tiny Res18.coco, 1 process and 2 gloo processes,
2 DataLoader workers each: the run finishes its iteration, saves iter-K.pth (all ranks agree on K), exits 143,
and the next run resumes to exactly the parameters of an uninterrupted run."""
import os
import os.path as osp
import re
import signal
import subprocess

import pytest

from cvpack.engine import checkpoint as ck
from cvpack.engine import train_main
from cvpack.engine.preemption import PREEMPTED_EXIT_CODE, Preempted
from cvpack.engine.trainer import Trainer
from tests.engine.real_runs import TIMEOUT, launcher, model_diff, rank_pid, res18_opts, run_train, wait_for


def _constant_lr(max_iter):
    # a constant LR after a 1-iteration warm-up: the schedule does not depend on MAX_ITER, so a run
    # stopped at K of 200 and continued to K + 2 follows the same path as a straight run to K + 2
    return ['SOLVER.LR_SCHEDULER', 'multistep', 'SOLVER.STEPS', '[]', 'SOLVER.MAX_ITER', str(max_iter),
            'SOLVER.CHECKPOINT_PERIOD', '100']


@pytest.mark.slow
@pytest.mark.parametrize('nproc', [1, 2])
def test_sigterm_saves_and_resumes_exactly(nproc, repo_root, coco_subset, tmp_path, sub_env):
    exp = osp.join(repo_root, 'projects', 'RSN', 'exps', 'Res18.coco')
    out = tmp_path / 'preempted'
    cmd = launcher(nproc) + ['train.py'] + res18_opts(coco_subset, out) + _constant_lr(200)
    proc = subprocess.Popen(cmd, cwd=exp, env=sub_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        wait_for(str(out / 'log.txt'), 'Iter: 2/200', proc)
        if nproc == 1:
            os.killpg(proc.pid, signal.SIGTERM)        # the whole group, DataLoader workers included (SLURM)
        else:
            os.kill(rank_pid(proc.pid, 1), signal.SIGTERM)   # one rank only: the others learn it collectively
        stdout = proc.communicate(timeout=TIMEOUT)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    if nproc == 1:
        assert proc.returncode == PREEMPTED_EXIT_CODE == 143, stdout[-3000:]
    else:   # torchrun reports the workers' exit code and fails itself
        assert proc.returncode != 0 and 'exitcode  : %d' % PREEMPTED_EXIT_CODE in stdout, stdout[-3000:]
    log = open(out / 'log.txt').read()
    found = re.search(r'SIGTERM received \((on this rank|on another rank)\): stopped after iteration (\d+)/200', log)
    assert found, log[-3000:]
    k = int(found.group(2))
    assert found.group(1) == ('on this rank' if nproc == 1 else 'on another rank')   # rank 0 was not signalled
    assert 2 <= k < 200 and 'Iter: %d/200' % (k + 1) not in log
    assert os.readlink(out / 'iter-last.pth') == 'iter-%d.pth' % k

    # the next run (same folder, auto-resume) continues to K + 2; a straight run to K + 2 ends identically
    run_train(exp, sub_env, launcher(nproc), res18_opts(coco_subset, out) + _constant_lr(k + 2))
    assert 'resumed from %s at iteration %d' % (out / ('iter-%d.pth' % k), k) in open(out / 'log.txt').read()
    straight = tmp_path / 'straight'
    run_train(exp, sub_env, launcher(nproc), res18_opts(coco_subset, straight) + _constant_lr(k + 2))
    assert model_diff(str(out / ('iter-%d.pth' % (k + 2))), str(straight / ('iter-%d.pth' % (k + 2)))) == 0


def test_sigterm_in_process_stops_after_the_iteration(toy, toy_exp, tmp_path, monkeypatch):
    """Deterministic variant (toy exp, one process): SIGTERM raised inside iteration 2 of 4 -> that iteration
    completes, iter-2.pth is written and linked, SystemExit(143); the SIGTERM handler is restored afterwards."""
    _, cfg = toy_exp
    step = Trainer.step

    def step_and_signal(self, batch, iteration):
        if iteration == 2:
            os.kill(os.getpid(), signal.SIGTERM)     # delivered to the handler before step() returns
        return step(self, batch, iteration)

    monkeypatch.setattr(Trainer, 'step', step_and_signal)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / 'out'
    with pytest.raises(Preempted) as info:
        train_main(cfg, toy.build_model, argv=['OUTPUT_DIR', str(out), 'SOLVER.CHECKPOINT_PERIOD', '3'],
                   dataset_builder=toy.dataset_builder, collate_fn=toy.collate)
    assert info.value.code == 143 and info.value.iteration == 2 and signal.getsignal(signal.SIGTERM) == before
    assert sorted(p.name for p in out.glob('iter-*')) == ['iter-2.pth', 'iter-last.pth']
    assert ck.load_checkpoint(str(out / 'iter-last.pth'))['iteration'] == 2
    log = open(out / 'log.txt').read()
    assert 'SIGTERM received (on this rank): stopped after iteration 2/4' in log and 'Iter: 3/4' not in log
