"""Optimizers, LR schedules and the GPU-count scaling of the solver settings."""
from .lr_scheduler import LRFactor, build_lr_scheduler, describe_scaling, resolve_solver  # noqa: F401
from .optim import build_optimizer, load_optimizer_state  # noqa: F401
