"""Small helpers shared across the core."""
import numpy as np
import torch


def to_numpy(value, dtype=None):
    """A tensor (any device, any float dtype incl. bf16/fp16) or array-like -> numpy array.

    Low-precision floats go through float32 (numpy has no bfloat16); ``dtype`` casts the result.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
            value = value.float()
        value = value.cpu().numpy()
    return np.asarray(value, dtype=dtype)


def some_names(names, limit=40, sep=', '):
    """At most ``limit`` of ``names`` joined by ``sep``, then '... (+N more)': error messages about a whole
    wrong network would otherwise list hundreds of keys."""
    names = [str(n) for n in names]
    if len(names) <= limit:
        return sep.join(names)
    return sep.join(names[:limit]) + '%s... (+%d more)' % (sep, len(names) - limit)
