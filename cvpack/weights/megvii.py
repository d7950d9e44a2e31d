"""Format 'megvii': the RSN/MSPN authors' files and our own checkpoints (our keys are the authors' names).

Accepted layouts: ``{'model': state_dict, ...}`` (the authors' ``iter-N.pth`` and ours; a ``module.`` prefix from
DDP is removed), ``{'state_dict': state_dict}`` and a bare state dict. A checkpoint written by
:func:`cvpack.weights.save_converted` also carries ``cfg_overrides``, which are returned so the model is built the
way the weights need. Training state next to the weights (optimizer, scheduler, rng ...) and ``num_batches_tracked``
counters are dropped and listed.
"""
import torch

WEIGHT_KEYS = ('model', 'state_dict')


def _tensor_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def detect(obj):
    """A dict holding a state dict under 'model' / 'state_dict', or a non-empty dict of tensors."""
    if not isinstance(obj, dict):
        return False
    return any(_tensor_dict(obj.get(k)) for k in WEIGHT_KEYS) or _tensor_dict(obj)


def convert(obj, cfg):
    """Our keys are the authors' keys: only the ``module.`` prefix and the non-weight entries go."""
    dropped = []
    overrides = {}
    if _tensor_dict(obj):
        state = obj
    else:
        name = next(k for k in WEIGHT_KEYS if _tensor_dict(obj.get(k)))
        state = obj[name]
        for key, value in obj.items():
            if key == name:
                continue
            if key == 'cfg_overrides':
                if not isinstance(value, dict):
                    raise ValueError("'cfg_overrides' must be a dict of config keys, got %s" % type(value).__name__)
                overrides = dict(value)
            else:
                dropped.append(key)
    out = {}
    for key, value in state.items():
        ours = key[len('module.'):] if key.startswith('module.') else key
        if ours.endswith('num_batches_tracked'):
            dropped.append(key)
            continue
        if ours in out:
            raise ValueError('keys %r and %r both give %r (mixed module. prefixes)' % (key, 'module.' + ours, ours))
        out[ours] = value
    return {'state_dict': out, 'cfg': overrides, 'dropped': dropped}
