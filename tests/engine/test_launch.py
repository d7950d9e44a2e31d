"""The three launch forms through real exp scripts in tmp_path: torchrun (2 gloo processes),
``python -m torch.distributed.launch`` (2 processes, --local-rank argument) and plain ``python train.py``."""
import json
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys

import pytest
import torch

from cvpack.engine.args import parse_args, train_parser
from cvpack.engine.args import test_parser as make_test_parser

TIMEOUT = 120


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, '%s failed:\n%s' % (' '.join(cmd), proc.stdout[-4000:])
    return proc.stdout


def _out_dir(exp):
    return osp.join(exp, 'model_logs', os.listdir(osp.join(exp, 'model_logs'))[0], osp.basename(exp))


def _argv(exp, rank):
    return json.load(open(osp.join(_out_dir(exp), 'argv_rank%d.json' % rank)))


def _check_two_rank_run(exp, files=('iter-4.pth', 'iter-last.pth')):
    out = _out_dir(exp)
    p0 = torch.load(osp.join(out, 'params_rank0.pt'), weights_only=True)
    p1 = torch.load(osp.join(out, 'params_rank1.pt'), weights_only=True)
    assert p0.keys() == p1.keys() and all(torch.equal(p0[k], p1[k]) for k in p0)   # DDP kept ranks in step
    assert sorted(f for f in os.listdir(out) if f.startswith('iter-')) == list(files)
    ckpt = torch.load(osp.join(out, 'iter-last.pth'), weights_only=True)
    assert ckpt['world_size'] == 2 and len(ckpt['rng']) == 2 and ckpt['iteration'] == 4
    assert not any(k.startswith('module.') for k in ckpt['model'])
    assert len(os.listdir(osp.join(out, 'tb_dir'))) == 1          # one event file: rank 0 only
    log = open(osp.join(out, 'log.txt')).read()
    assert 'world size 2' in log and 'backend gloo' in log and '[rank 1]' not in log


def _check_test_gather(exp):
    metrics = json.load(open(osp.join(_out_dir(exp), 'test_dir', 'metrics.json')))
    # 7 val samples over 2 ranks: 4 + 3, gathered on rank 0, nothing padded or duplicated
    assert metrics['num_instances'] == 7
    assert metrics['metrics']['ids'] == list(range(100, 107)) and metrics['metrics']['unique'] == 7


@pytest.mark.slow
def test_torchrun_two_processes(toy, tmp_path, sub_env):
    exp = toy.write_exp(tmp_path, 'tr.exp')
    run = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=%d' % _free_port()]
    _run(run + ['train.py', 'SOLVER.CHECKPOINT_PERIOD', '2'], exp, sub_env)
    _check_two_rank_run(exp, ['iter-2.pth', 'iter-4.pth', 'iter-last.pth'])
    assert not any('local' in a for a in _argv(exp, 1))        # torchrun: LOCAL_RANK in the env only

    # 2-process exact resume: auto-resume from a copy of iter-2 (per-rank RNG states, sharded sampler)
    out, resumed = _out_dir(exp), str(tmp_path / 'resumed')
    os.makedirs(resumed)
    shutil.copyfile(osp.join(out, 'iter-2.pth'), osp.join(resumed, 'iter-2.pth'))
    os.symlink('iter-2.pth', osp.join(resumed, 'iter-last.pth'))
    run[-1] = '--master_port=%d' % _free_port()
    _run(run + ['train.py', 'SOLVER.CHECKPOINT_PERIOD', '2', 'OUTPUT_DIR', resumed], exp, sub_env)
    log = open(osp.join(resumed, 'log.txt')).read()
    assert 'at iteration 2' in log and 'Iter: 1/4' not in log and 'Iter: 3/4' in log   # really resumed
    a = torch.load(osp.join(out, 'iter-4.pth'), weights_only=True)['model']
    b = torch.load(osp.join(resumed, 'iter-4.pth'), weights_only=True)['model']
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6, rtol=0) for k in a)

    run[-1] = '--master_port=%d' % _free_port()
    _run(run + ['test.py', '-i', '4'], exp, sub_env)
    _check_test_gather(exp)


def test_distributed_launch_two_processes(toy, tmp_path, sub_env):
    exp = toy.write_exp(tmp_path, 'la.exp')
    run = [sys.executable, '-m', 'torch.distributed.launch', '--nproc_per_node=2',
           '--master_port=%d' % _free_port()]
    _run(run + ['train.py'], exp, sub_env)
    _check_two_rank_run(exp)
    assert '--local-rank=1' in _argv(exp, 1)                    # the argument spelling torch >= 2.0 uses


