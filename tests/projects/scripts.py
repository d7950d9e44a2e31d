"""Run an exp's real ``train.py`` / ``test.py`` (or any script) as a user would, for end-to-end tests."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_script(cwd, script, args, threads=1, timeout=600):
    """``python script args...`` in ``cwd``; asserts success and returns stdout + stderr (interleaved).

    PYTHONPATH is the repo root, so the tests also run from a checkout that is not pip-installed.
    """
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        env.pop(key, None)   # a single-process run, whatever launched pytest
    proc = subprocess.run([sys.executable, script] + [str(a) for a in args], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert proc.returncode == 0, '%s %s failed:\n%s' % (script, ' '.join(map(str, args)), proc.stdout[-4000:])
    return proc.stdout
