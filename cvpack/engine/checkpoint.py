"""Checkpoints: atomic save, ``iter-last.pth`` link, exact resume state, and weight loading
(docs/reference/rsn_mspn.md §6 "Checkpoint"/"Resume", docs/reference/defects.md R#8, R#12, R#21, R#23).

A checkpoint is a dict of tensors, dicts, lists, strings and numbers only, so the weights-only reader
(``cvpack.safe_load.load_torch_file``) reads it::

    {'model': state_dict without 'module.', 'optimizer': ..., 'optimizer_class': 'Adam' | 'AdamW' | 'SGD',
     'scheduler': ..., 'iteration': N,
     'sampler': {'iteration': N * SOLVER.ACCUMULATE (micro-batches drawn), 'seed': ...},
     'rng': {'python': ..., 'numpy': ..., 'torch': ..., 'cuda': [...]}, 'scaler': GradScaler state or {},
     'world_size': W, 'best': {'metric': 'AP', 'value': v, 'iteration': K} or None (TEST.EVAL_PERIOD)}

The original stored the same first four keys (so its files load here) and re-pointed ``iter-last.pth``
with a shell ``ln -s`` (POSIX only, silent failure); here ``os.symlink`` with a copy as fallback.
"""
import logging
import os
import os.path as osp
import random
import re
import shutil

import numpy as np
import torch

from .. import dist as comm
from ..safe_load import CheckpointError, load_torch_file
from ..utils import some_names
from ..weights import WeightsMismatchError, match_state

__all__ = ['rng_state', 'set_rng_state', 'numpy_state_to_list', 'numpy_state_from_list', 'save_checkpoint',
           'link_last', 'load_checkpoint', 'strip_prefix', 'load_model_weights', 'match_state', 'ModelMismatchError',
           'LAST_NAME', 'non_finite_tensors', 'check_training_checkpoint', 'list_checkpoints',
           'find_resume_checkpoint', 'move_checkpoints_aside', 'remove_stale_temporaries', 'space_note',
           'write_error', 'auto_resume_path']

logger = logging.getLogger(__name__)
LAST_NAME = 'iter-last.pth'


# One check for every loader: cvpack.weights.match_state; its error class under the name this module always had.
ModelMismatchError = WeightsMismatchError


def numpy_state_to_list(state):
    """A numpy ``RandomState.get_state()`` tuple as a weights_only-safe list (keys as an int64 tensor)."""
    name, keys, pos, has_gauss, cached = state
    return [str(name), torch.from_numpy(np.asarray(keys).astype(np.int64)), int(pos), int(has_gauss), float(cached)]


def numpy_state_from_list(state):
    """Inverse of :func:`numpy_state_to_list`: the tuple ``RandomState.set_state`` takes."""
    name, keys, pos, has_gauss, cached = state
    return (name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached))


