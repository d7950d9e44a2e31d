"""Loading ImageNet / released weights from a local file or a URL, through an explicit key map.

Nothing here downloads at import or at model construction; a path or URL is only read when the caller
asks for it (``MODEL.PRETRAINED``). Files and URLs are read by ``cvpack.safe_load`` (weights only, URLs cached
in the torch hub folder), so no file can run code when it is loaded.
"""
import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch

from ..safe_load import CheckpointError, load_file

logger = logging.getLogger(__name__)


def load_state_dict(source, map_location='cpu'):
    """Read a state dict from a local path or an http(s) URL, without running code (``cvpack.safe_load``).

    Accepts plain state dicts and checkpoints that wrap them under ``state_dict`` or ``model``.
    Raises FileNotFoundError naming a missing path, ``CheckpointError`` naming a corrupt, unsafe or
    non-weight file.
    """
    obj = load_file(source, map_location=map_location)
    for key in ('state_dict', 'model'):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise CheckpointError(source, 'does not hold a state dict (got %s)' % type(obj).__name__)
    return obj


@dataclass
class LoadReport:
    """What :func:`load_mapped` did: which target keys got weights (``loaded``: copied from the file), which were
    left (``missing``), which source keys were unused; ``initialised``: model tensors not in the file that a loader
    set to fixed values (e.g. conv biases zeroed next to bias-free ImageNet convs), neither loaded nor missing."""
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unused: List[str] = field(default_factory=list)
    shape_mismatch: List[str] = field(default_factory=list)
    initialised: List[str] = field(default_factory=list)

    def summary(self):
        text = ('loaded %d tensors; %d model tensors not in the file; %d file tensors unused; %d shape mismatches'
                % (len(self.loaded), len(self.missing), len(self.unused), len(self.shape_mismatch)))
        return text + ('; %d set by the loader (not in the file)' % len(self.initialised) if self.initialised else '')


def load_mapped(module: torch.nn.Module, state: Dict[str, torch.Tensor],
                key_map: Callable[[str], Optional[object]], strict_shapes=True) -> LoadReport:
    """Copy ``state`` into ``module`` through ``key_map``.

    Args:
        module: the target module.
        state: source state dict (e.g. torchvision ResNet-50 keys).
        key_map: maps a source key to a target key, a list of target keys (one source tensor feeding
            several places, e.g. every stage of MSPN), or None to skip it.
        strict_shapes: raise on a shape mismatch instead of only reporting it.

    Returns:
        A :class:`LoadReport`; the caller logs ``report.summary()``.
    """
    target = module.state_dict()
    report = LoadReport()
    new_state = {}
    for src_key, tensor in state.items():
        mapped = key_map(src_key)
        if mapped is None:
            report.unused.append(src_key)
            continue
        for dst in ([mapped] if isinstance(mapped, str) else list(mapped)):
            if dst not in target:
                report.unused.append(src_key)
                continue
            if tuple(target[dst].shape) != tuple(tensor.shape):
                msg = '%s -> %s: %s vs %s' % (src_key, dst, tuple(tensor.shape), tuple(target[dst].shape))
                if strict_shapes:
                    raise ValueError('shape mismatch loading pretrained weights: ' + msg)
                report.shape_mismatch.append(msg)
                continue
            new_state[dst] = tensor
    module.load_state_dict(new_state, strict=False)
    report.loaded = sorted(new_state)
    report.missing = sorted(k for k in target if k not in new_state and not k.endswith('num_batches_tracked'))
    logger.info('pretrained: %s', report.summary())
    return report
