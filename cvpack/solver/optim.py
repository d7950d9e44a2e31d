"""Optimizer construction (spec §6 "Optimizer", bug #9).

The original built ``Adam(all params, lr=BASE_LR * num_gpu, weight_decay=1e-5)`` with one parameter group
(L2 decay also on biases and BN), and its SGD branch read a missing ``cfg.OPTIMIZER``. Here both
optimizers work and ``SOLVER.WEIGHT_DECAY_BIAS`` (None = same as WEIGHT_DECAY, the original) sets the
decay of biases and normalisation weights (every parameter with ndim <= 1).
"""
import torch

__all__ = ['build_optimizer', 'param_groups']


def param_groups(model, weight_decay, weight_decay_bias):
    """One group when both decays match (the original), else decayed weights + 1-D parameters apart."""
    params = [p for p in model.parameters() if p.requires_grad]
    if weight_decay_bias is None or float(weight_decay_bias) == float(weight_decay):
        return [{'params': params, 'weight_decay': float(weight_decay)}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{'params': decay, 'weight_decay': float(weight_decay)},
            {'params': no_decay, 'weight_decay': float(weight_decay_bias)}]


def build_optimizer(solver, model, lr):
    """Build the optimizer named by ``solver.OPTIMIZER`` ('Adam' or 'SGD').

    Args:
        solver: the ``cfg.SOLVER`` node (BETAS, MOMENTUM, WEIGHT_DECAY, WEIGHT_DECAY_BIAS).
        model: the module to optimise (unwrapped or DDP: only ``parameters()`` is used).
        lr: the effective learning rate (after world-size scaling, see ``resolve_solver``).
    """
    groups = param_groups(model, solver.WEIGHT_DECAY, solver.get('WEIGHT_DECAY_BIAS'))
    name = str(solver.OPTIMIZER).lower()
    if name == 'adam':
        return torch.optim.Adam(groups, lr=lr, betas=tuple(solver.get('BETAS', (0.9, 0.999))))
    if name == 'adamw':
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(solver.get('BETAS', (0.9, 0.999))))
    if name == 'sgd':
        return torch.optim.SGD(groups, lr=lr, momentum=float(solver.MOMENTUM),
                               nesterov=bool(solver.get('NESTEROV', False)))
    raise ValueError("SOLVER.OPTIMIZER must be 'Adam', 'AdamW' or 'SGD', got %r" % solver.OPTIMIZER)
