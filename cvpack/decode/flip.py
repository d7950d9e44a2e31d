"""Flip test: map the heatmaps of a horizontally flipped input back to the original frame."""
import numpy as np
import torch

from ..data.meta import flip_permutation


def flip_back(heatmaps, flip_pairs, shift=False):
    """Undo a horizontal input flip on predicted heatmaps.

    Args:
        heatmaps: (N, K, h, w) torch tensor or numpy array, predicted on W-flipped inputs.
        flip_pairs: iterable of (left, right) joint index pairs whose channels swap.
        shift: Simple Baselines' one-column shift right after flipping (``out[..., 1:] = out[..., :-1]``,
            column 0 keeps its value; ``docs/reference/mlpe_hsrnet_gcpose.md`` §2.7). The Megvii and MLPE
            code do not shift (``docs/reference/rsn_mspn.md`` §5.2).

    Returns:
        Heatmaps of the same type, shape and device, in the un-flipped frame. The input is not modified.
    """
    if heatmaps.ndim != 4:
        raise ValueError('flip_back expects (N, K, h, w) heatmaps, got shape %s' % (tuple(heatmaps.shape),))
    perm = flip_permutation(heatmaps.shape[1], flip_pairs)
    if isinstance(heatmaps, torch.Tensor):
        out = heatmaps.flip(3)[:, perm]          # advanced indexing copies
        if shift:
            out[..., 1:] = out[..., :-1].clone()
        return out
    out = np.ascontiguousarray(np.asarray(heatmaps)[:, perm, :, ::-1])
    if shift:
        out[..., 1:] = out[..., :-1].copy()
    return out
