"""Checkpoints: atomic save, ``iter-last.pth`` link, exact resume state, and weight loading
(spec §6 "Checkpoint"/"Resume", bugs #8, #12, #21, #23).

A checkpoint is a dict of tensors, dicts, lists, strings and numbers only, so ``torch.load(path,
weights_only=True)`` reads it::

    {'model': state_dict without 'module.', 'optimizer': ..., 'scheduler': ..., 'iteration': N,
     'sampler': {'iteration': N, 'seed': ...}, 'rng': {'python': ..., 'numpy': ..., 'torch': ..., 'cuda': [...]},
     'scaler': GradScaler state or {}, 'world_size': W}

The original stored the same first four keys (so its files load here) and re-pointed ``iter-last.pth``
with a shell ``ln -s`` (POSIX only, silent failure); here ``os.symlink`` with a copy as fallback.
"""
import logging
import os
import os.path as osp
import random
import shutil

import numpy as np
import torch

from ..safe_load import CheckpointError, load_torch_file

__all__ = ['rng_state', 'set_rng_state', 'numpy_state_to_list', 'numpy_state_from_list', 'save_checkpoint', 'link_last', 'load_checkpoint',
           'strip_prefix', 'load_model_weights', 'match_state', 'ModelMismatchError', 'LAST_NAME']

logger = logging.getLogger(__name__)
LAST_NAME = 'iter-last.pth'


class ModelMismatchError(CheckpointError):
    """A readable weight file that does not fit the model (shapes, keys, non-tensors); the message lists them."""


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


def save_checkpoint(state, path):
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``.

    An interrupted write leaves the previous file untouched (the temporary one is removed).
    """
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = '%s.tmp.%d' % (path, os.getpid())
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if osp.lexists(tmp):
            os.remove(tmp)
    return path


def link_last(path, last_name=LAST_NAME):
    """Point ``<folder>/iter-last.pth`` at ``path`` (relative symlink, swapped in atomically).

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
    os.replace(tmp, last)
    return last


def load_checkpoint(path):
    """Read one of our checkpoints on the CPU (``weights_only=True``); clear error when it is missing."""
    if not osp.isfile(path):
        hint = ' (dangling link)' if osp.lexists(path) else ''
        raise FileNotFoundError('checkpoint not found: %s%s' % (path, hint))
    return load_torch_file(path)


def strip_prefix(state_dict, prefix='module.'):
    """Drop a leading ``module.`` (DDP) from every key that has it (the original's saved files may keep it)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def _examples(keys, n=5):
    keys = list(keys)
    return '%s%s' % (', '.join(keys[:n]), ' ... (%d in all)' % len(keys) if len(keys) > n else '')


def match_state(model, state, source, strict):
    """Compare a state dict read from ``source`` with ``model``; raise :class:`ModelMismatchError` naming the
    file and the differing keys/shapes when it cannot be used.

    Shape mismatches and non-tensor entries are always errors; with ``strict`` so are missing and unexpected
    keys; without, a file sharing no tensor with the model is still an error (it is another network: loading
    it would silently train from the random init). Returns ``(loaded, missing, unexpected)`` key lists, where
    ``loaded`` is what ``model.load_state_dict(state, strict=False)`` will copy.
    """
    target = model.state_dict()
    not_tensors = [k for k, v in state.items() if not torch.is_tensor(v)]
    if not_tensors:
        raise ModelMismatchError(source, 'entries that are not tensors: %s' % _examples(not_tensors))
    loaded = [k for k in state if k in target]
    missing = [k for k in target if k not in state and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in target]
    shapes = ['%s: file %s vs model %s' % (k, tuple(state[k].shape), tuple(target[k].shape))
              for k in loaded if tuple(state[k].shape) != tuple(target[k].shape)]
    name = type(model).__name__
    if shapes:
        raise ModelMismatchError(source, 'does not fit the %s model (another exp\'s network?): %d shape '
                                 'mismatches: %s' % (name, len(shapes), '; '.join(shapes[:10])))
    if not [k for k in loaded if not k.endswith('num_batches_tracked')]:
        raise ModelMismatchError(source, 'none of its %d tensors belongs to the %s model (another network?): '
                                 'file keys %s; model keys %s' % (len(state), name, _examples(state) or 'none',
                                                                   _examples(target)))
    if strict and (missing or unexpected):
        raise ModelMismatchError(source, 'does not match the %s model (strict loading; --non-strict to allow): '
                                 '%d model tensors missing from the file: %s; %d file tensors unexpected: %s'
                                 % (name, len(missing), missing[:10], len(unexpected), unexpected[:10]))
    return loaded, missing, unexpected


def load_model_weights(model, source, strict=True, log=None):
    """Load weights for fine-tuning or testing.

    Accepts our checkpoints, the original repos' ``{'model': state_dict}`` (with or without ``module.``
    prefixes), ``{'state_dict': ...}`` and a bare state dict, from a path or URL, read by
    ``cvpack.safe_load`` (weights only). Errors name the file and say what is wrong (:func:`match_state`);
    missing and unexpected keys are logged, and the logged count is the number of tensors copied.

    Returns:
        (missing, unexpected): lists of key names.
    """
    from ..modeling.pretrained import load_state_dict
    log = log or logger
    state = strip_prefix(load_state_dict(source))
    loaded, missing, unexpected = match_state(model, state, source, strict)
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    log.info('loaded weights from %s: %d tensors loaded, %d missing %s, %d unexpected %s', source, len(loaded),
             len(missing), missing[:10], len(unexpected), unexpected[:10])
    return missing, unexpected
