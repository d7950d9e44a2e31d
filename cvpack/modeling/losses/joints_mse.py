"""Simple Baselines' target-weighted heatmap MSE (``JointsMSELoss``), vectorised over the joints."""
import torch
from torch import nn


def joints_mse_loss(pred: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor = None) -> torch.Tensor:
    """Mean over joints of ``0.5 * MSE(pred_k * w_k, gt_k * w_k)``, MSE averaged over batch and pixels.

    Every joint has the same number of elements, so the mean of per-joint means is one global mean;
    no loop over joints (the original looped).

    Args:
        pred, target: (N, K, h, w) heatmaps.
        target_weight: (N, K) or (N, K, 1) per-joint weights, or None (unweighted).

    Returns:
        scalar tensor.
    """
    if pred.shape != target.shape:
        raise ValueError('JointsMSELoss: prediction %s and target %s shapes differ'
                         % (tuple(pred.shape), tuple(target.shape)))
    diff = pred - target
    if target_weight is not None:
        diff = diff * target_weight.reshape(pred.shape[0], pred.shape[1], 1, 1).to(diff.dtype)
    return 0.5 * diff.pow(2).mean()


class JointsMSELoss(nn.Module):
    """Module form of :func:`joints_mse_loss`; ``use_target_weight=False`` ignores the weights."""

    def __init__(self, use_target_weight=True):
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(self, pred, target, target_weight=None):
        """pred, target (N, K, h, w); target_weight (N, K) or (N, K, 1). Returns a scalar."""
        return joints_mse_loss(pred, target, target_weight if self.use_target_weight else None)
