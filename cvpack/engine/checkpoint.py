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

from ..safe_load import load_torch_file

__all__ = ['rng_state', 'set_rng_state', 'numpy_state_to_list', 'numpy_state_from_list', 'save_checkpoint', 'link_last', 'load_checkpoint',
           'strip_prefix', 'load_model_weights', 'LAST_NAME']

logger = logging.getLogger(__name__)
LAST_NAME = 'iter-last.pth'


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


def _cfg_value(cfg, key):
    node = cfg
    for part in key.split('.'):
        if not isinstance(node, dict) or part not in node:
            return '<missing>'
        node = node[part]
    return list(node) if isinstance(node, tuple) else node


def load_model_weights(model, source, strict=True, log=None, cfg=None):
    """Load weights for fine-tuning or testing into an already built model.

    Any format :mod:`cvpack.weights` knows (our checkpoints, the original repos' ``{'model': state_dict}`` with or
    without ``module.`` prefixes, ``{'state_dict': ...}``, a bare state dict, mmpose's files, an exp's project
    formats), from a path or URL. Missing and unexpected keys are listed; with ``strict`` (the default for
    testing) any of them is an error naming the file. Non-strict loading that fits *no* tensor is an error too
    (it would silently train from random weights). With ``cfg``, weights that need config overrides the model
    was not built with (e.g. mmpose's ``MODEL.CONV_BIAS False``) are refused with the KEY VALUE pairs to add.

    Returns:
        (missing, unexpected): lists of key names.
    """
    from ..weights import prepare
    log = log or logger
    prepared = prepare(cfg, source)
    if cfg is not None:
        differ = {k: v for k, v in prepared.cfg_overrides.items() if _cfg_value(cfg, k) != v}
        if differ:
            pairs = ' '.join('%s %s' % (k, str(v).replace(' ', '')) for k, v in differ.items())
            raise ValueError('%s (format %s) needs config settings this model was not built with: %s. Add them to '
                             'the command line (%s) or the exp config' % (source, prepared.format,
                                                                         ', '.join(sorted(differ)), pairs))
    state = prepared.state_dict
    target = model.state_dict()
    missing = [k for k in target if k not in state and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in target]
    shapes = ['%s: file %s vs model %s' % (k, tuple(v.shape), tuple(target[k].shape))
              for k, v in state.items() if k in target and tuple(v.shape) != tuple(target[k].shape)]
    if shapes:
        raise ValueError('%s does not fit the model: shape mismatch for %s' % (source, '; '.join(shapes)))
    msg = '%s: %d tensors loaded, %d missing %s, %d unexpected %s' % (
        source, len(state) - len(unexpected), len(missing), missing[:10], len(unexpected), unexpected[:10])
    if strict and (missing or unexpected):
        raise KeyError('weights do not match the model (strict): ' + msg)
    if state and len(state) == len(unexpected):
        raise KeyError('no tensor of %s fits the model (format %s): %s' % (source, prepared.format, msg))
    model.load_state_dict(state, strict=False)
    log.info('loaded weights from ' + msg)
    return missing, unexpected
