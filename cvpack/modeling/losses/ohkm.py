"""Online hard keypoint mining (CPN, Chen et al. 2018), shared by RSN/MSPN and MLPE."""
import torch


def ohkm(per_joint_loss: torch.Tensor, topk: int) -> torch.Tensor:
    """Mean over the batch of the mean of each sample's ``topk`` largest joint losses.

    Args:
        per_joint_loss: (N, K) loss per sample and joint, already masked (invalid joints = 0).
        topk: joints kept per sample. As in the originals it stays ``topk`` even when fewer joints
            are valid, so the zeros of invalid joints are averaged in.

    Returns:
        scalar tensor.
    """
    k = min(topk, per_joint_loss.shape[1])
    hardest, _ = torch.topk(per_joint_loss, k=k, dim=1, sorted=False)
    return hardest.mean(dim=1).mean()
