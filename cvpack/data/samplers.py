"""Samplers: the resumable, distributed, iteration-based batch sampler for training and the contiguous
shard for testing (docs/reference/rsn_mspn.md §6 "Other modules", docs/reference/defects.md R#23).

The original wrapped a DistributedSampler in an IterationBasedBatchSampler whose ``start_iter`` was
never passed on resume, so the data order replayed from the first batch. Here the order is a pure
function of ``(seed, pass index, rank, world size, iteration)``: pass ``p`` shuffles the whole dataset
with ``torch.randperm`` under ``seed + p``; rank ``r`` takes every ``world_size``-th index of it from ``r``
(the pass is padded by wrapping so all ranks get the same count, as DistributedSampler); each rank then
cuts its concatenated per-pass streams into batches. Batch ``i`` can therefore be computed directly,
and a sampler built with ``start_iter=i`` continues exactly where a run stopped.

Augmentation randomness follows the same rule (docs/ENGINE.md "Data order"): every index the training
sampler yields is a :class:`SampleIndex`, an ``int`` that also carries the key ``(seed, pass, position)`` of
the sample in its pass (``position`` counts over all ranks, before the rank striding). A dataset draws its
augmentations from :func:`sample_rng` of that key, so a sample's crop, flip, rotation ... depend on nothing
else: not on the DataLoader worker that loads it, how far that worker prefetched, how many workers there
are, or whether the run was resumed. Datasets that ignore the key still work (it is an int).
"""
import math

import numpy as np
import torch

__all__ = ['GroupedBatchSampler', 'GroupedIterationSampler', 'IterationBasedSampler', 'SampleIndex', 'sample_rng',
           'shard_indices']

# Mixed into every augmentation key, so these streams never coincide with other SeedSequence uses of SEED
# (e.g. the DataLoader's worker base seed in cvpack.engine.trainer.build_loader).
_AUGMENTATION_TAG = 0x617567


class SampleIndex(int):
    """A dataset index (an ``int`` everywhere: ``records[i]``, arithmetic gives plain ints) that carries
    ``key = (seed, pass, position)``, the seed of this draw's augmentations (see :func:`sample_rng`)."""

    def __new__(cls, index, key):
        obj = super().__new__(cls, index)
        obj.key = key
        return obj

    def __reduce__(self):   # sent to DataLoader workers through a pipe
        return SampleIndex, (int(self), self.key)


def sample_rng(index, fallback=None):
    """The augmentation RNG of one sample when ``index`` is a :class:`SampleIndex`, else ``fallback`` (plain
    ints: direct ``dataset[i]`` calls, tests).

    A fresh ``np.random.RandomState`` (the legacy API the pipelines draw from, docs/reference/rsn_mspn.md §3.4) over a
    Philox bit generator, a counter-based RNG made for keyed streams: key (seed, tag), counter (0, 0, position,
    pass); the stream advances in the low counter words, so samples' streams never overlap. About 50 us per
    sample (a MT19937 RandomState costs ~300 us to construct)."""
    key = getattr(index, 'key', None)
    if key is None:
        return fallback
    seed, p, position = key
    bits = np.random.Philox(counter=[0, 0, position % 2 ** 64, p % 2 ** 64], key=[seed % 2 ** 64, _AUGMENTATION_TAG])
    return np.random.RandomState(bits)


class IterationBasedSampler(torch.utils.data.Sampler):
    """Batch sampler yielding ``num_iters - start_iter`` lists of ``batch_size`` dataset indices.

    Args:
        dataset_len: number of samples in the dataset (> 0).
        batch_size: samples per batch on this rank (IMS_PER_GPU).
        num_iters: total iterations of the run (MAX_ITER); iteration numbers are global, not per resume.
        start_iter: first iteration to produce (the checkpoint's ``sampler['iteration']``).
        rank, world_size: this process's shard; defaults from :mod:`cvpack.dist`.
        seed: base seed of the per-pass shuffles (cfg.SEED); every rank must use the same one.
        shuffle: False keeps the dataset order in every pass.
    """

    def __init__(self, dataset_len, batch_size, num_iters, start_iter=0, rank=None, world_size=None,
                 seed=0, shuffle=True):
        if dataset_len <= 0:
            raise ValueError('IterationBasedSampler: the dataset is empty')
        if rank is None or world_size is None:
            from ..dist import get_rank, get_world_size
            rank, world_size = get_rank(), get_world_size()
        if not 0 <= rank < world_size:
            raise ValueError('rank %d outside world size %d' % (rank, world_size))
        self.dataset_len, self.batch_size = int(dataset_len), int(batch_size)
        self.num_iters, self.start_iter = int(num_iters), int(start_iter)
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, int(seed), bool(shuffle)
        self.per_pass = math.ceil(self.dataset_len / world_size)  # indices of one pass on this rank

    def _pass_indices(self, p):
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + p)
            order = torch.randperm(self.dataset_len, generator=g).tolist()
        else:
            order = list(range(self.dataset_len))
        total = self.per_pass * self.world_size
        order += order[:total - len(order)]  # pad by wrapping (only when dataset_len % world_size != 0)
        return order[self.rank:total:self.world_size]

    def state_dict(self, iteration=None):
        """Position to store in a checkpoint (numbers only): ``iteration`` = iterations completed so far."""
        return {'iteration': self.start_iter if iteration is None else int(iteration), 'seed': self.seed,
                'world_size': self.world_size, 'dataset_len': self.dataset_len, 'batch_size': self.batch_size}

    def __iter__(self):
        pos = self.start_iter * self.batch_size  # offset in this rank's infinite index stream
        p, off = divmod(pos, self.per_pass)
        current = self._pass_indices(p)
        for _ in range(self.start_iter, self.num_iters):
            batch = []
            while len(batch) < self.batch_size:
                end = min(off + self.batch_size - len(batch), self.per_pass)
                # the j-th index of this rank's pass is position q = j * W + rank of the whole pass: q keys the
                # sample's augmentations (q < dataset_len: the same index and draws for any world size)
                batch += [SampleIndex(current[j], (self.seed, p, j * self.world_size + self.rank))
                          for j in range(off, end)]
                off = end
                if off == self.per_pass:
                    p, off = p + 1, 0
                    current = self._pass_indices(p)
            yield batch

    def __len__(self):
        return max(0, self.num_iters - self.start_iter)


