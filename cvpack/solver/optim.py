"""Optimizer construction (docs/reference/rsn_mspn.md §6 "Optimizer", docs/reference/defects.md R#9).

The original built ``Adam(all params, lr=BASE_LR * num_gpu, weight_decay=1e-5)`` with one parameter group
(L2 decay also on biases and BN), and its SGD branch read a missing ``cfg.OPTIMIZER``. Here both
optimizers work and ``SOLVER.WEIGHT_DECAY_BIAS`` (None = same as WEIGHT_DECAY, the original) sets the
decay of biases and normalisation weights (every parameter with ndim <= 1).

``SOLVER.FUSED`` (default True) asks torch for its fused single-kernel update where every parameter is a
floating-point tensor on the CPU or CUDA: the same update rule as the per-tensor loop, about half the
optimizer time of an RSN-18 step on 2 CPU threads (tools/bench_models.py).
"""
import torch

__all__ = ['build_optimizer', 'fused_supported', 'load_optimizer_state', 'param_groups']


def param_groups(model, weight_decay, weight_decay_bias):
    """One group when both decays match (the original), else decayed weights + 1-D parameters apart."""
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
    groups = param_groups(model, solver.WEIGHT_DECAY, solver.WEIGHT_DECAY_BIAS)
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


def load_optimizer_state(optimizer, state):
    """``optimizer.load_state_dict(state)`` keeping this run's kernel choice (``fused`` / ``foreach``).

    torch copies those flags from the saved param groups, so a checkpoint written by the per-tensor loop
    would silently turn a fused optimizer back into the loop (and the reverse). The flags are therefore set
    to this optimizer's in a copy of the saved groups *before* loading: torch places each ``step`` counter
    by the group's flag (a float32 tensor on the parameter's device for fused kernels, a CPU tensor for the
    loop), and a fused CUDA kernel would read a CPU counter as device memory.
    """
    kernels = [{k: g[k] for k in ('fused', 'foreach') if k in g} for g in optimizer.param_groups]
    saved = state['param_groups']
    if len(saved) != len(kernels):
        raise ValueError('optimizer state has %d param groups, this optimizer %d (a different '
                         'SOLVER.WEIGHT_DECAY_BIAS setting?)' % (len(saved), len(kernels)))
    state = dict(state, param_groups=[dict(g, **k) for g, k in zip(saved, kernels)])
    optimizer.load_state_dict(state)
