"""Heatmap losses. One module per family; shared pieces (OHKM) here so no project copies them."""
from .ohkm import ohkm  # noqa: F401
from .megvii import level_loss, megvii_loss  # noqa: F401,E402
