"""Heatmap losses. One module per family; shared pieces (OHKM) here so no project copies them."""
from .ohkm import ohkm  # noqa: F401
