"""Optimizer construction (docs/reference/rsn_mspn.md §6 "Optimizer", docs/reference/defects.md R#9).

The original built ``Adam(all params, lr=BASE_LR * num_gpu, weight_decay=1e-5)`` with one parameter group
(L2 decay also on biases and BN), and its SGD branch read a missing ``cfg.OPTIMIZER``. Here both
optimizers work and ``SOLVER.WEIGHT_DECAY_BIAS`` (None = same as WEIGHT_DECAY, the original) sets the
decay of biases and normalisation weights (every parameter with ndim <= 1). ``SOLVER.WEIGHT_DECAY_NORM`` (None
unless a preset sets it; GCPose's detection preset: 0.0, Detectron2's default) switches to Detectron2's rule:
parameters named ``bias`` by WEIGHT_DECAY_BIAS, the other parameters of normalisation layers by
WEIGHT_DECAY_NORM, everything else by WEIGHT_DECAY.

``SOLVER.FUSED`` (default True) asks torch for its fused single-kernel update where every parameter is a
floating-point tensor on the CPU or CUDA: the same update rule as the per-tensor loop, about half the
optimizer time of an RSN-18 step on 2 CPU threads (tools/bench_models.py).
"""
import torch

__all__ = ['build_optimizer', 'fused_supported', 'load_optimizer_state', 'param_groups']


# Detectron2's ``norm_module_types`` (solver/build.py): BatchNorm1d/2d/3d, SyncBatchNorm, GroupNorm, InstanceNorm,
# LayerNorm, LocalResponseNorm.
_NORM_TYPES = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm, torch.nn.modules.instancenorm._InstanceNorm,
               torch.nn.LayerNorm, torch.nn.LocalResponseNorm)


def _detectron2_groups(model, weight_decay, weight_decay_bias, weight_decay_norm):
    """Detectron2 v0.5 ``get_default_optimizer_params``: a parameter named ``bias`` decays by WEIGHT_DECAY_BIAS (the
    override wins, also for norm layers), other parameters of normalisation modules by WEIGHT_DECAY_NORM, the rest by
    WEIGHT_DECAY. One group per distinct decay, in the order of first appearance (model.modules())."""
    wd_bias = weight_decay if weight_decay_bias is None else weight_decay_bias
    groups, seen = {}, set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or p in seen:
                continue
            seen.add(p)
            wd = wd_bias if name == 'bias' else weight_decay_norm if isinstance(module, _NORM_TYPES) else weight_decay
            groups.setdefault(float(wd), []).append(p)
    return [{'params': ps, 'weight_decay': wd} for wd, ps in groups.items()]


def param_groups(model, weight_decay, weight_decay_bias, weight_decay_norm=None):
    """One group when both decays match (the original), else decayed weights + 1-D parameters apart.

    ``weight_decay_norm`` (SOLVER.WEIGHT_DECAY_NORM) not None: Detectron2's rule instead (:func:`_detectron2_groups`).
    """
    if weight_decay_norm is not None:
        return _detectron2_groups(model, weight_decay, weight_decay_bias, weight_decay_norm)
    params = [p for p in model.parameters() if p.requires_grad]
    if weight_decay_bias is None or float(weight_decay_bias) == float(weight_decay):
        return [{'params': params, 'weight_decay': float(weight_decay)}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{'params': decay, 'weight_decay': float(weight_decay)},
            {'params': no_decay, 'weight_decay': float(weight_decay_bias)}]


def fused_supported(groups):
    """True when torch's fused optimizers take every parameter: floating point, on the CPU or CUDA."""
    params = [p for g in groups for p in g['params']]
    return bool(params) and all(p.is_floating_point() and p.device.type in ('cpu', 'cuda') for p in params)


def build_optimizer(solver, model, lr):
    """Build the optimizer named by ``solver.OPTIMIZER`` ('Adam', 'AdamW' or 'SGD').

    Args:
        solver: the ``cfg.SOLVER`` node (BETAS, MOMENTUM, WEIGHT_DECAY, WEIGHT_DECAY_BIAS, FUSED).
        model: the module to optimise (unwrapped or DDP: only ``parameters()`` is used), already on its device.
        lr: the effective learning rate (after world-size scaling, see ``resolve_solver``).
    """
    groups = param_groups(model, solver.WEIGHT_DECAY, solver.WEIGHT_DECAY_BIAS, solver.get('WEIGHT_DECAY_NORM'))
    # None leaves torch's default (the foreach loop); the checkpoint state is the same either way.
    fused = True if solver.FUSED and fused_supported(groups) else None
    name = str(solver.OPTIMIZER).lower()
    if name == 'adam':
        return torch.optim.Adam(groups, lr=lr, betas=tuple(solver.BETAS), fused=fused)
    if name == 'adamw':
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(solver.BETAS), fused=fused)
    if name == 'sgd':
        return torch.optim.SGD(groups, lr=lr, momentum=float(solver.MOMENTUM),
                               nesterov=bool(solver.NESTEROV), fused=fused)
    raise ValueError("SOLVER.OPTIMIZER must be 'Adam', 'AdamW' or 'SGD', got %r" % solver.OPTIMIZER)


