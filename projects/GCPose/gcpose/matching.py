"""Matcher and balanced sampler (Detectron2 ``Matcher`` / ``subsample_labels``, docs/reference/mlpe_hsrnet_gcpose.md
§4.1)."""
import torch


def match(quality, thresholds, labels, allow_low_quality=False):
    """Assign each column (anchor / proposal) to its best row (GT box).

    Args:
        quality: (G, A) IoU matrix. thresholds: increasing, e.g. [0.3, 0.7]; labels: one more than
            thresholds, e.g. [0, -1, 1] (IoU < 0.3 -> 0, [0.3, 0.7) -> -1, >= 0.7 -> 1).
        allow_low_quality: every GT's highest-IoU columns (ties included) get label 1; a GT overlapping
            nothing (best IoU 0) is skipped (Detectron2 would mark every column positive then).
    Returns:
        (matches (A,) int64 row index, match_labels (A,) int8). With no GT: matches 0, labels[0].
    """
    A = quality.shape[1]
    if quality.shape[0] == 0:
        return (quality.new_zeros(A, dtype=torch.long), quality.new_full((A,), labels[0], dtype=torch.int8))
    vals, matches = quality.max(dim=0)
    out = matches.new_full((A,), 1, dtype=torch.int8)
    bounds = [-float('inf')] + list(thresholds) + [float('inf')]
    for lab, lo, hi in zip(labels, bounds[:-1], bounds[1:]):
        out[(vals >= lo) & (vals < hi)] = lab
    if allow_low_quality:
        best = quality.max(dim=1).values
        cols = ((quality == best[:, None]) & (best[:, None] > 0)).any(dim=0)
        out[cols] = 1
    return matches, out


def subsample_labels(labels, num_samples, positive_fraction, bg_label, generator=None):
    """Random balanced subset: up to ``num_samples * positive_fraction`` positives, negatives fill the rest.

    Positives are labels not in {-1, bg_label}; negatives equal bg_label. Returns (pos_idx, neg_idx).
    """
    pos = torch.nonzero((labels != -1) & (labels != bg_label)).flatten()
    neg = torch.nonzero(labels == bg_label).flatten()
    num_pos = min(pos.numel(), int(num_samples * positive_fraction))
    num_neg = min(neg.numel(), num_samples - num_pos)
    pos = pos[torch.randperm(pos.numel(), generator=generator, device='cpu')[:num_pos].to(pos.device)]
    neg = neg[torch.randperm(neg.numel(), generator=generator, device='cpu')[:num_neg].to(neg.device)]
    return pos, neg
