"""The iteration-based sampler: resume position, rank shards, determinism; the test shard."""
import itertools

from cvpack.data.samplers import IterationBasedSampler, shard_indices


def test_resume_continues_the_same_stream():
    full = list(IterationBasedSampler(7, 3, 10, rank=0, world_size=1, seed=5))
    tail = list(IterationBasedSampler(7, 3, 10, start_iter=4, rank=0, world_size=1, seed=5))
    assert len(full) == 10 and tail == full[4:]
    stream = list(itertools.chain(*full))
    assert sorted(stream[:7]) == list(range(7)) and sorted(stream[7:14]) == list(range(7))  # whole passes
    assert stream[:7] != stream[7:14]                       # each pass reshuffled (seed + pass index)


def test_ranks_split_each_pass():
    a = list(itertools.chain(*IterationBasedSampler(8, 2, 4, rank=0, world_size=2, seed=1)))
    b = list(itertools.chain(*IterationBasedSampler(8, 2, 4, rank=1, world_size=2, seed=1)))
    assert sorted(a[:4] + b[:4]) == list(range(8))          # pass 0 shared out without overlap
    assert sorted(a[4:] + b[4:]) == list(range(8))


def test_unshuffled_order_and_len():
    s = IterationBasedSampler(5, 2, 3, start_iter=1, rank=0, world_size=1, shuffle=False)
    assert len(s) == 2 and list(s) == [[2, 3], [4, 0]]


def test_shard_indices_no_duplicates():
    shards = [shard_indices(7, r, 3) for r in range(3)]
    assert shards == [[0, 1, 2], [3, 4], [5, 6]]
    assert shard_indices(1, 1, 2) == []
