"""The RSN/MSPN training loss (docs/reference/rsn_mspn.md §4), batched.

Per stage s and level j (j = 0 coarsest from 1/32 ... j = 3 finest from 1/4):
* target map index j, or j + 1 in the last stage when ``coarse_to_fine`` (kernels 15/11/9/7 -> 11/9/7/5);
* levels j < 3: plain MSE over all N*K*h*w elements, weight 0.25;
* level 3: OHKM (mean of each sample's ``topk`` largest per-joint MSEs, joints with v > 0) when ``ohkm``.

Masks (docs/reference/defects.md R#18, kept as the default and documented): ``mask='megvii'`` multiplies only the
*target* of the coarse levels by [v > 1] (COCO v = 1 joints are pushed toward 0, predictions are not masked);
``mask='mmpose'`` multiplies prediction and target by [v > 0] on every level (mmpose's use_target_weight). The original
looped over samples in Python; equal-sized samples make the batched mean identical (tests compare against that loop,
:mod:`cvpack.modeling.losses.reference`).
"""
from typing import Dict, Sequence

import torch

from .ohkm import ohkm


def _weights(valid, n, thresh):
    return (valid.reshape(n, -1) > thresh).to(torch.float32)[:, :, None, None]


def level_loss(pred, valid, target, use_ohkm, topk=8, mask='megvii'):
    """One level. pred/target (N, K, h, w); valid (N, K) or (N, K, 1) visibility 0/1/2. Returns a scalar."""
    if pred.shape != target.shape:
        raise ValueError('prediction %s and target %s shapes differ' % (tuple(pred.shape), tuple(target.shape)))
    n = pred.shape[0]
    pred = pred.float()
    if mask == 'mmpose':
        w = _weights(valid, n, 0)
        pred, target = pred * w, target * w
    elif mask != 'megvii':
        raise ValueError("LOSS.MASK must be 'megvii' or 'mmpose', got %r" % (mask,))
    if use_ohkm:
        per_joint = (pred - target).pow(2).mean(dim=(2, 3)) * _weights(valid, n, 0)[:, :, 0, 0]
        return ohkm(per_joint, topk)
    if mask == 'megvii':
        target = target * _weights(valid, n, 1)
    return (pred - target).pow(2).mean()


def megvii_loss(outputs: Sequence[Sequence[torch.Tensor]], valid, labels, ohkm=True, topk=8, coarse_to_fine=True,
                mask='megvii') -> Dict[str, torch.Tensor]:
    """All stages and levels.

    Args:
        outputs: per stage, 4 heatmaps (N, K, h, w), coarse to fine.
        valid: (N, K) (or (N, K, 1)) visibility 0/1/2 after the transform.
        labels: (N, L, K, h, w) targets, one per Gaussian kernel (L = 5: kernels 15, 11, 9, 7, 5), peak 255.

    Returns:
        ``{'loss_s{s}_l{j}': scalar}``, weights applied; the sum is the original ``total_loss``.
    """
    stages = len(outputs)
    losses = {}
    for s, levels in enumerate(outputs):
        shift = 1 if (s == stages - 1 and coarse_to_fine) else 0
        for j, pred in enumerate(levels):
            if j + shift >= labels.shape[1]:
                raise ValueError('level %d of stage %d needs target map %d but targets have %d maps'
                                 % (j, s, j + shift, labels.shape[1]))
            finest = j == len(levels) - 1
            term = level_loss(pred, valid, labels[:, j + shift], ohkm and finest, topk, mask)
            losses['loss_s%d_l%d' % (s, j)] = term if finest else term * 0.25
    return losses
