"""Process-group setup for the three launch forms (docs/reference/rsn_mspn.md §6 "Engine", docs/reference/defects.md
R#1, R#2, R#3).

* ``python train.py``: one process, no process group (WORLD_SIZE unset or 1) — a first-class path.
* ``torchrun [--nnodes ... --node_rank ... --master_addr ...] --nproc_per_node=N train.py``: LOCAL_RANK,
  RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT come from the environment (multi-node included).
* ``python -m torch.distributed.launch --nproc_per_node=N train.py``: the same environment plus a
  ``--local-rank=N`` argument (``--local_rank`` accepted too, see :mod:`cvpack.engine.args`).

The backend follows the device: nccl on CUDA, gloo on CPU. The device comes from ``cfg.MODEL.DEVICE``
('auto' = CUDA when present); the original hard-coded cuda and nccl.
"""
import datetime
import importlib
import logging
import os
import sys
import types
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ['DistContext', 'resolve_device', 'dist_timeout', 'setup_distributed', 'cleanup_distributed']

DEFAULT_TIMEOUT_S = 1800   # torch's gloo default, detectron2's too

logger = logging.getLogger(__name__)


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')
    backend: str = ''

    @property
    def distributed(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0


def resolve_device(name):
    """Validate MODEL.DEVICE and return ``(kind, index)``: kind 'cuda' or 'cpu', index an int or None.

    'auto' -> cuda when available else cpu; 'cpu'; 'cuda'; 'cuda:N'. Anything else ('gpu', a typo) is an
    error: it used to fall back to the CPU silently. 'cuda' without CUDA is an error, not a silent fallback.
    """
    text = 'auto' if name is None else str(name).strip()
    low = text.lower()
    if low == 'auto':
        return ('cuda' if torch.cuda.is_available() else 'cpu'), None
    kind, sep, index = low.partition(':')
    if kind not in ('cpu', 'cuda') or (sep and (kind != 'cuda' or not index.isdigit())):
        raise ValueError("MODEL.DEVICE must be 'auto', 'cpu', 'cuda' or 'cuda:N', got %r" % text)
    if kind == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError("MODEL.DEVICE is %r but CUDA is not available; use 'cpu' or 'auto'" % text)
    return kind, (int(index) if sep else None)


def dist_timeout(cfg):
    """``cfg.DIST.TIMEOUT_S`` (seconds, a finite number > 0; default in ``cvpack/config/base.py``)."""
    value = cfg.DIST.TIMEOUT_S
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float('inf'):
        raise ValueError('DIST.TIMEOUT_S must be a number of seconds > 0, got %r' % (value,))
    return value


def setup_distributed(device='auto', local_rank=None, timeout_s=DEFAULT_TIMEOUT_S):
    """Initialise the process group when WORLD_SIZE > 1 and return a :class:`DistContext`.

    Args:
        device: cfg.MODEL.DEVICE ('auto', 'cpu', 'cuda', 'cuda:N'). The index of 'cuda:N' is used by a
            single-process run; distributed runs use their LOCAL_RANK (the index is ignored, logged).
        local_rank: the ``--local-rank`` argument when given; LOCAL_RANK from the environment wins
            (torchrun sets only the environment).
        timeout_s: cfg.DIST.TIMEOUT_S (:func:`dist_timeout`): how long a collective waits for a missing or
            hung rank before it raises on the ranks still running, which ends the job (torchrun then stops
            the rest). nccl applies it through torch's NCCL watchdog (TORCH_NCCL_ASYNC_ERROR_HANDLING); tested on gloo.
    """
    kind, index = resolve_device(device)
    world_size = int(os.environ.get('WORLD_SIZE', 1))
    env_local = os.environ.get('LOCAL_RANK')
    local_rank = int(env_local) if env_local is not None else int(local_rank or 0)
    if world_size <= 1:
        if kind == 'cuda':
            dev = torch.device('cuda', torch.cuda.current_device() if index is None else index)
            torch.cuda.set_device(dev)
        else:
            dev = torch.device('cpu')
        return DistContext(0, 1, 0, dev, '')
    rank = int(os.environ['RANK'])
    if kind == 'cuda':
        if index is not None and index != local_rank:
            logger.warning('MODEL.DEVICE %r: distributed runs use cuda:LOCAL_RANK (cuda:%d here)', device, local_rank)
        torch.cuda.set_device(local_rank)
        dev, backend = torch.device('cuda', local_rank), 'nccl'
    else:
        dev, backend = torch.device('cpu'), 'gloo'
    if not dist.is_initialized():
        importlib.import_module('torch.distributed.nn')   # before the group exists: see _GROUP_DEFAULT_MODULES
        kwargs = {'device_id': dev} if kind == 'cuda' else {}
        dist.init_process_group(backend, init_method='env://', world_size=world_size, rank=rank,
                                timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    return DistContext(rank, world_size, local_rank, dev, backend)


# Modules of torch whose functions take ``group=group.WORLD`` as a default argument, evaluated when the module is
# imported: imported after init_process_group, the defaults hold the group itself. DistributedDataParallel's
# constructor imports torch._dynamo, which imports torch.distributed.nn.functional; the group then outlived
# destroy_process_group (gloo's threads still running) and was freed at interpreter exit, where gloo could abort
# a finished run (SIGABRT, "terminate called without an active exception"; docs/ENGINE.md "Shutdown").
# setup_distributed imports torch.distributed.nn before it creates the group; cleanup_distributed drops the
# destroyed group from these defaults in case the module was imported later anyway (by an exp's own code).
_GROUP_DEFAULT_MODULES = ('torch.distributed.nn.functional',)


def _drop_group_defaults(group):
    """Replace ``group`` (by identity) with None in the default arguments of the functions of
    :data:`_GROUP_DEFAULT_MODULES` that are imported (None is the default group, as ``group.WORLD`` was)."""
    for name in _GROUP_DEFAULT_MODULES:
        module = sys.modules.get(name)
        for fn in vars(module).values() if module is not None else ():
            if isinstance(fn, types.FunctionType) and any(d is group for d in fn.__defaults__ or ()):
                fn.__defaults__ = tuple(None if d is group else d for d in fn.__defaults__)


def cleanup_distributed():
    """Destroy the process group so that it is freed now (its gloo threads ended), not at interpreter exit.
    DDP wrappers must be dropped first (:meth:`cvpack.engine.trainer.Trainer.release_ddp`)."""
    if dist.is_available() and dist.is_initialized():
        world = dist.group.WORLD
        dist.destroy_process_group()
        _drop_group_defaults(world)
