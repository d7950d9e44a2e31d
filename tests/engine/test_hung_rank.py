"""A hung rank (SIGSTOP) ends the job: the other rank's collective times out after DIST.TIMEOUT_S and fails, then
torchrun stops the rest (SIGTERM, SIGKILL after its 30 s shutdown grace). Real train.py of a tiny Res18.coco,
2 gloo processes under torchrun."""
import os
import os.path as osp
import signal
import subprocess
import time

import pytest

from cvpack.engine.launch import DEFAULT_TIMEOUT_S, dist_timeout
from tests.engine.real_runs import launcher, rank_pid, res18_opts, wait_for

TORCHRUN_GRACE_S = 30     # torchrun's LocalElasticAgent._stop_workers: SIGTERM, then SIGKILL 30 s later


def _alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def test_dist_timeout_key():
    from easydict import EasyDict as edict

    from cvpack.config import base_config
    assert dist_timeout(edict(DIST=edict(TIMEOUT_S=5))) == 5
    assert dist_timeout(base_config('.')) == DEFAULT_TIMEOUT_S == 1800    # the preset's default is the launcher's
    for bad in (0, -1, float('inf'), '5', True, None):
        with pytest.raises(ValueError, match='DIST.TIMEOUT_S'):
            dist_timeout(edict(DIST=edict(TIMEOUT_S=bad)))


@pytest.mark.slow
def test_stopped_rank_ends_the_job_within_the_timeout(repo_root, coco_subset, tmp_path, sub_env):
    timeout_s = 8
    exp = osp.join(repo_root, 'projects', 'RSN', 'exps', 'Res18.coco')
    out = tmp_path / 'hung'
    cmd = launcher(2) + ['train.py'] + res18_opts(coco_subset, out, 'SOLVER.MAX_ITER', '200',
                                                  'DATALOADER.NUM_WORKERS', '0', 'DIST.TIMEOUT_S', str(timeout_s))
    proc = subprocess.Popen(cmd, cwd=exp, env=sub_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        wait_for(str(out / 'log.txt'), 'Iter: 2/200', proc)
        ranks = [rank_pid(proc.pid, r) for r in (0, 1)]
        os.kill(ranks[1], signal.SIGSTOP)
        stopped = time.time()
        stdout = proc.communicate(timeout=timeout_s + TORCHRUN_GRACE_S + 60)[0]
        elapsed = time.time() - stopped
        print('SIGSTOP to job end: %.1f s (DIST.TIMEOUT_S %d)' % (elapsed, timeout_s))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0, stdout[-3000:]
    assert not any(_alive(p) for p in ranks)                     # every process of the job is gone
    assert 'Timed out' in stdout or 'timed out' in stdout, stdout[-3000:]   # rank 0's collective gave up
    # rank 0 fails after the configured timeout (not before), the stopped rank dies in torchrun's grace period
    assert timeout_s - 1 <= elapsed <= timeout_s + TORCHRUN_GRACE_S + 30, (elapsed, stdout[-3000:])
