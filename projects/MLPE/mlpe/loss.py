"""CPN / MLPE training losses (``docs/reference/mlpe_hsrnet_gcpose.md`` §1.6), OHKM from the shared core."""
import torch.nn.functional as F

from cvpack.modeling.losses import ohkm


def global_loss(heatmaps, target, target_weight):
    """Sum over levels of MSE(pred, target * [v == 2]) / 2 (pytorch-cpn's global loss).

    Args:
        heatmaps: list of L predictions (N, K, h, w), coarsest first.
        target: (N, L, K, h, w), level i paired with the i-th kernel (23/17/13/9).
        target_weight: (N, K) visibility after the transform (0, 1, 2).

    Only the target is masked (v == 2, visible): predictions of other joints are pushed to 0, as the original.
    """
    mask = (target_weight == 2).to(target.dtype)[:, :, None, None]
    return sum(F.mse_loss(h, target[:, i] * mask) / 2.0 for i, h in enumerate(heatmaps))


def refine_loss(heatmap, target, target_weight, topk=8, use_ohkm=True):
    """Per-joint MSE against the finest target, times [v > 0], then OHKM top-``topk`` per sample.

    Args:
        heatmap: (N, K, h, w); target: (N, K, h, w) (the kernel-9 map); target_weight: (N, K).
    """
    per_joint = ((heatmap - target) ** 2).mean(dim=(2, 3)) * (target_weight > 0).to(heatmap.dtype)
    return ohkm(per_joint, topk) if use_ohkm else per_joint.mean()
