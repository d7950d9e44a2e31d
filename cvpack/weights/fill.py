"""A deterministic per-key weight fill, reproducible in any environment (no framework of the source needed).

Used to prove a converter numerically without shipping checkpoints: a script in a peer framework's environment
(``tools/make_mmpose_fixtures.py``) fills *that framework's* model with :func:`fill_state_dict` from its own keys,
records the outputs, and commits only the keys/shapes (a manifest) and the outputs; a test rebuilds the very same
tensors from the manifest here, converts them, and compares outputs. Each tensor depends only on its key, shape
and ``seed`` (numpy's ``RandomState``, whose streams numpy keeps stable across versions), never on the order of
the keys, so adding or dropping an unrelated key changes nothing else.

Magnitudes are chosen so that a deep residual network in eval mode keeps activations of order 1 (conv weights
scaled by ``gain / sqrt(fan_in)``, BN running variances around 1), which keeps float32 rounding far below the
tolerances the tests use.
"""
import zlib

import numpy as np
import torch

__all__ = ['fill_tensor', 'fill_state_dict']


def _rng(key, seed):
    return np.random.RandomState((zlib.crc32(key.encode('utf-8')) + 7919 * int(seed)) % 2 ** 32)


def fill_tensor(key, shape, seed=0, gain=0.7):
    """The tensor for ``key`` of ``shape`` (float32; int64 zeros for ``num_batches_tracked``).

    By the last name of the key (this is a *fill* rule, not a key mapping): ``running_var`` U(0.5, 1.5),
    ``running_mean`` N(0, 0.1), 1-d ``weight`` (norm scale) U(0.4, 0.9), ``bias`` N(0, 0.1), other weights
    N(0, 1) * gain / sqrt(fan_in) with fan_in = prod(shape[1:]).
    """
    shape = tuple(int(v) for v in shape)
    name = key.rsplit('.', 1)[-1]
    if name == 'num_batches_tracked':
        return torch.zeros(shape, dtype=torch.int64)
    rng = _rng(key, seed)
    if name == 'running_var':
        arr = rng.uniform(0.5, 1.5, shape)
    elif name == 'running_mean':
        arr = rng.normal(0.0, 0.1, shape)
    elif name == 'weight' and len(shape) == 1:
        arr = rng.uniform(0.4, 0.9, shape)
    elif name == 'bias':
        arr = rng.normal(0.0, 0.1, shape)
    else:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        arr = rng.standard_normal(shape) * (gain / np.sqrt(max(fan_in, 1)))
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def fill_state_dict(manifest, seed=0, gain=0.7):
    """``{key: fill_tensor(key, shape)}`` for a manifest ``[(key, shape), ...]`` or ``{key: shape}``."""
    items = manifest.items() if isinstance(manifest, dict) else manifest
    return {k: fill_tensor(k, s, seed, gain) for k, s in items}
