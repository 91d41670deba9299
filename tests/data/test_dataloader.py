"""Tests of lucid.data.DataLoader, its samplers and default_collate."""

from collections import namedtuple

import numpy as np
import pytest

import lucid
from lucid.data import (BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler,
                        TensorDataset, default_collate, random_split)


def make_dataset(n=10):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = np.arange(n, dtype=np.int64)
    return TensorDataset(x, y)


def labels_of(loader):
    return [yb.data.tolist() for _, yb in loader]


def test_sequential_batches_and_len():
    loader = DataLoader(make_dataset(10), batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [b[1].data.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    xb, yb = batches[0]
    assert isinstance(batches[0], tuple)
    assert xb.shape == (4, 2) and xb.dtype == np.float32 and yb.dtype == np.int64
    np.testing.assert_array_equal(xb.data, np.arange(8, dtype=np.float32).reshape(4, 2))


def test_drop_last():
    loader = DataLoader(make_dataset(10), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert labels_of(loader) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_default_batch_size_is_one():
    loader = DataLoader(make_dataset(3))
    assert len(loader) == 3 and labels_of(loader) == [[0], [1], [2]]


def test_fast_path_matches_item_by_item_collate():
    ds = make_dataset(10)
    fast = list(DataLoader(ds, batch_size=3, shuffle=True, seed=1))
    slow = list(DataLoader(ds, batch_size=3, shuffle=True, seed=1, collate_fn=default_collate))
    assert len(fast) == len(slow) == 4
    for f, s in zip(fast, slow):
        assert type(f) is type(s) is tuple
        for a, b in zip(f, s):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a.data, b.data)


def test_fast_path_does_not_fetch_items_one_by_one(monkeypatch):
    ds = make_dataset(10)

    def no_items(self, index):
        raise AssertionError("the TensorDataset fast path should not index item by item")

    monkeypatch.setattr(TensorDataset, "__getitem__", no_items)
    assert len(list(DataLoader(ds, batch_size=4))) == 3
    # a Subset of a TensorDataset (random_split's output) takes the fast path too
    train, _ = random_split(ds, [6, 4], seed=0)
    assert sum(len(yb) for _, yb in DataLoader(train, batch_size=4)) == 6


def test_shuffle_with_seed_is_reproducible_and_fresh_each_epoch():
    ds = make_dataset(20)
    a = DataLoader(ds, batch_size=5, shuffle=True, seed=42)
    b = DataLoader(ds, batch_size=5, shuffle=True, seed=42)
    a1, a2 = labels_of(a), labels_of(a)
    assert labels_of(b) == a1 and labels_of(b) == a2      # same seed: same epochs
    assert a1 != a2                                       # a fresh permutation each epoch
    assert sorted(sum(a1, [])) == list(range(20))         # each epoch visits every sample once
    assert labels_of(DataLoader(ds, batch_size=5, shuffle=True, seed=43)) != a1


def test_shuffle_without_seed_follows_manual_seed():
    ds = make_dataset(20)
    lucid.manual_seed(0)
    first = labels_of(DataLoader(ds, batch_size=5, shuffle=True))
    lucid.manual_seed(0)
    assert labels_of(DataLoader(ds, batch_size=5, shuffle=True)) == first


def test_random_sampler_set_epoch():
    ds = make_dataset(8)
    s = RandomSampler(ds, seed=7)
    epoch0, epoch1 = list(s), list(s)
    s.set_epoch(1)
    assert list(s) == epoch1
    s.set_epoch(0)
    assert list(s) == epoch0 and len(s) == 8
    with pytest.raises(ValueError, match="seed"):
        RandomSampler(ds, seed=-1)


def test_epoch_advances_when_iteration_starts():
    loader = DataLoader(make_dataset(8), batch_size=8, shuffle=True, seed=3)
    it = iter(loader)
    assert loader.sampler.epoch == 1
    next(it)


class EveryOther:
    """A sampler that only has __iter__, __len__ and set_epoch (like a DistributedSampler)."""

    def __init__(self, n, rank):
        self.n, self.rank, self.epoch = n, rank, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        return iter(range(self.rank, self.n, 2))

    def __len__(self):
        return len(range(self.rank, self.n, 2))


def test_any_sampler_plugs_in():
    ds = make_dataset(10)
    loader = DataLoader(ds, batch_size=2, sampler=EveryOther(10, rank=1))
    assert len(loader) == 3
    assert labels_of(loader) == [[1, 3], [5, 7], [9]]
    loader.sampler.set_epoch(1)
    assert loader.sampler.epoch == 1


def test_builtin_samplers():
    ds = make_dataset(5)
    assert list(SequentialSampler(ds)) == [0, 1, 2, 3, 4]
    assert list(BatchSampler(SequentialSampler(ds), 2, False)) == [[0, 1], [2, 3], [4]]
    assert len(BatchSampler(SequentialSampler(ds), 2, True)) == 2


def test_errors_follow_torch():
    ds = make_dataset(4)
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(ds, shuffle=True, sampler=SequentialSampler(ds))
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="drop_last should be a boolean value"):
        DataLoader(ds, drop_last=1)


class Records(Dataset):
    """Samples of many kinds, to exercise default_collate."""

    Point = namedtuple("Point", "x y")

    def __getitem__(self, i):
        return {"id": i, "w": i / 2, "name": f"s{i}", "flag": i % 2 == 0,
                "pt": self.Point(np.float32(i), [i, i + 1]), "img": np.full((2, 2), i, np.uint8)}

    def __len__(self):
        return 5


def test_default_collate_on_general_samples():
    batch = next(iter(DataLoader(Records(), batch_size=3)))
    assert batch["id"].dtype == np.int64 and batch["id"].data.tolist() == [0, 1, 2]
    assert batch["w"].dtype == np.float64
    assert batch["name"] == ["s0", "s1", "s2"]
    assert batch["flag"].dtype == np.bool_
    assert isinstance(batch["pt"], Records.Point) and batch["pt"].x.dtype == np.float32
    assert isinstance(batch["pt"].y, list) and batch["pt"].y[1].data.tolist() == [1, 2, 3]
    assert batch["img"].shape == (3, 2, 2) and batch["img"].dtype == np.uint8


def test_default_collate_errors():
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="object"):
        default_collate([object(), object()])


def test_custom_collate_fn_gets_the_samples():
    seen = []
    loader = DataLoader(make_dataset(4), batch_size=2,
                        collate_fn=lambda items: seen.append(items) or len(items))
    assert list(loader) == [2, 2]
    assert len(seen[0]) == 2 and seen[0][1][1].item() == 1
