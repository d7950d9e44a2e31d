"""LR schedules and the explicit world-size scaling of the solver (docs/reference/rsn_mspn.md §2.1 "Scaling", §6,
docs/reference/defects.md R#7, R#22).

Schedules are a per-iteration factor on the base LR, applied with ``LambdaLR`` stepped **after**
``optimizer.step()`` (the original stepped before it, so its first update already used factor(1)).
With warm-up length W, factor ``f0 = WARMUP_FACTOR`` and MAX_ITER M, the factor at iteration ``it``:

* warm-up (it < W): 'linear' ``f0 + (1 - f0) * it / W`` (the original's 0.1 + 0.9 * it / 2400), 'constant' ``f0``;
* 'megvii_linear' (the original): ``1 - (it - W) / (M - W)``, linear decay to 0 at M;
* 'multistep': ``GAMMA ** (number of STEPS <= it)``;
* 'cosine': ``0.5 * (1 + cos(pi * (it - W) / (M - W)))``.

A warm-up as long as the run or longer (W >= M, e.g. ``SOLVER.MAX_ITER 2`` over the preset's 2400) is cut at M:
every iteration is a warm-up one, the LR rises from ``f0 * LR`` and never reaches LR (the trainer warns).
"""
import bisect
import logging
import math

import torch

__all__ = ['LRFactor', 'build_lr_scheduler', 'resolve_solver', 'describe_scaling']

logger = logging.getLogger(__name__)


class LRFactor:
    """Picklable LR factor. Its ``__dict__`` (numbers and lists only) goes into the scheduler state_dict,
    so checkpoints stay loadable with ``torch.load(weights_only=True)``."""

    def __init__(self, name, max_iter, warmup_iters=0, warmup_factor=0.1, warmup_method='linear',
                 steps=(), gamma=0.1):
        if name not in ('megvii_linear', 'multistep', 'cosine'):
            raise ValueError("SOLVER.LR_SCHEDULER must be 'megvii_linear', 'multistep' or 'cosine', got %r" % name)
        if warmup_method not in ('linear', 'constant'):
            raise ValueError("SOLVER.WARMUP_METHOD must be 'linear' or 'constant', got %r" % warmup_method)
        self.name, self.max_iter, self.warmup_iters = name, int(max_iter), int(warmup_iters)
        self.warmup_factor, self.warmup_method = float(warmup_factor), warmup_method
        self.steps, self.gamma = sorted(int(s) for s in steps), float(gamma)

    def __call__(self, it):
        w = self.warmup_iters
        if it < w:
            if self.warmup_method == 'constant':
                return self.warmup_factor
            return self.warmup_factor + (1.0 - self.warmup_factor) * it / w
        if self.name == 'megvii_linear':
            return max(0.0, 1.0 - (it - w) / max(1, self.max_iter - w))
        if self.name == 'multistep':
            return self.gamma ** bisect.bisect_right(self.steps, it)
        progress = min(1.0, (it - w) / max(1, self.max_iter - w))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_lr_scheduler(solver, optimizer):
    """``LambdaLR`` over an :class:`LRFactor` built from the *resolved* solver (see :func:`resolve_solver`)."""
    factor = LRFactor(solver.LR_SCHEDULER, solver.MAX_ITER, solver.WARMUP_ITERS, solver.WARMUP_FACTOR,
                      solver.WARMUP_METHOD, solver.STEPS, solver.GAMMA)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _epoch_based(solver, world_size, dataset_len):
    """Iteration counts from SOLVER.EPOCHS / STEP_EPOCHS / WARMUP_EPOCHS / CHECKPOINT_EPOCHS (Simple Baselines
    style presets): one epoch = ceil(len(dataset) / (IMS_PER_GPU * world_size * ACCUMULATE)) optimizer steps."""
    if dataset_len is None:
        raise ValueError('SOLVER.EPOCHS is set: the train dataset length is needed to convert epochs to iterations')
    batch = int(solver.IMS_PER_GPU) * world_size * int(solver.ACCUMULATE)
    per_epoch = max(1, math.ceil(dataset_len / batch))
    out = {'ITERS_PER_EPOCH': per_epoch, 'MAX_ITER': int(solver.EPOCHS) * per_epoch}
    if solver.STEP_EPOCHS is not None:
        out['STEPS'] = [int(round(e * per_epoch)) for e in solver.STEP_EPOCHS]
    if solver.WARMUP_EPOCHS is not None:
        out['WARMUP_ITERS'] = int(round(solver.WARMUP_EPOCHS * per_epoch))
    out['CHECKPOINT_PERIOD'] = int(solver.CHECKPOINT_EPOCHS or 1) * per_epoch
    return out


