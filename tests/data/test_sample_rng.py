"""Per-sample augmentation RNG (cvpack.data.samplers.sample_rng): a training sample's augmentations depend only on
(SEED, pass, position), not on the DataLoader worker, the number of workers, prefetching or a resume."""
import pickle

import numpy as np
import pytest
import torch

from cvpack.config.cpn import cpn_config
from projects.GCPose.gcpose.preset import detection_config
from cvpack.config.megvii import megvii_config
from cvpack.config.simple_baselines import simple_baselines_config
from cvpack.data import build_dataset, collate
from cvpack.data.samplers import IterationBasedSampler, SampleIndex, sample_rng
from cvpack.engine.trainer import _seed_worker

PRESETS = {'megvii': megvii_config, 'simple_baselines': simple_baselines_config, 'cpn': cpn_config,
           'detection': detection_config}


def _dataset(kind, root, tmp_path):
    cfg = PRESETS[kind](str(tmp_path))
    cfg.DATASET.ROOT = root
    if kind == 'detection':
        cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (96, 128, 160), 200    # small images: fast
    else:
        cfg.INPUT_SHAPE, cfg.OUTPUT_SHAPE = (64, 48), (16, 12)
    return build_dataset(cfg, 'train')


def test_sample_index_is_an_int_with_a_key():
    i = SampleIndex(7, (3, 1, 12))
    assert i == 7 and i + 1 == 8 and type(i // 4) is int and [10 * k for k in range(9)][i] == 70
    j = pickle.loads(pickle.dumps(i))                      # how indices reach DataLoader workers
    assert type(j) is SampleIndex and j == 7 and j.key == (3, 1, 12)
    draws = sample_rng(i).rand(3)
    np.testing.assert_array_equal(sample_rng(j).rand(3), draws)               # a function of the key only
    assert not np.array_equal(sample_rng(SampleIndex(7, (3, 1, 13))).rand(3), draws)
    assert not np.array_equal(sample_rng(SampleIndex(7, (4, 1, 12))).rand(3), draws)
    assert sample_rng(7) is None and sample_rng(7, np.random) is np.random     # plain ints: the fallback


def test_sampler_keys_are_positions_in_the_pass():
    """Position q of pass p draws the same index with the same key on 1 or 2 ranks (dataset of 6, batch 2)."""
    one = [i for b in IterationBasedSampler(6, 2, 6, seed=5, rank=0, world_size=1) for i in b]
    two = [[i for b in IterationBasedSampler(6, 2, 3, seed=5, rank=r, world_size=2) for i in b] for r in (0, 1)]
    assert [i.key for i in one] == [(5, p, q) for p in (0, 1) for q in range(6)]
    merged = [x for pair in zip(*two) for x in pair]                          # rank r holds positions r::2
    assert merged == one and [i.key for i in merged] == [i.key for i in one]


@pytest.mark.parametrize('kind', ['megvii', 'simple_baselines', 'cpn', 'detection'])
def test_keyed_sample_ignores_process_rngs(kind, coco_subset, tmp_path):
    ds = _dataset(kind, coco_subset, tmp_path)
    key = SampleIndex(3, (0, 2, 5))
    np.random.seed(1)
    torch.manual_seed(1)
    if hasattr(ds, 'seed'):
        ds.seed(1)
    a = ds[key]['image']
    np.random.seed(2)
    torch.manual_seed(2)
    if hasattr(ds, 'seed'):
        ds.seed(2)
    assert torch.equal(ds[key]['image'], a)                                    # same key, same sample
    others = [ds[SampleIndex(3, (0, 2, q))]['image'] for q in range(6, 12)]
    assert any(o.shape != a.shape or not torch.equal(o, a) for o in others)   # the key drives the draws


def _batches(ds, workers, start=0, iters=4):
    sampler = IterationBasedSampler(len(ds), 2, iters, start, rank=0, world_size=1, seed=3)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                                         worker_init_fn=_seed_worker, prefetch_factor=4 if workers else None)
    return [b['image'] for b in loader]


def test_batches_do_not_depend_on_workers_or_resume(coco_subset, tmp_path):
    """Megvii pipeline through a real DataLoader: 0 workers == 2 workers (which prefetch and split the
    batches between them), and a loader resumed at iteration 2 gives the straight run's batches 2 and 3."""
    ds = _dataset('megvii', coco_subset, tmp_path)
    straight = _batches(ds, 0)
    assert all(torch.equal(a, b) for a, b in zip(_batches(ds, 2), straight))
    assert all(torch.equal(a, b) for a, b in zip(_batches(ds, 2, start=2), straight[2:]))
    assert not torch.equal(straight[0], straight[1])
