"""Heatmap losses. One module per family; shared pieces (OHKM) here so no project copies them."""
from .ohkm import ohkm  # noqa: F401
from .megvii import level_loss, megvii_loss  # noqa: F401,E402
from .joints_mse import JointsMSELoss, joints_mse_loss  # noqa: F401