def rng_state():
    """Python, numpy and torch (CPU, CUDA) RNG states as tensors/lists/numbers (weights_only-safe)."""
    version, mt, gauss = random.getstate()
    return {
        'python': [int(version), list(mt), gauss],
        'numpy': numpy_state_to_list(np.random.get_state()),
        'torch': torch.get_rng_state(),
        'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    """Inverse of :func:`rng_state` (CUDA states only when the device count matches)."""
    version, mt, gauss = state['python']
    random.setstate((int(version), tuple(int(v) for v in mt), gauss))
    np.random.set_state(numpy_state_from_list(state['numpy']))
    torch.set_rng_state(state['torch'])
    cuda = state.get('cuda') or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _fsync_dir(folder):
    """Make a rename/creation in ``folder`` durable (POSIX; a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _os_error(exc):
    """``exc`` or the OSError behind it (torch wraps the file's write error in a RuntimeError)."""
    while exc is not None and not isinstance(exc, OSError):
        exc = exc.__cause__ or exc.__context__
    return exc


def space_note(path):
    """"free space on the file system of FOLDER: X of Y GiB" (and the file size limit when one is set) for a file
    or folder ``path``."""
    import shutil as _shutil
    folder = osp.abspath(path) if osp.isdir(path) else osp.dirname(osp.abspath(path))
    while folder and not osp.isdir(folder):
        folder = osp.dirname(folder)
    try:
        usage = _shutil.disk_usage(folder)
        note = 'free space on the file system of %s: %.3f GiB of %.3f GiB' % (folder, usage.free / 2 ** 30,
                                                                             usage.total / 2 ** 30)
    except OSError as e:
        note = 'free space of %s unknown (%s)' % (folder, e)
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY:
            note += '; file size limit (ulimit -f): %d bytes' % soft
    except (ImportError, ValueError, OSError):
        pass
    return note


def write_error(exc, path, what):
    """An OSError for a failed write of ``path``: ``what``, the system's reason and :func:`space_note`."""
    os_err = _os_error(exc)
    reason = os_err.strerror if os_err is not None and os_err.strerror else str(exc).split('\n')[0]
    err = OSError(getattr(os_err, 'errno', None) or 0, '%s: %s while writing %s; %s'
                  % (what, reason, path, space_note(path)))
    err.written_path = path   # (not .filename: the message already names it)
    return err


def save_checkpoint(state, path):
    """Write ``state`` to ``path`` atomically and durably.

    A temporary ``path.tmp.<PID>`` in the same folder is written and fsynced, then ``os.replace``d onto
    ``path`` and the folder fsynced: after a crash or power loss ``path`` is either the previous file or the
    complete new one (without the fsync, a rename could reach the disk before the data). An exception removes the
    temporary file; a kill -9 leaves it, and :func:`remove_stale_temporaries` removes it at the next start.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = '%s.tmp.%d' % (path, os.getpid())
    try:
        try:
            with open(tmp, 'wb') as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
        except (OSError, RuntimeError) as e:   # torch reports a full disk as "[enforce fail ...] unexpected pos"
            raise write_error(e, tmp, 'could not write checkpoint %s' % path) from e
        os.replace(tmp, path)
        _fsync_dir(folder)
    finally:
        if osp.lexists(tmp):
            os.remove(tmp)
    return path


def link_last(path, last_name=LAST_NAME):
    """Point ``<folder>/iter-last.pth`` at ``path`` (relative symlink, swapped in atomically, folder fsynced).

    Where symlinks are impossible (some Windows / network filesystems) the file is copied instead.
    """
    folder = osp.dirname(osp.abspath(path))
    last = osp.join(folder, last_name)
    tmp = '%s.tmp.%d' % (last, os.getpid())
    if osp.lexists(tmp):
        os.remove(tmp)
    try:
        os.symlink(osp.basename(path), tmp)
    except (OSError, NotImplementedError, AttributeError):
        shutil.copyfile(path, tmp)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
    os.replace(tmp, last)
    _fsync_dir(folder)
    return last


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True   # exists (another user's process), or cannot tell: keep the file
    return True


def remove_stale_temporaries(folder, log=None):
    """Remove ``iter-*.pth.tmp.<PID>`` files of ``folder`` left by a save that was killed (kill -9, OOM killer): only
    those whose process is no longer running on this machine (a live PID may be a save in progress). Each
    removal is logged with its size. Call it on rank 0 at start. Returns the removed paths."""
    log = log or logger
    removed = []
    for name in sorted(os.listdir(folder)) if osp.isdir(folder) else ():
        m = re.fullmatch(r'iter-(?:\d+|last)\.pth\.tmp\.(\d+)', name)   # only our own temporaries
        path = osp.join(folder, name)
        if not m or not (osp.isfile(path) or osp.islink(path)) or _pid_alive(int(m.group(1))):
            continue
        size = osp.getsize(path) if osp.isfile(path) else 0
        os.remove(path)
        removed.append(path)
        log.warning('removed %s (%.1f MB): an unfinished save of process %s, which is no longer running',
                    path, size / 2 ** 20, m.group(1))
    return removed


def load_checkpoint(path):
    """Read one of our checkpoints on the CPU (``weights_only=True``); clear error when it is missing."""
    if not osp.isfile(path):
        hint = ' (a dangling link: its target %s is gone)' % os.readlink(path) if osp.islink(path) else ''
        raise FileNotFoundError('checkpoint not found: %s%s' % (path, hint))
    return load_torch_file(path)


def non_finite_tensors(obj, prefix=''):
    """Names of the floating-point tensors in a (nested) state holding NaN or inf, e.g. ``model.conv.weight``,
    ``optimizer.state.3.exp_avg``."""
    if torch.is_tensor(obj):
        return [prefix] if obj.is_floating_point() and not bool(torch.isfinite(obj).all()) else []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    out = []
    for k, v in items:
        out += non_finite_tensors(v, '%s.%s' % (prefix, k) if prefix else str(k))
    return out


def check_training_checkpoint(path, state=None):
    """Load ``path`` (unless ``state`` is given) and check it is a usable training checkpoint: a dict with a
    ``model`` state dict and only finite model and optimizer values. Returns the state; raises
    :class:`CheckpointError` / FileNotFoundError naming the file and what is wrong."""
    state = load_checkpoint(path) if state is None else state
    if not isinstance(state, dict) or not isinstance(state.get('model'), dict):
        what = 'keys %s' % sorted(map(str, state))[:10] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(path, 'not a training checkpoint (no "model" state dict; it holds %s); a file of '
                              'weights only is given with --weights / MODEL.WEIGHT' % what)
    bad = non_finite_tensors({'model': state['model'], 'optimizer': state.get('optimizer') or {}})
    if bad:
        raise CheckpointError(path, 'holds NaN/inf in %d tensors (%s): written after the training diverged'
                              % (len(bad), some_names(bad, 5)))
    return state


def list_checkpoints(folder):
    """``iter-N.pth`` files in ``folder`` (links included), newest (largest N) first."""
    found = []
    for name in os.listdir(folder) if osp.isdir(folder) else ():
        m = re.fullmatch(r'iter-(\d+)\.pth', name)
        if m:
            found.append((int(m.group(1)), osp.join(folder, name)))
    return [path for _, path in sorted(found, reverse=True)]


def find_resume_checkpoint(folder, log=None):
    """The checkpoint auto-resume continues from: the newest *loadable* one in ``folder``, never a silent restart.

    Candidates, in order: ``iter-last.pth`` when it is a file that is not one of the ``iter-N.pth`` (a copy made
    where links are impossible), then ``iter-N.pth`` by decreasing N. The newest iter-N is taken even when
    ``iter-last.pth`` points to an older one (a run killed between the save and the re-link). Each candidate
    is loaded and checked (:func:`check_training_checkpoint`): a truncated or corrupt file, a dangling
    ``iter-last.pth`` link or a checkpoint with NaN/inf is skipped with a warning that names it and says why.

    Returns:
        (path, state) of the first loadable candidate, or None when ``folder`` holds no checkpoint at all.
    Raises:
        CheckpointError naming every file and its fault when checkpoints exist but none loads: starting over
        would overwrite them (move them away, or use ``--no-auto-resume``, which moves them aside).
    """
    log = log or logger
    last = osp.join(folder, LAST_NAME)
    candidates = list_checkpoints(folder)
    real = [osp.realpath(p) for p in candidates]
    if osp.islink(last) and not osp.exists(last):
        log.warning('auto-resume: %s is a dangling link (its target %s is gone); looking for the newest loadable '
                    'iter-N.pth instead', last, os.readlink(last))
    elif osp.isfile(last):
        if osp.realpath(last) not in real:
            candidates.insert(0, last)
        elif candidates and osp.realpath(last) != real[0]:
            log.warning('auto-resume: %s points to %s but %s is newer (the link was not updated: a run stopped '
                        'between the save and the re-link?); trying the newest first', last,
                        osp.basename(osp.realpath(last)), osp.basename(candidates[0]))
    errors = []
    for path in candidates:
        try:
            state = check_training_checkpoint(path)
        except (CheckpointError, FileNotFoundError, OSError) as e:
            log.warning('auto-resume: skipping %s', e)
            errors.append(str(e))
            continue
        if errors:
            log.warning('auto-resume: resuming from %s, the newest checkpoint that loads (%d newer skipped, see '
                        'above)', path, len(errors))
        return path, state
    if errors:
        raise CheckpointError(folder, 'auto-resume: checkpoints exist but none can be loaded, and starting over '
                              'would overwrite them: %s. Move them away, resume one with -c, or pass '
                              '--no-auto-resume (the old files are moved aside)' % ' | '.join(errors))
    return None


def move_checkpoints_aside(folder, log=None):
    """Start-over policy of ``train.py --no-auto-resume``: the previous run's checkpoints are kept, not overwritten.

    Moves ``iter-N.pth``, ``iter-last.pth`` (and the evaluation's ``best.pth`` and ``metrics.jsonl``) of
    ``folder`` into a new ``folder/previous-run-<UTC time>/`` (``iter-last.pth`` is a relative link, so it
    still points to the moved file there) and logs what moved where. Call it on rank 0 only. Returns the new
    folder, or None when there was nothing to move.
    """
    import time
    log = log or logger
    names = [osp.basename(p) for p in list_checkpoints(folder)]
    if osp.lexists(osp.join(folder, LAST_NAME)):
        names.append(LAST_NAME)
    if not names:
        return None
    # the evaluation during training's best checkpoint and metrics log belong to that run too
    names += [n for n in ('best.pth', 'metrics.jsonl') if osp.lexists(osp.join(folder, n))]
    stamp = time.strftime('%Y%m%d-%H%M%S', time.gmtime())
    dest, n = osp.join(folder, 'previous-run-' + stamp), 1
    while osp.lexists(dest):
        n += 1
        dest = osp.join(folder, 'previous-run-%s-%d' % (stamp, n))
    os.makedirs(dest)
    for name in names:
        os.replace(osp.join(folder, name), osp.join(dest, name))
    log.warning('--no-auto-resume: moved the previous run\'s %d checkpoint files (%s) to %s; training starts '
                'from scratch', len(names), some_names(names, 8), dest)
    return dest


def strip_prefix(state_dict, prefix='module.'):
    """Drop a leading ``module.`` (DDP) from every key that has it (the original's saved files may keep it)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def _cfg_value(cfg, key, source):
    """The value of the dotted ``key`` in ``cfg`` (tuples as lists). A key the exp does not have is an error, as in
    :func:`cvpack.weights.apply_overrides`: no command-line override could add it."""
    node = cfg
    for part in key.split('.'):
        if not isinstance(node, dict) or part not in node:
            raise KeyError('%s: the weights need config key %r, which this exp does not have' % (source, key))
        node = node[part]
    return list(node) if isinstance(node, tuple) else node


def load_model_weights(model, source, strict=True, log=None, cfg=None):
    """Load weights for fine-tuning or testing into an already built model.

    Any format :mod:`cvpack.weights` knows (our checkpoints, the original repos' ``{'model': state_dict}`` with or
    without ``module.`` prefixes, ``{'state_dict': ...}``, a bare state dict, mmpose's files, an exp's project
    formats), from a path or URL, read by ``cvpack.safe_load`` (weights only). Errors name the file and say what
    is wrong (:func:`cvpack.weights.match_state`): with ``strict`` (the default for testing) missing and unexpected
    keys are errors; non-strict loading that fits *no* tensor is an error too (it would silently train from random
    weights). The logged count is the number of tensors copied. With ``cfg``, weights that need config
    overrides the model was not built with (e.g. mmpose's ``MODEL.CONV_BIAS False``) are refused with the
    KEY VALUE pairs to add.

    Returns:
        (missing, unexpected): lists of key names.
    """
    from ..weights import prepare
    log = log or logger
    prepared = prepare(cfg, source)
    if cfg is not None:
        differ = {k: v for k, v in prepared.cfg_overrides.items() if _cfg_value(cfg, k, source) != v}
        if differ:
            pairs = ' '.join('%s %s' % (k, str(v).replace(' ', '')) for k, v in differ.items())
            raise ValueError('%s (format %s) needs config settings this model was not built with: %s. Add them to '
                             'the command line (%s) or the exp config' % (source, prepared.format,
                                                                         ', '.join(sorted(differ)), pairs))
    state = prepared.state_dict
    loaded, missing, unexpected = match_state(model, state, source, strict)
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    log.info('loaded weights from %s: %d tensors loaded, %d missing %s, %d unexpected %s (format %s)', source,
             len(loaded), len(missing), missing[:10], len(unexpected), unexpected[:10], prepared.format)
    return missing, unexpected


def auto_resume_path(last, auto, is_main, log=None, loaded=None):
    """The checkpoint auto-resume continues from (the same answer on every rank), or None to start from scratch.

    ``last`` is OUTPUT_DIR/iter-last.pth. Rank 0 picks the newest loadable checkpoint of that folder
    (:func:`cvpack.engine.checkpoint.find_resume_checkpoint`: a dangling iter-last link or a truncated,
    corrupt or NaN checkpoint is skipped, with a warning naming it; a folder whose checkpoints all fail is an
    error naming each, never a silent restart) and broadcasts the path or the error, so every rank resumes or
    stops together. Ranks deciding by themselves diverged on multi-node runs without a shared file system. A
    rank that lacks the file rank 0 resumes from is an error on every rank together (gathered first, so no
    rank waits forever in a collective). ``loaded`` (a dict) receives rank 0's already-read state under 'state'.
    """
    choice, error = None, None
    if is_main and auto:
        try:
            found = find_resume_checkpoint(osp.dirname(last), log)
        except Exception as e:  # re-raised below on every rank
            error = e
        else:
            if found is not None:
                choice = found[0]
                if loaded is not None:
                    loaded['state'] = found[1]
    path, message = comm.broadcast_object((choice, None if error is None else str(error)))
    if message is not None:
        if error is not None:
            raise error
        raise CheckpointError(osp.dirname(last), 'rank 0 could not choose a checkpoint to resume: ' + message)
    if path:
        missing = [r for r, ok in enumerate(comm.all_gather_object(osp.isfile(path))) if not ok]
        if missing:
            raise FileNotFoundError('auto-resume: rank 0 resumes from %s but rank(s) %s cannot read it; put '
                                    'OUTPUT_DIR on a shared file system or copy the file (or --no-auto-resume)'
                                    % (path, missing))
    return path