def test_plain_python_single_process(toy, tmp_path, sub_env):
    exp = toy.write_exp(tmp_path, 'single.exp')
    stdout = _run([sys.executable, 'train.py', 'SOLVER.MAX_ITER', '3', 'SOLVER.CHECKPOINT_PERIOD', '2'], exp, sub_env)
    assert 'Iter: 3/3' in stdout and 'backend none (single process)' in stdout
    out = _out_dir(exp)
    assert sorted(f for f in os.listdir(out) if f.startswith('iter-')) == ['iter-2.pth', 'iter-3.pth', 'iter-last.pth']
    assert json.load(open(osp.join(out, 'config.json')))['SOLVER']['MAX_ITER'] == 3
    assert osp.isfile(osp.join(out, 'network.py'))


@pytest.mark.parametrize('argv', [['--local-rank=1'], ['--local_rank', '1'],
                                  ['SOLVER.MAX_ITER', '5', '--local-rank=1']])
def test_both_local_rank_spellings(argv):
    args = parse_args(train_parser(), argv)
    assert args.local_rank == 1
    assert args.opts == (['SOLVER.MAX_ITER', '5'] if len(argv) == 3 else [])
    t = parse_args(make_test_parser(), ['-i', '3', '--local_rank=0', 'TEST.IMS_PER_GPU', '4'])
    assert (t.iter, t.local_rank, t.opts) == (3, 0, ['TEST.IMS_PER_GPU', '4'])


@pytest.mark.parametrize('name', ['gpu', 'cdua', 'cpu:0', 'cuda:x', 'cuda:', 'GPU:1'])
def test_bad_device_names_raise(name, monkeypatch):
    from cvpack.engine.launch import setup_distributed
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    with pytest.raises(ValueError, match='MODEL.DEVICE'):
        setup_distributed(name)


