"""Checkpoint faults a hostile but realistic user meets (issue #12, "Security" and "Checkpoints and resume"), each
reproduced through the toy exp's real ``train.py`` / ``test.py`` run as a subprocess."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from cvpack.engine import checkpoint as ck

TIMEOUT = 120


def run(exp, script, args, env=None, preexec_fn=None):
    """``python script args`` in the exp folder; returns (exit code, stdout + stderr)."""
    full = dict(os.environ, PYTHONPATH=os.environ.get('CVPACK_TEST_REPO', _repo()), OMP_NUM_THREADS='1',
                MKL_NUM_THREADS='1')
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        full.pop(key, None)
    full.update(env or {})
    proc = subprocess.run([sys.executable, script] + [str(a) for a in args], cwd=exp, env=full,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT,
                          preexec_fn=preexec_fn)
    return proc.returncode, proc.stdout


def _repo():
    return osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def ok(exp, script, args, **kw):
    rc, out = run(exp, script, args, **kw)
    assert rc == 0, out[-4000:]
    return out


def fails(exp, script, args, **kw):
    rc, out = run(exp, script, args, **kw)
    assert rc != 0, out[-4000:]
    return out


@pytest.fixture
def exp(toy_exp):
    """(exp folder, OUTPUT_DIR) of a fresh toy exp. OUTPUT_DIR exists: the toy train.py writes its parameters
    there even when a run is pointed elsewhere."""
    folder, cfg = toy_exp
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    return folder, cfg.OUTPUT_DIR


# ------------------------------------------------------------------------------------------------- 1. security
def test_code_in_weight_files_never_runs_through_the_scripts(exp, tmp_path, http_root, evil):
    """A .pth whose unpickling calls os.system, from a URL or a path, through every flag that reads weights:
    refused (non-zero exit, the file named), nothing executed, nothing trained."""
    folder, out = exp
    root, base = http_root
    torch.save({'model': {'conv.weight': torch.ones(4, 3, 3, 3)}, 'x': evil}, str(root / 'evil.pth'))
    torch.save({'model': {'conv.weight': torch.ones(4, 3, 3, 3)}, 'x': evil}, str(tmp_path / 'local_evil.pth'))
    url = base + 'evil.pth'
    cases = [('test.py', ['MODEL.WEIGHT', url]), ('test.py', ['--checkpoint', url]),
             ('test.py', ['--checkpoint', tmp_path / 'local_evil.pth']),
             ('train.py', ['--weights', url]),
             ('train.py', ['MODEL.PRETRAINED', url]), ('train.py', ['-c', tmp_path / 'local_evil.pth'])]
    for i, (script, args) in enumerate(cases):
        env = {'TORCH_HOME': str(tmp_path / ('hub%d' % i))}   # a fresh cache: every case downloads
        text = fails(folder, script, args, env=env)
        named = 'evil.pth' if '-c' in args or str(tmp_path) in str(args[-1]) else url
        assert 'UnsafeFileError' in text and named in text and 'posix.system' in text, (script, args, text[-3000:])
        assert 'weights_only=False' not in text
        assert not osp.exists(evil.marker), (script, args)
    assert not glob.glob(osp.join(out, 'iter-*.pth'))
    # auto-resume: such a file as the only checkpoint of OUTPUT_DIR is refused, and the run stops naming it
    os.replace(str(tmp_path / 'local_evil.pth'), osp.join(out, 'iter-3.pth'))
    text = fails(folder, 'train.py', [])
    assert 'skipping %s: refused' % osp.join(out, 'iter-3.pth') in text and 'none can be loaded' in text
    assert not osp.exists(evil.marker)


def _unsafe_calls(path):
    """Calls in a source file that could unpickle a file outside cvpack.safe_load (found in its syntax tree)."""
    import ast
    names = {'torch.load', 'pickle.load', 'pickle.loads', 'pickle.Unpickler', 'cPickle.load', 'dill.load',
             'joblib.load', 'torch.hub.load', 'torch.hub.load_state_dict_from_url', 'hub.load_state_dict_from_url',
             'load_state_dict_from_url', 'torch.jit.load'}
    out = []
    for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            pickled = name in ('np.load', 'numpy.load') and any(
                k.arg == 'allow_pickle' and not (isinstance(k.value, ast.Constant) and not k.value.value)
                for k in node.keywords)
            if name in names or pickled:
                out.append('%d: %s' % (node.lineno, ast.unparse(node)))
    return out


def test_no_load_bypasses_safe_load(repo_root):
    """Every read of a weight/pickle file in the shipped code goes through cvpack.safe_load."""
    bad = []
    for top in ('cvpack', 'projects', 'tools'):
        for path in glob.glob(osp.join(repo_root, top, '**', '*.py'), recursive=True):
            if path != osp.join(repo_root, 'cvpack', 'safe_load.py'):
                bad += ['%s:%s' % (osp.relpath(path, repo_root), c) for c in _unsafe_calls(path)]
    assert not bad, '\n'.join(bad)
    # the scan itself finds such calls
    assert _unsafe_calls(osp.join(repo_root, 'cvpack', 'safe_load.py'))


# ---------------------------------------------------------------------------------------- 2. counts that are true
@pytest.mark.slow
def test_loaded_tensor_counts_are_what_was_copied(exp, tmp_path):
    """--weights / MODEL.PRETRAINED log the number of tensors copied (the count was model size minus missing:
    115 "loaded" from a file with none); a file sharing no tensor with the model is an error, not a run."""
    folder, out = exp
    head = {'head.weight': torch.full((2, 4, 1, 1), 0.5), 'head.bias': torch.zeros(2), 'other.w': torch.ones(1)}
    torch.save({'model': head}, str(tmp_path / 'head.pth'))
    torch.save({'model': {'other.w': torch.ones(1)}}, str(tmp_path / 'foreign.pth'))
    short = ['SOLVER.MAX_ITER', '2', 'OUTPUT_DIR']
    text = ok(folder, 'train.py', ['--weights', tmp_path / 'head.pth'] + short + [tmp_path / 'w'])
    assert "head.pth: 2 tensors loaded, 6 missing" in text and "1 unexpected ['other.w']" in text
    text = ok(folder, 'train.py', ['MODEL.PRETRAINED', tmp_path / 'head.pth'] + short + [tmp_path / 'p'])
    assert 'loaded 2 tensors; 6 model tensors not in the file; 1 file tensors unused' in text
    for args in (['--weights', tmp_path / 'foreign.pth'], ['MODEL.PRETRAINED', tmp_path / 'foreign.pth']):
        text = fails(folder, 'train.py', args + short + [tmp_path / 'f'])
        assert 'foreign.pth' in text and ('none of its 1 tensors belongs to the ToyNet model' in text
                                          or 'no tensor of this file was loaded into ToyNet' in text), text[-2000:]
        assert 'Iter: 1/2' not in text


# ------------------------------------------------------------------------- 3. auto-resume never quietly restarts
def _digests(out):
    import hashlib
    return {osp.basename(p): hashlib.md5(open(p, 'rb').read()).hexdigest()
            for p in glob.glob(osp.join(out, 'iter-[0-9]*.pth'))}


def _truncate(path):
    data = open(path, 'rb').read()
    os.remove(path)                       # a new inode: a link to it stays a link
    open(path, 'wb').write(data[:len(data) // 2])


@pytest.mark.slow
def test_auto_resume_takes_newest_loadable_checkpoint(exp):
    """A dangling iter-last.pth link, then a truncated latest checkpoint: resume from the newest iter-N.pth that
    loads, saying which and why (it used to start over at iteration 1 and overwrite iter-1..3, exit 0). When no
    checkpoint loads: stop, naming each file, and touch nothing."""
    folder, out = exp
    args = ['SOLVER.MAX_ITER', '4', 'SOLVER.CHECKPOINT_PERIOD', '1']
    ok(folder, 'train.py', args)
    before = _digests(out)
    os.remove(osp.join(out, 'iter-4.pth'))                      # iter-last.pth -> iter-4.pth dangles
    text = ok(folder, 'train.py', args)
    assert 'iter-last.pth is a dangling link (its target iter-4.pth is gone)' in text
    assert 'resumed from %s at iteration 3' % osp.join(out, 'iter-3.pth') in text
    assert 'Iter: 4/4' in text and 'Iter: 1/4' not in text
    after = _digests(out)
    assert {k: after[k] for k in ('iter-1.pth', 'iter-2.pth', 'iter-3.pth')} == \
        {k: before[k] for k in ('iter-1.pth', 'iter-2.pth', 'iter-3.pth')}
    assert osp.realpath(osp.join(out, 'iter-last.pth')) == osp.join(osp.realpath(out), 'iter-4.pth')

    _truncate(osp.join(out, 'iter-4.pth'))                      # the latest checkpoint is corrupt
    text = ok(folder, 'train.py', args)
    assert 'auto-resume: skipping %s: truncated or corrupt' % osp.join(out, 'iter-4.pth') in text
    assert 'resuming from %s, the newest checkpoint that loads (1 newer skipped' % osp.join(out, 'iter-3.pth') in text
    assert 'Iter: 4/4' in text and 'Iter: 1/4' not in text

    for name in ('iter-1.pth', 'iter-2.pth', 'iter-3.pth', 'iter-4.pth'):
        _truncate(osp.join(out, name))
    before = _digests(out)
    text = fails(folder, 'train.py', args)
    assert 'checkpoints exist but none can be loaded' in text
    for name in ('iter-1.pth', 'iter-2.pth', 'iter-3.pth', 'iter-4.pth'):
        assert '%s: truncated or corrupt' % osp.join(out, name) in text
    assert 'Iter: 1/4' not in text and _digests(out) == before


# ------------------------------------------------------------------------ 4. load errors name the file and fault
@pytest.mark.slow
def test_every_checkpoint_flag_names_the_file_and_the_fault(exp, toy, tmp_path):
    """-c, --weights, test.py --checkpoint / MODEL.WEIGHT / iter-last.pth: the message names the file and says
    what is wrong (truncated, not weights, another network with the differing shapes, a dangling link)."""
    folder, out = exp
    net = toy.ToyNet().state_dict()
    good = {'model': net, 'iteration': 2}
    torch.save(good, str(tmp_path / 'good.pth'))
    data = open(tmp_path / 'good.pth', 'rb').read()
    open(tmp_path / 'trunc.pth', 'wb').write(data[:len(data) // 2])
    open(tmp_path / 'text.pth', 'w').write('{"not": "weights"}')
    torch.save(net, str(tmp_path / 'bare.pth'))                        # weights only: for --weights, not -c
    other = dict(net, **{'head.weight': torch.zeros(3, 4, 1, 1), 'head.bias': torch.zeros(3)})  # 3 keypoints
    torch.save({'model': other, 'iteration': 2}, str(tmp_path / 'other.pth'))
    shapes = 'head.weight: file (3, 4, 1, 1) vs model (2, 4, 1, 1); head.bias: file (3,) vs model (2,)'
    cases = [
        ('train.py', ['-c', tmp_path / 'trunc.pth'], 'trunc.pth: truncated or corrupt'),
        ('train.py', ['-c', tmp_path / 'other.pth'], 'other.pth: does not fit the ToyNet model (another exp'),
        ('train.py', ['--weights', tmp_path / 'text.pth'], 'text.pth: not a PyTorch weight file'),
        ('train.py', ['-c', tmp_path / 'bare.pth'], 'bare.pth: not a training checkpoint (no "model" state dict'),
        ('test.py', ['--checkpoint', tmp_path / 'other.pth'], shapes),
        ('test.py', ['MODEL.WEIGHT', tmp_path / 'trunc.pth'], 'trunc.pth: truncated or corrupt'),
    ]
    for script, args, message in cases:
        text = fails(folder, script, args + ['SOLVER.MAX_ITER', '2'] * (script == 'train.py'))
        assert message in text, (script, args, text[-3000:])
        assert str(tmp_path) in text and 'weights_only' not in text
    # iter-last.pth dangling: test.py says so instead of quietly scoring the starting MODEL.WEIGHT
    os.symlink('iter-8.pth', osp.join(out, 'iter-last.pth'))
    text = fails(folder, 'test.py', ['MODEL.WEIGHT', tmp_path / 'good.pth'])
    assert 'iter-last.pth (a dangling link: its target iter-8.pth is gone)' in text, text[-3000:]


# ---------------------------------------------------------------------------- 5. no poisoned checkpoint is saved
@pytest.mark.slow
def test_non_finite_weights_are_never_saved(exp):
    """A finite loss whose gradient is NaN (iteration 2) makes the weights NaN: the save of that same iteration
    refuses (it used to write iter-2.pth with NaN and link it as last; the loss guard fired one iteration
    later), exit non-zero, iter-last.pth still -> iter-1.pth, and auto-resume / test.py keep working."""
    folder, out = exp
    args = ['SOLVER.MAX_ITER', '4', 'SOLVER.CHECKPOINT_PERIOD', '1']
    text = fails(folder, 'train.py', args + ['MODEL.TOY_NAN_GRAD_AT', '2'])
    assert 'FloatingPointError: iteration 2: NaN/inf in' in text and 'conv.weight' in text, text[-3000:]
    assert 'iter-2.pth was NOT written; iter-last.pth still points to iter-1.pth' in text
    assert 'Iter: 3/4' not in text
    log = open(osp.join(out, 'log.txt')).read()                        # the crash is in log.txt (item 9)
    assert 'training stopped by FloatingPointError: iteration 2: NaN/inf' in log and 'Traceback' in log
    assert sorted(os.listdir(out)).count('iter-2.pth') == 0 and not glob.glob(osp.join(out, '*.tmp.*'))
    assert osp.realpath(osp.join(out, 'iter-last.pth')) == osp.join(osp.realpath(out), 'iter-1.pth')
    assert not ck.non_finite_tensors(ck.load_checkpoint(osp.join(out, 'iter-last.pth')))
    text = ok(folder, 'train.py', args)                                 # resumes from iter-1 and finishes
    assert 'resumed from %s at iteration 1' % osp.join(out, 'iter-1.pth') in text and 'Iter: 4/4' in text


# ------------------------------------------------------------------- 6. --no-auto-resume keeps the old checkpoints
@pytest.mark.slow
def test_no_auto_resume_moves_old_checkpoints_aside(exp):
    """--no-auto-resume in a folder with checkpoints used to overwrite them silently: they are moved, unchanged,
    into OUTPUT_DIR/previous-run-<time>/ (iter-last.pth still resolving there), and the log says so."""
    folder, out = exp
    ok(folder, 'train.py', ['SOLVER.MAX_ITER', '2', 'SOLVER.CHECKPOINT_PERIOD', '1'])
    before = _digests(out)
    text = ok(folder, 'train.py', ['--no-auto-resume', 'SOLVER.MAX_ITER', '2', 'SOLVER.CHECKPOINT_PERIOD', '2',
                                   'SOLVER.BASE_LR', '0.02'])   # another run: another iter-2.pth
    moved = glob.glob(osp.join(out, 'previous-run-*'))
    assert len(moved) == 1 and "--no-auto-resume: moved the previous run's 3 checkpoint files" in text
    assert moved[0] in text and 'Iter: 1/2' in text
    assert _digests(moved[0]) == before
    assert osp.realpath(osp.join(moved[0], 'iter-last.pth')) == osp.realpath(osp.join(moved[0], 'iter-2.pth'))
    assert sorted(_digests(out)) == ['iter-2.pth'] and _digests(out)['iter-2.pth'] != before['iter-2.pth']
    assert 'moved the previous run' in open(osp.join(out, 'log.txt')).read()


# ------------------------------------------------------------------ 7. durable saves, no leftovers of a kill -9
def test_save_fsyncs_file_before_rename_and_folder_after(toy, toy_exp, tmp_path, monkeypatch):
    """train_main's saves: the temporary file's data is fsynced before os.replace, the folder after it
    (without, a crash could leave a renamed but empty checkpoint)."""
    from cvpack.engine import train_main
    _, cfg = toy_exp
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        target = os.readlink('/proc/self/fd/%d' % fd)
        events.append(('fsync', 'dir' if osp.isdir(target) else osp.basename(target)))
        real_fsync(fd)

    def replace(src, dst):
        events.append(('replace', osp.basename(src), osp.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, 'fsync', fsync)
    monkeypatch.setattr(os, 'replace', replace)
    train_main(cfg, toy.build_model, argv=['SOLVER.MAX_ITER', '2', 'SOLVER.CHECKPOINT_PERIOD', '2',
                                           'OUTPUT_DIR', str(tmp_path / 'out')],
               dataset_builder=toy.dataset_builder, collate_fn=toy.collate)
    pid = os.getpid()
    i = events.index(('replace', 'iter-2.pth.tmp.%d' % pid, 'iter-2.pth'))
    assert events[i - 1] == ('fsync', 'iter-2.pth.tmp.%d' % pid) and events[i + 1] == ('fsync', 'dir')
    j = events.index(('replace', 'iter-last.pth.tmp.%d' % pid, 'iter-last.pth'))
    assert j > i and events[j + 1] == ('fsync', 'dir')


@pytest.mark.slow
def test_stale_temporaries_of_dead_saves_are_removed(exp):
    """kill -9 during a save leaves iter-N.pth.tmp.<PID> (157 MB seen) that no run removed: the next run
    removes those whose process is gone, logging each, and keeps one whose process is alive."""
    folder, out = exp
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    stale = osp.join(out, 'iter-8.pth.tmp.%d' % dead.pid)
    live = osp.join(out, 'iter-8.pth.tmp.%d' % os.getpid())          # this process: alive, maybe saving
    for path in (stale, live):
        open(path, 'wb').write(b'PK\x03\x04' + b'\0' * 2 ** 20)
    text = ok(folder, 'train.py', ['SOLVER.MAX_ITER', '2'])
    assert 'removed %s (1.0 MB): an unfinished save of process %d, which is no longer running' % (stale, dead.pid) \
        in text
    assert not osp.exists(stale) and osp.exists(live) and live not in text


# ---------------------------------------------------------------------------------- 8. resume at/past MAX_ITER
@pytest.mark.slow
def test_resume_at_or_past_max_iter_says_so(exp):
    """A checkpoint at MAX_ITER: "already finished", exit 0, nothing rewritten; past MAX_ITER (MAX_ITER lowered):
    an error naming the checkpoint and both numbers (it printed "training finished: -2 iterations", exit 0)."""
    folder, out = exp
    ok(folder, 'train.py', ['SOLVER.MAX_ITER', '4', 'SOLVER.CHECKPOINT_PERIOD', '2'])
    before = _digests(out)
    text = ok(folder, 'train.py', ['SOLVER.MAX_ITER', '4', 'SOLVER.CHECKPOINT_PERIOD', '2'])
    assert 'iter-4.pth is at iteration 4 = SOLVER.MAX_ITER: this run has already finished' in text
    assert 'Iter:' not in text and _digests(out) == before
    text = fails(folder, 'train.py', ['SOLVER.MAX_ITER', '2'])
    assert 'iter-4.pth is at iteration 4, past the effective SOLVER.MAX_ITER 2 of this run' in text
    assert 'training finished: -2' not in text and _digests(out) == before


# ------------------------------------------------------------------- 9. the crash in log.txt, disk-full messages
def _file_size_limit(limit):
    def apply():   # in the child: writes past `limit` bytes fail with EFBIG instead of killing it (SIGXFSZ)
        import resource
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_failed_save_names_path_and_space_and_reaches_log(exp):
    """A save that cannot be written (here: the file size limit, as a full disk would) used to end with torch's
    "[enforce fail at inline_container.cc:672] unexpected pos" and nothing in log.txt: the error names the
    checkpoint, the reason and the free space, log.txt has the traceback, no file is left behind."""
    folder, out = exp
    text = fails(folder, 'train.py', ['SOLVER.MAX_ITER', '2'], preexec_fn=_file_size_limit(16384))
    path = osp.join(out, 'iter-2.pth')
    assert 'could not write checkpoint %s: File too large while writing %s.tmp.' % (path, path) in text, text[-3000:]
    assert 'free space on the file system of %s' % out in text and 'file size limit (ulimit -f): 16384' in text
    log = open(osp.join(out, 'log.txt')).read()
    assert 'training stopped by OSError: [Errno 27] could not write checkpoint %s' % path in log
    assert 'Traceback' in log and 'inline_container' in log                 # torch's error, as the cause
    assert not glob.glob(osp.join(out, 'iter-*'))


# ------------------------------------------------------------------------------- the same decisions on 2 ranks
@pytest.mark.slow
def test_two_ranks_stop_together_and_resume_from_the_same_fallback(exp):
    """torchrun, 2 gloo processes: the NaN-state verdict (rank 0's) and the auto-resume choice (rank 0's, after
    skipping a truncated latest file) are broadcast, so both ranks stop, or resume from the same file, with no
    rank left waiting in a collective."""
    import socket
    folder, out = exp

    def torchrun(args):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        return ['-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=%d' % port, 'train.py'] + args

    args = ['SOLVER.MAX_ITER', '4', 'SOLVER.CHECKPOINT_PERIOD', '1']
    cmd = torchrun(args + ['MODEL.TOY_NAN_GRAD_AT', '3'])
    text = fails(folder, cmd[0], cmd[1:])
    assert text.count('FloatingPointError: iteration 3: NaN/inf in') == 2, text[-4000:]   # both ranks
    assert sorted(_digests(out)) == ['iter-1.pth', 'iter-2.pth']
    _truncate(osp.join(out, 'iter-2.pth'))
    cmd = torchrun(args)
    ok(folder, cmd[0], cmd[1:])
    log = open(osp.join(out, 'log.txt')).read()
    assert 'skipping %s: truncated or corrupt' % osp.join(out, 'iter-2.pth') in log
    assert 'resumed from %s at iteration 1' % osp.join(out, 'iter-1.pth') in log and 'Iter: 4/4' in log
    p0, p1 = (torch.load(osp.join(out, 'params_rank%d.pt' % r), weights_only=True) for r in (0, 1))
    assert all(torch.equal(p0[k], p1[k]) for k in p0)                   # both ranks resumed from the same file


def test_fatal_write_error_note_names_folder_and_space(tmp_path):
    """A write error without a file name (file.write() gives none; e.g. log or config files on a full disk)
    still gets the folder and its free space in log.txt; other errors get no such note."""
    import errno
    import logging
    from cvpack.engine.logger import log_fatal
    log_file = str(tmp_path / 'log.txt')
    handler = logging.FileHandler(log_file)
    logging.getLogger('cvpack').addHandler(handler)
    try:
        for exc in (OSError(errno.ENOSPC, 'No space left on device'), FileNotFoundError(2, 'gone', 'x.json')):
            try:
                raise exc
            except OSError as e:
                log_fatal(e, log_file)
    finally:
        logging.getLogger('cvpack').removeHandler(handler)
        handler.close()
    text = open(log_file).read()
    assert ('training stopped by OSError: [Errno 28] No space left on device (writing %s; free space on the file '
            'system of %s: ' % (tmp_path, tmp_path)) in text
    assert "training stopped by FileNotFoundError: [Errno 2] gone: 'x.json'\n" in text and text.count('Traceback') == 2
