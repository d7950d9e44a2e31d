"""The batched RSN/MSPN loss vs the original per-sample loop and hand-computed values (docs/reference/rsn_mspn.md
§4)."""
import pytest
import torch

from cvpack.modeling.losses.megvii import level_loss, megvii_loss
from cvpack.modeling.losses.reference import reference_loss_per_sample


def _random_case(stages, n=3, k=17, h=8, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    outputs = [[torch.randn(n, k, h, w, generator=g) * 50 for _ in range(4)] for _ in range(stages)]
    valids = torch.randint(0, 3, (n, k, 1), generator=g).float()
    labels = torch.rand(n, 5, k, h, w, generator=g) * 255
    return outputs, valids, labels


@pytest.mark.parametrize('stages', [1, 2, 4])
@pytest.mark.parametrize('ohkm', [True, False])
def test_batched_equals_per_sample_original(stages, ohkm):
    outputs, valids, labels = _random_case(stages, seed=stages)
    ref = reference_loss_per_sample(outputs, valids, labels, ohkm=ohkm)
    ours = megvii_loss(outputs, valids[..., 0], labels, ohkm=ohkm)
    assert len(ours) == 4 * stages
    total = sum(ours.values())
    assert torch.allclose(total, ref, rtol=1e-4), (total, ref)
    # (N, K, 1) valids as the original passed them give the same
    assert torch.allclose(sum(megvii_loss(outputs, valids, labels, ohkm=ohkm).values()), total)


def test_coarse_mask_quirk_and_mmpose_option():
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.stack([torch.full((2, 2), 2.0), torch.full((2, 2), 4.0)])[None]
    valid = torch.tensor([[1.0, 2.0]])
    # megvii: joint 0 (v=1) has its target zeroed, prediction unmasked: (0 * 4 + 16 * 4) / 8
    assert level_loss(pred, valid, target, use_ohkm=False).item() == pytest.approx(8.0)
    # prediction pushed toward 0 for the v=1 joint even though it is labelled
    assert level_loss(pred + 1, valid, target, use_ohkm=False).item() == pytest.approx((4 * 1 + 4 * 9) / 8)
    # mmpose: v>0 weights on both, both joints kept: (4 * 4 + 16 * 4) / 8
    assert level_loss(pred, valid, target, False, mask='mmpose').item() == pytest.approx(10.0)
    # mmpose with v=0: pred and target both masked for joint 0 -> only joint 1 contributes
    assert level_loss(pred + 1, torch.tensor([[0.0, 2.0]]), target, False, mask='mmpose').item() == \
        pytest.approx(4 * 9 / 8)
    with pytest.raises(ValueError, match='MASK'):
        level_loss(pred, valid, target, False, mask='bogus')


def test_ohkm_topk_averages_zeros_when_few_joints_are_valid():
    k = 10
    pred = torch.zeros(1, k, 1, 1)
    target = torch.arange(k, dtype=torch.float32).sqrt().reshape(1, k, 1, 1)   # per-joint MSE = joint index
    valid = torch.zeros(1, k)
    valid[0, [1, 2, 3]] = torch.tensor([1.0, 2.0, 1.0])                   # v=1 counts for OHKM (mask v>0)
    assert level_loss(pred, valid, target, use_ohkm=True, topk=8).item() == pytest.approx((1 + 2 + 3) / 8)
    valid[0] = 2
    assert level_loss(pred, valid, target, use_ohkm=True, topk=8).item() == pytest.approx(sum(range(2, 10)) / 8)


@pytest.mark.parametrize('stages,ctf,expected', [
    (1, True, 0.25 * (1 + 4 + 9) + 16),          # last stage reads maps j+1 (kernels 11, 9, 7, 5)
    (1, False, 0.25 * (0 + 1 + 4) + 9),
    (2, True, 0.25 * (0 + 1 + 4) + 9 + 0.25 * (1 + 4 + 9) + 16),
])
def test_coarse_to_fine_label_index(stages, ctf, expected):
    k = 8
    labels = torch.arange(5, dtype=torch.float32).reshape(1, 5, 1, 1, 1).expand(2, 5, k, 3, 2).clone()
    outputs = [[torch.zeros(2, k, 3, 2) for _ in range(4)] for _ in range(stages)]
    valid = torch.full((2, k), 2.0)
    for ohkm in (True, False):   # all joints valid and equal: OHKM gives the same value as the plain mean
        losses = megvii_loss(outputs, valid, labels, ohkm=ohkm, coarse_to_fine=ctf)
        assert sum(losses.values()).item() == pytest.approx(expected)
    assert losses['loss_s%d_l3' % (stages - 1)].item() == pytest.approx(16.0 if ctf else 9.0)