def test_device_names_parse(monkeypatch):
    import torch
    from cvpack.engine.launch import resolve_device, setup_distributed
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    assert resolve_device('CPU') == ('cpu', None) and resolve_device(None)[1] is None
    assert setup_distributed('cpu').device == torch.device('cpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert resolve_device('cuda:1') == ('cuda', 1) and resolve_device('cuda') == ('cuda', None)


def test_auto_resume_is_decided_by_rank0(tmp_path, monkeypatch):
    """Other ranks follow rank 0's decision (broadcast), whatever their own file system shows."""
    import cvpack.dist as comm
    from cvpack.engine.checkpoint import auto_resume_path
    from cvpack.safe_load import CheckpointError
    last = tmp_path / 'iter-last.pth'
    torch.save({'model': {'w': torch.ones(1)}, 'iteration': 1}, str(last))
    assert auto_resume_path(str(last), True, True) == str(last)
    assert auto_resume_path(str(last), False, True) is None
    # a rank > 0 that sees a file rank 0 does not: rank 0 broadcast None, so it starts over too
    monkeypatch.setattr(comm, 'broadcast_object', lambda obj, src=0: (None, None))
    assert auto_resume_path(str(last), True, False) is None
    # rank 0 could not choose (no checkpoint loads): every rank stops with its message
    monkeypatch.setattr(comm, 'broadcast_object', lambda obj, src=0: (None, 'iter-3.pth: truncated'))
    with pytest.raises(CheckpointError, match='rank 0 could not choose.*iter-3.pth: truncated'):
        auto_resume_path(str(last), True, False)
    # rank 0 resumes from a file this rank lacks: every rank raises together, naming the ranks
    monkeypatch.setattr(comm, 'broadcast_object', lambda obj, src=0: ('/rank0/only/iter-last.pth', None))
    monkeypatch.setattr(comm, 'all_gather_object', lambda obj: [True, obj])
    with pytest.raises(FileNotFoundError, match=r'/rank0/only/iter-last.pth.*rank\(s\) \[1\]'):
        auto_resume_path(str(last), True, False)


def test_release_ddp_frees_the_wrapper_before_the_group_is_destroyed(tmp_path):
    """wrap_ddp keeps each rank's BN statistics (no buffer sync), without torch 2.13's FutureWarning about it.
    Trainer.release_ddp leaves no reference to the DDP object (whose reducer holds the process group), so
    destroy_process_group really frees the group (docs/ENGINE.md "Shutdown"); one gloo rank in this process."""
    import types
    import warnings
    import weakref

    import torch.distributed as dist

    from cvpack.engine.launch import cleanup_distributed
    from cvpack.engine.trainer import Trainer, wrap_ddp
    dist.init_process_group('gloo', store=dist.FileStore(str(tmp_path / 'store'), 1), rank=0, world_size=1)
    try:
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
        with warnings.catch_warnings():
            warnings.simplefilter('error')     # torch 2.13's "broadcast_buffers is deprecated" is silenced
            trainer = types.SimpleNamespace(model=model, ddp=wrap_ddp(model, None, False))
        assert trainer.ddp.require_forward_param_sync and not trainer.ddp.forward_sync_buffers
        trainer.ddp(torch.randn(2, 3, 8, 8)).sum().backward()
        wrapper = weakref.ref(trainer.ddp)
        Trainer.release_ddp(trainer)
        assert wrapper() is None and trainer.ddp is model
    finally:
        cleanup_distributed()   # (also drops the group from torch.distributed.nn.functional's defaults)


@pytest.mark.parametrize('fail', [False, True])
def test_train_main_releases_ddp_before_cleanup(toy, toy_exp, monkeypatch, fail):
    """train_main calls Trainer.release_ddp, then cleanup_distributed: after training and after a failure."""
    import cvpack.engine.trainer as trainer_mod
    calls = []
    monkeypatch.setattr(trainer_mod.Trainer, 'release_ddp', lambda self: calls.append('release'))
    monkeypatch.setattr(trainer_mod, 'cleanup_distributed', lambda: calls.append('cleanup'))
    if fail:
        def broken(self):
            raise RuntimeError('stopped in train()')
        monkeypatch.setattr(trainer_mod.Trainer, 'train', broken)
    exp, cfg = toy_exp
    argv = ['OUTPUT_DIR', osp.join(exp, 'out'), 'TENSORBOARD_DIR', 'None']
    if fail:
        with pytest.raises(RuntimeError, match='stopped in train'):
            trainer_mod.train_main(cfg, toy.build_model, argv=argv, dataset_builder=toy.dataset_builder,
                                   collate_fn=toy.collate)
    else:
        trainer_mod.train_main(cfg, toy.build_model, argv=argv, dataset_builder=toy.dataset_builder,
                               collate_fn=toy.collate)
    assert calls == ['release', 'cleanup']


_GROUP_FREED_SCRIPT = '''
import gc, json, os, sys, time, types, weakref
import torch
import torch.distributed as dist
from cvpack.engine.launch import cleanup_distributed, setup_distributed
from cvpack.engine.trainer import Trainer, wrap_ddp

def threads():
    names = set()
    for tid in os.listdir('/proc/self/task'):
        try:
            names.add(open('/proc/self/task/%s/comm' % tid).read().strip())
        except OSError:   # a thread that ended meanwhile
            pass
    return sorted(names)

setup_distributed('cpu')
if sys.argv[1] == 'late':   # as if first imported now (by an exp's own code), after the group exists
    import importlib
    import torch.distributed.nn.functional
    importlib.reload(torch.distributed.nn.functional)
model = torch.nn.Linear(2, 1)
trainer = types.SimpleNamespace(model=model, ddp=wrap_ddp(model, None, False))
trainer.ddp(torch.ones(1, 2)).sum().backward()
group = weakref.ref(dist.group.WORLD)
before = threads()
Trainer.release_ddp(trainer)
cleanup_distributed()
gc.collect()
alive = group() is not None
deadline = time.time() + 10   # gloo's threads end just after the group is freed, not always before we look
while [t for t in threads() if 'gloo' in t] and time.time() < deadline:
    time.sleep(0.02)
print(json.dumps({'alive': alive, 'before': before, 'after': threads()}))
'''


@pytest.mark.skipif(not osp.isdir('/proc/self/task'), reason='thread names from /proc (Linux)')
@pytest.mark.parametrize('imported', ['early', 'late'])
def test_cleanup_frees_the_gloo_group_and_its_threads(tmp_path, sub_env, imported):
    """After release_ddp + cleanup_distributed nothing holds the group: it is freed there and gloo's threads end,
    instead of living to interpreter exit, where gloo could abort a finished run (docs/ENGINE.md "Shutdown").
    The holder was torch.distributed.nn.functional: its functions take ``group=group.WORLD`` as a default
    argument, bound when DDP's constructor imports it (through torch._dynamo) after the group was created.
    'late': the module is (re)imported after setup_distributed; cleanup_distributed drops the group from those
    defaults. Two gloo ranks, each a fresh interpreter (plain subprocesses, no torchrun)."""
    script = tmp_path / 'group_freed.py'
    script.write_text(_GROUP_FREED_SCRIPT)
    env = dict(sub_env, WORLD_SIZE='2', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()))
    procs = [subprocess.Popen([sys.executable, str(script), imported], env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert 'pt_gloo_runloop' in result['before']   # (the check sees gloo's threads)
        assert not result['alive'], 'the process group outlived cleanup_distributed'
        assert not [t for t in result['after'] if 'gloo' in t], result['after']
