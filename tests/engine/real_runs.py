"""Helpers for end-to-end engine tests that run an exp's real train.py / test.py in subprocesses: plain python for
one process, torchrun (gloo, 127.0.0.1) for several processes or nodes."""
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys
import time

from cvpack.engine import checkpoint as ck

TIMEOUT = 300


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def res18_opts(coco_subset, out, *extra):
    """Command-line overrides of a tiny Res18.coco run: 4 iterations of batch 2, a checkpoint every 2."""
    return ['DATASET.ROOT', coco_subset, 'INPUT_SHAPE', '[64, 48]', 'OUTPUT_SHAPE', '[16, 12]',
            'MODEL.BLOCKS', '[1, 1, 1, 1]', 'MODEL.UPSAMPLE_CHANNEL_NUM', '32', 'MODEL.DEVICE', 'cpu',
            'SOLVER.IMS_PER_GPU', '2', 'SOLVER.MAX_ITER', '4', 'SOLVER.CHECKPOINT_PERIOD', '2',
            'SOLVER.WARMUP_ITERS', '1', 'SOLVER.REFERENCE_WORLD_SIZE', 'None', 'SOLVER.LOG_PERIOD', '1',
            'DATALOADER.NUM_WORKERS', '2', 'OUTPUT_DIR', str(out)] + list(extra)


def launcher(nproc, nnodes=1, node_rank=0, port=None):
    """argv prefix: plain python for one process, else torchrun on 127.0.0.1 (static rendezvous)."""
    if nproc == 1 and nnodes == 1:
        return [sys.executable]
    return [sys.executable, '-m', 'torch.distributed.run', '--nnodes=%d' % nnodes, '--node_rank=%d' % node_rank,
            '--nproc_per_node=%d' % nproc, '--master_addr=127.0.0.1', '--master_port=%d' % (port or free_port())]


def run_train(exp_dir, env, prefix, opts, expect_rc=0):
    proc = subprocess.run(prefix + ['train.py'] + opts, cwd=exp_dir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    assert proc.returncode == expect_rc, 'exit %d:\n%s' % (proc.returncode, proc.stdout[-4000:])
    return proc.stdout


def copy_as_last(src, dst_dir, name):
    os.makedirs(dst_dir)
    shutil.copyfile(src, osp.join(dst_dir, name))
    os.symlink(name, osp.join(dst_dir, 'iter-last.pth'))


def model_diff(a, b):
    a, b = ck.load_checkpoint(a)['model'], ck.load_checkpoint(b)['model']
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def wait_for(path, text, proc, limit=TIMEOUT):
    end = time.time() + limit
    while time.time() < end:
        if osp.isfile(path) and text in open(path).read():
            return
        assert proc.poll() is None, 'training ended (exit %s) before %r appeared' % (proc.returncode, text)
        time.sleep(0.1)
    raise AssertionError('%r never appeared in %s' % (text, path))


def rank_pid(launcher_pid, rank):
    """PID of the torchrun worker with RANK=rank (a child of the launcher)."""
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            stat = open('/proc/%s/stat' % pid).read()
            ppid = int(stat.rsplit(')', 1)[1].split()[1])
            env = open('/proc/%s/environ' % pid, 'rb').read().split(b'\0')
        except OSError:
            continue
        if ppid == launcher_pid and b'RANK=%d' % rank in env:
            return int(pid)
    raise AssertionError('no rank %d under pid %d' % (rank, launcher_pid))
