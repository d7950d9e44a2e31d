"""Small pieces shared by the train and test loops: config resolution, batches to the device, autocast."""
import contextlib
import copy
import os.path as osp
import shutil

import torch

from ..config import dump_config, freeze, merge_from_list
from .env import collect_env

__all__ = ['resolve_cfg', 'to_device', 'autocast', 'prepare_model', 'write_run_files']


def resolve_cfg(cfg, opts):
    """A frozen copy of ``cfg`` with the command-line ``KEY VALUE`` overrides applied (the exp's cfg is not
    mutated); writing to it raises, naming the key (:mod:`cvpack.config.frozen`; ``clone(cfg)`` to change a copy).

    When OUTPUT_DIR is overridden, TEST_DIR and TENSORBOARD_DIR that lived below the old OUTPUT_DIR (and were
    not overridden themselves) move with it, so ``OUTPUT_DIR /elsewhere`` keeps every output together.
    """
    opts = list(opts or [])
    old_out = cfg.OUTPUT_DIR
    cfg = merge_from_list(copy.deepcopy(cfg), opts)
    new_out = cfg.OUTPUT_DIR
    if old_out and new_out != old_out:
        for key in ('TEST_DIR', 'TENSORBOARD_DIR'):
            val = cfg.get(key)
            if key not in opts[0::2] and isinstance(val, str) and val.startswith(old_out + osp.sep):
                cfg[key] = osp.join(new_out, osp.relpath(val, old_out))
    return freeze(cfg)


def to_device(batch, device, channels_last=False):
    """Move the tensors of a collated batch (dict / list / tensor) to ``device``; other values stay as they are.

    4-D ``image`` tensors become channels-last when asked (cfg.MODEL.CHANNELS_LAST).
    """
    if torch.is_tensor(batch):
        out = batch.to(device, non_blocking=True)
        if channels_last and out.ndim == 4:
            out = out.contiguous(memory_format=torch.channels_last)
        return out
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last and k == 'image') for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def amp_dtype(mode, device):
    """cfg.SOLVER.AMP -> autocast dtype or None. 'fp16' needs CUDA (GradScaler); 'bf16' works on CPU too."""
    mode = str(mode or 'none').lower()
    if mode in ('none', 'false', 'off', ''):
        return None
    if mode == 'fp16':
        if device.type != 'cuda':
            raise ValueError("SOLVER.AMP 'fp16' needs CUDA; use 'bf16' on the CPU or 'none'")
        return torch.float16
    if mode == 'bf16':
        return torch.bfloat16
    raise ValueError("SOLVER.AMP must be 'none', 'fp16' or 'bf16', got %r" % mode)


def autocast(dtype, device):
    """``torch.autocast`` for ``dtype`` on ``device``, or a null context when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def prepare_model(model, cfg, ctx, log):
    """Device, optional SyncBN and channels-last; DDP wrapping is the trainer's (tests need no DDP)."""
    if ctx.distributed and cfg.MODEL.SYNC_BN:
        if ctx.device.type != 'cuda':
            log.warning('MODEL.SYNC_BN needs CUDA/nccl: kept per-process BatchNorm on %s', ctx.device)
        else:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            log.info('BatchNorm converted to SyncBatchNorm')
    model = model.to(ctx.device)
    if cfg.MODEL.CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    return model


def write_run_files(cfg, extra=None):
    """OUTPUT_DIR/config.json (the resolved config, ``extra`` under '_RUNTIME', the code's git commit, versions
    and command line under '_ENV', see :func:`cvpack.engine.env.collect_env`) and copies of the exp's
    config.py / network.py, so a log folder says exactly what produced it."""
    data = dict(cfg)
    if extra:
        data['_RUNTIME'] = extra
    data['_ENV'] = collect_env(cfg.EXP_DIR)
    dump_config(data, osp.join(cfg.OUTPUT_DIR, 'config.json'))
    for name in ('config.py', 'network.py'):
        src = osp.join(cfg.EXP_DIR, name)
        if osp.isfile(src):
            shutil.copyfile(src, osp.join(cfg.OUTPUT_DIR, name))