# The settings that make an optimizer what it is: a saved group without them was written by another kind of
# optimizer (Adam's state has no momentum; SGD's no betas). Every other key a saved group lacks (one a newer torch
# added, as it added 'differentiable', 'fused', 'decoupled_weight_decay') is filled from the current optimizer: a
# refusal there would make every older checkpoint unloadable after a torch upgrade. An optimizer not listed here
# (one passed in by other code) falls back to requiring every setting but the known version flags.
_DEFINING = {'SGD': ('momentum', 'dampening', 'nesterov'), 'Adam': ('betas', 'eps', 'amsgrad'),
             'AdamW': ('betas', 'eps', 'amsgrad')}
_VERSION_FLAGS = {'maximize', 'foreach', 'capturable', 'differentiable', 'fused', 'decoupled_weight_decay'}
# Keys that are not hyperparameters of the config (the LR keys belong to the scheduler, which the trainer resets to
# the current effective LR).
_NOT_SETTINGS = {'params', 'param_names', 'lr', 'initial_lr'}


def _missing_settings(optimizer, old, new):
    """The settings defining ``optimizer``'s kind that the saved group ``old`` lacks (``new``: the current group)."""
    defining = _DEFINING.get(type(optimizer).__name__)
    if defining is None:
        defining = set(new) - _VERSION_FLAGS - _NOT_SETTINGS
    return sorted(k for k in defining if k in new and k not in old)


def _plain(value):
    """Tuples as lists, for comparing a saved setting with the config's (``betas``)."""
    return list(value) if isinstance(value, tuple) else value


def _class_change(optimizer, saved_class, saved_groups):
    """'optimizer Adam -> AdamW' when the checkpoint's optimizer class (``saved_class``, recorded by the trainer since
    checkpoints carry it; None before) is not this one. Adam and AdamW share their group keys, and a torch older than
    ``decoupled_weight_decay`` saved nothing telling them apart: an unrecorded class with that key missing under
    AdamW is warned as unknown (under Adam, the original's optimizer and the default, it is taken for Adam)."""
    name = type(optimizer).__name__
    if saved_class:
        return [] if saved_class == name else ['optimizer %s -> %s' % (saved_class, name)]
    if name == 'AdamW' and any('decoupled_weight_decay' not in g for g in saved_groups):
        return ['optimizer Adam or AdamW (the checkpoint records neither its optimizer class nor '
                'decoupled_weight_decay) -> AdamW']
    return []


def load_optimizer_state(optimizer, state, saved_class=None):
    """``optimizer.load_state_dict(state)`` keeping this run's settings and kernel choice; returns the settings that
    differ from the checkpoint's, as ``'weight_decay 1e-05 -> 0.5'`` strings (the caller warns). ``saved_class``:
    the class name of the optimizer that wrote ``state`` (the checkpoint's ``optimizer_class``), None when unknown;
    a change of class is listed first (``'optimizer Adam -> AdamW'``).

    torch replaces every group's hyperparameters with the saved ones, so a resume silently kept the checkpoint's
    ``weight_decay``, ``betas``, ``momentum``, ``nesterov`` (and Adam's ``decoupled_weight_decay`` under
    ``SOLVER.OPTIMIZER AdamW``) whatever the config said, and state saved by another optimizer (Adam's, resumed
    with ``SOLVER.OPTIMIZER SGD``) loaded and failed at the first step with ``KeyError: 'momentum'``. Here the
    current optimizer's settings win (as the LR does), and a saved group lacking one of the settings that define
    this optimizer's kind (``_DEFINING``) is a ValueError naming them; another key it lacks (added by a newer torch)
    is taken from the current optimizer. The kernel flags (``fused`` / ``foreach``) are this optimizer's too, set
    *before* loading: torch places each ``step`` counter by the group's flag (a float32 tensor on the parameter's
    device for fused kernels, a CPU tensor for the loop), and a fused CUDA kernel would read a CPU counter as device
    memory.
    """
    current = optimizer.param_groups
    saved = state['param_groups']
    if len(saved) != len(current):
        raise ValueError('optimizer state has %d param groups, this optimizer %d (a different '
                         'SOLVER.WEIGHT_DECAY_BIAS or WEIGHT_DECAY_NORM setting?)' % (len(saved), len(current)))
    groups, changed = [], _class_change(optimizer, saved_class, saved)
    for i, (old, new) in enumerate(zip(saved, current)):
        missing = _missing_settings(optimizer, old, new)
        if missing:
            raise ValueError('optimizer state was written by another optimizer: its parameter group %d has no %s, '
                             'which this run\'s %s needs (SOLVER.OPTIMIZER %s)'
                             % (i, ', '.join(missing), type(optimizer).__name__,
                                '%s -> %s' % (saved_class, type(optimizer).__name__) if saved_class else 'changed?'))
        own = {k: v for k, v in new.items() if k not in _NOT_SETTINGS}
        where = '' if len(current) == 1 else ' (group %d)' % i
        changed += ['%s%s %r -> %r' % (k, where, old[k], v) for k, v in own.items()
                    if k not in ('fused', 'foreach') and k in old and _plain(old[k]) != _plain(v)]
        groups.append(dict(old, **own))
    optimizer.load_state_dict(dict(state, param_groups=groups))
    return changed