def resolve_solver(solver, world_size, dataset_len=None):
    """Effective solver settings for ``world_size`` processes, as a new dict (the config is not changed).

    * Iteration-based (the Megvii presets): with ``REFERENCE_WORLD_SIZE = R`` and W processes the LR is
      ``BASE_LR * W`` and MAX_ITER, CHECKPOINT_PERIOD, WARMUP_ITERS and STEPS are multiplied by ``R / W``
      (the original scaled all but the warm-up, docs/reference/defects.md R#22; ``SCALE_WARMUP=False`` restores that).
      ``SCALE_ROUNDING``: 'round' ``int(round(x * R / W))`` (default), 'floor' ``int(x * R / W)`` (the Megvii
      preset: the original's ``int(x * 8 / num_gpu)``, x * 8 first, docs/reference/defects.md F#5).
      ``R = None`` disables scaling.
    * Epoch-based (``SOLVER.EPOCHS`` set and not None): iteration counts come from epochs and the dataset
      length, which already accounts for W; the LR is ``BASE_LR * W`` only when R is set.
    """
    out = dict(solver)
    ref = solver.REFERENCE_WORLD_SIZE
    out['LR'] = float(solver.BASE_LR) * (world_size if ref else 1)
    if solver.EPOCHS is not None:
        out.update(_epoch_based(solver, world_size, dataset_len))
    elif ref:
        rounding = solver.SCALE_ROUNDING   # 'round' | 'floor' (the schema checks it)
        ratio = float(ref) / world_size

        def scale(v):   # 'floor': x * R first, then / W, in the original's order of operations
            return int(v * ref / world_size) if rounding == 'floor' else int(round(v * ratio))

        scaled = ('MAX_ITER', 'CHECKPOINT_PERIOD') + (('WARMUP_ITERS',) if solver.SCALE_WARMUP else ())
        for key in scaled:
            out[key] = scale(solver[key])
        out['STEPS'] = [scale(s) for s in solver.STEPS]
    out['CHECKPOINT_PERIOD'] = max(1, int(out['CHECKPOINT_PERIOD']))
    return _Attr(out)


def describe_scaling(solver, resolved, world_size):
    """One line for the log: each key the world-size rule changed, as given -> effective, e.g.
    ``world-size scaling (8 -> 1 processes): BASE_LR 0.0005 -> 0.0005, MAX_ITER 2 -> 16, ...``; None when
    ``REFERENCE_WORLD_SIZE`` is None (the values are used as given).

    Args:
        solver: the config's SOLVER (the values given); resolved: :func:`resolve_solver`'s result for it.
    """
    ref = solver.REFERENCE_WORLD_SIZE
    if not ref:
        return None
    pairs = [('BASE_LR', solver.BASE_LR, resolved.LR)]
    if solver.EPOCHS is None:
        keys = ('MAX_ITER', 'CHECKPOINT_PERIOD', 'WARMUP_ITERS', 'STEPS')
        pairs += [(k, list(solver[k]) if k == 'STEPS' else solver[k], resolved[k]) for k in keys]
    text = ', '.join('%s %s -> %s' % (k, '%g' % a if k == 'BASE_LR' else a, '%g' % b if k == 'BASE_LR' else b)
                     for k, a, b in pairs)
    return ('world-size scaling (%s -> %d processes): %s (SOLVER.REFERENCE_WORLD_SIZE None on the command line '
            'uses the values as given; docs/ENGINE.md)' % (ref, world_size, text))


class _Attr(dict):
    """dict with attribute access, like the EasyDict it was built from."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None