def shard_indices(n, rank, world_size):
    """Contiguous shard of ``range(n)`` for ``rank``: sizes differ by at most one, nothing is duplicated
    (DistributedSampler pads with repeats, which would double-count instances in the evaluation)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return list(range(start, start + base + (1 if rank < extra else 0)))


class WeightedSourceDraw:
    """Which dataset, and which of its samples, a training position draws in combined training
    (:class:`cvpack.data.combined.CombinedDataset`): dataset ``d`` with probability ``weights[d] / sum``, then a
    uniform sample of it.

    A pure function of the position's key ``(seed, pass, position)`` (:class:`SampleIndex`, from the engine's
    :class:`IterationBasedSampler`), drawn from a Philox stream of its own (tag differs from the augmentations'),
    so the mix is reproducible and a resumed run (the sampler's ``start_iter`` from the checkpoint) continues
    it exactly; nothing but the sampler state needs saving. ``state_dict()`` describes the mix (weights,
    dataset sizes) for logs / checks.
    """

    _TAG = 0x6D6978   # 'mix'

    def __init__(self, sizes, weights):
        if len(sizes) != len(weights) or not sizes:
            raise ValueError('WeightedSourceDraw: %d dataset sizes for %d weights' % (len(sizes), len(weights)))
        if any(int(n) <= 0 for n in sizes):
            raise ValueError('WeightedSourceDraw: every combined dataset needs samples, sizes %s' % (list(sizes),))
        w = np.asarray(weights, np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError('WeightedSourceDraw: weights must be finite, >= 0 and not all 0, got %s'
                             % (list(weights),))
        self.sizes, self.weights = [int(n) for n in sizes], [float(v) for v in w]
        self.cdf = np.cumsum(w / w.sum())

    def __call__(self, key):
        """``key`` (seed, pass, position) -> (dataset id, sample index in that dataset)."""
        seed, p, position = key
        bits = np.random.Philox(counter=[0, 0, position % 2 ** 64, p % 2 ** 64], key=[seed % 2 ** 64, self._TAG])
        u = np.random.Generator(bits).random(2)
        d = min(int(np.searchsorted(self.cdf, u[0], side='right')), len(self.sizes) - 1)
        return d, min(int(u[1] * self.sizes[d]), self.sizes[d] - 1)

    def state_dict(self):
        return {'sizes': list(self.sizes), 'weights': list(self.weights)}


class GroupedBatchSampler(torch.utils.data.Sampler):
    """Batches of indices with one aspect-ratio group per batch (Detectron2 ``AspectRatioGroupedDataset``).

    Wraps any index sampler: indices are buffered per group and a batch is emitted as soon as a group
    holds ``batch_size`` of them.
    """

    def __init__(self, sampler, group_ids, batch_size):
        self.sampler, self.group_ids, self.batch_size = sampler, list(group_ids), batch_size

    def __iter__(self):
        buckets = {}
        for idx in self.sampler:
            b = buckets.setdefault(self.group_ids[idx], [])
            b.append(idx)
            if len(b) == self.batch_size:
                yield list(b)
                b.clear()

    def __len__(self):
        return len(self.sampler) // self.batch_size


class GroupedIterationSampler(torch.utils.data.Sampler):
    """Aspect-ratio grouping on top of the engine's resumable ``IterationBasedSampler``.

    The grouped stream is a pure function of the wrapped sampler's (seed, rank, world size): it is
    replayed from iteration 0 (index arithmetic only, no data) and the first ``start_iter`` grouped
    batches are skipped, so a resumed run continues exactly. With G groups, M grouped batches consume
    at most M + G source batches, hence the source runs ``len(groups)`` iterations longer.
    """

    def __init__(self, sampler, group_ids):
        self.start_iter, self.num_iters = sampler.start_iter, sampler.num_iters
        self.group_ids = list(group_ids)
        extra = len(set(self.group_ids)) + 1
        self.source = IterationBasedSampler(sampler.dataset_len, sampler.batch_size, sampler.num_iters + extra, 0,
                                            sampler.rank, sampler.world_size, sampler.seed, sampler.shuffle)
        self.batch_size = sampler.batch_size
        self.wrapped = sampler

    def _flat(self):
        for batch in self.source:
            yield from batch

    def __iter__(self):
        for i, batch in enumerate(GroupedBatchSampler(self._flat(), self.group_ids, self.batch_size)):
            if i >= self.num_iters:
                return
            if i >= self.start_iter:
                yield batch

    def state_dict(self, iteration=None):
        return self.wrapped.state_dict(iteration)

    def __len__(self):
        return max(0, self.num_iters - self.start_iter)
