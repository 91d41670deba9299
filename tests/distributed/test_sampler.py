"""DistributedSampler: padding, drop_last, seeded per-epoch shuffles, and exact coverage across replicas."""

import numpy as np
import pytest

from distributed import DistributedSampler


def shares(n, replicas, **kwargs):
    return [list(DistributedSampler(range(n), num_replicas=replicas, rank=r, **kwargs)) for r in range(replicas)]


@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("shuffle", [False, True])
def test_covers_the_dataset_exactly_once_per_epoch_when_divisible(replicas, shuffle):
    sampler = DistributedSampler(range(12), num_replicas=replicas, rank=0, shuffle=shuffle)
    assert len(sampler) == 12 // replicas
    for epoch in range(3):
        parts = [DistributedSampler(range(12), num_replicas=replicas, rank=r, shuffle=shuffle) for r in
                 range(replicas)]
        for part in parts:
            part.set_epoch(epoch)
        indices = [i for part in parts for i in part]
        assert sorted(indices) == list(range(12))
        assert all(len(list(part)) == 12 // replicas for part in parts)


def test_without_shuffle_rank_r_takes_every_nth_index():
    assert shares(6, 3, shuffle=False) == [[0, 3], [1, 4], [2, 5]]


def test_padding_repeats_the_first_indices():
    parts = shares(10, 4, shuffle=False)
    assert parts == [[0, 4, 8], [1, 5, 9], [2, 6, 0], [3, 7, 1]]
    assert all(len(DistributedSampler(range(10), 4, r, shuffle=False)) == 3 for r in range(4))
    # more replicas than samples: the dataset is repeated as often as needed
    assert shares(2, 5, shuffle=False) == [[0], [1], [0], [1], [0]]


def test_drop_last_cuts_the_tail():
    parts = shares(10, 4, shuffle=False, drop_last=True)
    assert parts == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert len(DistributedSampler(range(10), 4, 0, drop_last=True)) == 2
    shuffled = shares(10, 4, drop_last=True, seed=3)
    flat = [i for part in shuffled for i in part]
    assert len(flat) == len(set(flat)) == 8
    # a divisible dataset loses nothing
    assert sorted(i for part in shares(8, 4, drop_last=True) for i in part) == list(range(8))


def test_shuffle_depends_on_seed_and_epoch_only():
    a = DistributedSampler(range(50), num_replicas=2, rank=1, seed=7)
    b = DistributedSampler(range(50), num_replicas=2, rank=1, seed=7)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating again gives the same epoch
    first = list(a)
    a.set_epoch(1)
    assert a.epoch == 1
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    c = DistributedSampler(range(50), num_replicas=2, rank=1, seed=8)
    assert list(c) != first
    assert list(DistributedSampler(range(50), 2, 1, shuffle=False)) == list(range(1, 50, 2))


def test_matches_torch_without_shuffle():
    torch_data = pytest.importorskip("torch.utils.data")
    for n, replicas, drop_last in [(10, 4, False), (10, 4, True), (3, 5, False), (12, 3, False)]:
        for rank in range(replicas):
            ours = DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
            theirs = torch_data.DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
            assert list(ours) == list(theirs) and len(ours) == len(theirs)


@pytest.mark.parametrize("rank", [-1, 3, 7])
def test_rejects_a_rank_outside_the_world(rank):
    with pytest.raises(ValueError, match=r"Invalid rank .*interval \[0, 2\]"):
        DistributedSampler(range(10), num_replicas=3, rank=rank)


def test_rejects_no_replicas():
    with pytest.raises(ValueError, match="num_replicas"):
        DistributedSampler(range(10), num_replicas=0, rank=0)


def test_defaults_come_from_the_world():
    sampler = DistributedSampler(np.arange(5))
    assert (sampler.num_replicas, sampler.rank, sampler.shuffle, sampler.seed, sampler.drop_last) == \
        (1, 0, True, 0, False)
    assert sorted(sampler) == list(range(5))
