"""The original RSN/MSPN loss (``JointsL2Loss`` + ``_calculate_loss``, docs/reference/rsn_mspn.md §4), sample by
sample: the reference :func:`cvpack.modeling.losses.megvii.megvii_loss` is tested against
(``tests/modeling/test_megvii_loss.py``). It stays in the package, not under ``tests/``, because
``tools/bench_models.py`` checks and times the batched loss against it; training never imports it.
"""
import torch


def _reference_level(output, valid, label, has_ohkm, topk=8):
    """The original JointsL2Loss, sample by sample (thresholds 1 for plain mode, 0 for OHKM)."""
    n, k = output.shape[:2]
    loss = 0
    for i in range(n):
        pred = output[i].reshape(k, -1)
        gt = label[i].reshape(k, -1)
        if not has_ohkm:
            gt = gt * torch.gt(valid[i], 1).float()
        tmp = (pred - gt) ** 2
        if has_ohkm:
            tmp = tmp.mean(dim=1) * torch.gt(valid[i].squeeze(), 0).float()
            val, _ = torch.topk(tmp, k=topk, dim=0, sorted=False)
            loss = loss + val.mean(dim=0)
        else:
            loss = loss + tmp.mean()
    return loss / n


def reference_loss_per_sample(outputs, valids, labels, ohkm=True, topk=8, ctf=True):
    """The original _calculate_loss: valids (N, K, 1), labels (N, 5, K, h, w)."""
    total = 0
    for i, levels in enumerate(outputs):
        for j in range(4):
            ind = j + 1 if (i == len(outputs) - 1 and ctf) else j
            use = j == 3 and ohkm
            tmp = _reference_level(levels[j], valids, labels[:, ind], use, topk)
            total = total + (tmp / 4 if j < 3 else tmp)
    return total
