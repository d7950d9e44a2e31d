"""Training and testing loops, checkpoints, launch and logging for every exp (see docs/DESIGN.md "Engine")."""
from .checkpoint import load_checkpoint, load_model_weights, save_checkpoint  # noqa: F401
from .tester import test_main  # noqa: F401
from .trainer import Trainer, train_main  # noqa: F401
