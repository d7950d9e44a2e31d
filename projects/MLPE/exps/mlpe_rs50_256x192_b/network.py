"""Re-export of the MLPE builder (the model lives in projects/MLPE/mlpe)."""
from projects.MLPE.mlpe import build_model  # noqa: F401
