"""Process-group helpers that work the same with one process, gloo (CPU) or nccl (CUDA)."""
from .comm import (  # noqa: F401
    all_gather_object, all_reduce_mean, barrier, broadcast_object, get_local_rank, get_rank, get_world_size, is_dist,
    is_main_process, reduce_dict,
)
