"""Tests of lucid.data's datasets: TensorDataset, Subset, random_split and the batch fetch path."""

import numpy as np
import pytest

import lucid
from lucid.data import Dataset, Subset, TensorDataset, random_split
from lucid.data.dataset import batch_fetcher


def make_dataset(n=10):
    x = np.arange(n * 3, dtype=np.float64).reshape(n, 3)
    y = np.arange(n, dtype=np.int64) % 4
    return TensorDataset(lucid.Tensor(x), y)


def test_tensor_dataset_items_keep_dtypes_and_shapes():
    ds = make_dataset()
    assert len(ds) == 10
    x, y = ds[3]
    assert isinstance(x, lucid.Tensor) and isinstance(y, lucid.Tensor)
    assert x.shape == (3,) and x.dtype == np.float64
    np.testing.assert_array_equal(x.data, [9.0, 10.0, 11.0])
    assert y.shape == () and y.dtype == np.int64 and y.item() == 3
    assert len(ds.tensors) == 2 and all(isinstance(t, lucid.Tensor) for t in ds.tensors)


def test_tensor_dataset_wraps_without_copying():
    x = np.zeros((4, 2), dtype=np.float32)
    ds = TensorDataset(x)
    x[1] = 7.0
    np.testing.assert_array_equal(ds[1][0].data, [7.0, 7.0])


def test_tensor_dataset_accepts_lists():
    ds = TensorDataset([[1.0, 2.0], [3.0, 4.0]], [0, 1])
    assert ds[1][0].dtype == np.float32 and ds[1][1].dtype == np.int64


def test_tensor_dataset_size_mismatch_names_sizes():
    with pytest.raises(ValueError, match=r"\[5, 4\]"):
        TensorDataset(np.zeros((5, 2)), np.zeros(4))


def test_tensor_dataset_rejects_nothing_and_scalars():
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()
    with pytest.raises(ValueError, match="at least one dimension"):
        TensorDataset(np.zeros(3), np.float32(1.0) * np.ones(()))
    with pytest.raises(TypeError, match="argument 1"):
        TensorDataset(np.zeros(3), object())


def test_get_batch_equals_stacked_items():
    ds = make_dataset()
    idx = [7, 0, 3, 3]
    xb, yb = ds._get_batch(idx)
    np.testing.assert_array_equal(xb.data, np.stack([ds[i][0].data for i in idx]))
    np.testing.assert_array_equal(yb.data, [ds[i][1].item() for i in idx])
    assert xb.dtype == np.float64 and yb.dtype == np.int64


def test_subset_maps_indices():
    ds = make_dataset()
    sub = Subset(ds, [9, 2, 5])
    assert len(sub) == 3
    assert sub[0][1].item() == 9 % 4
    np.testing.assert_array_equal(sub[1][0].data, ds[2][0].data)
    assert [s[1].item() for s in sub[[0, 2]]] == [9 % 4, 5 % 4]


def test_batch_fetcher_for_subsets_and_plain_datasets():
    ds = make_dataset()
    sub = Subset(Subset(ds, [9, 8, 7, 6]), [3, 0])
    fetch = batch_fetcher(sub)
    xb, _ = fetch([0, 1])
    np.testing.assert_array_equal(xb.data, ds._get_batch([6, 9])[0].data)

    class Plain(Dataset):
        def __getitem__(self, i):
            return i

        def __len__(self):
            return 3

    assert batch_fetcher(Plain()) is None
    assert batch_fetcher(Subset(Plain(), [0])) is None


def test_dataset_base_is_abstract():
    with pytest.raises(NotImplementedError):
        Dataset()[0]
    with pytest.raises(NotImplementedError):
        len(Dataset())


def test_random_split_lengths_disjoint_and_seeded():
    ds = make_dataset(10)
    a, b = random_split(ds, [7, 3], seed=5)
    assert (len(a), len(b)) == (7, 3)
    assert sorted(a.indices + b.indices) == list(range(10))
    a2, _ = random_split(ds, [7, 3], seed=5)
    assert a.indices == a2.indices
    a3, _ = random_split(ds, [7, 3], seed=6)
    assert a.indices != a3.indices


def test_random_split_fractions_deal_remainder_like_torch():
    ds = make_dataset(10)
    parts = random_split(ds, [0.33, 0.33, 0.34], seed=0)
    # floors are 3, 3, 3; the one left over goes to the first split
    assert [len(p) for p in parts] == [4, 3, 3]


def test_random_split_global_generator_is_reproducible():
    ds = make_dataset(10)
    lucid.manual_seed(3)
    first = random_split(ds, [5, 5])[0].indices
    lucid.manual_seed(3)
    assert random_split(ds, [5, 5])[0].indices == first


def test_random_split_errors():
    ds = make_dataset(10)
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(ds, [5, 4])
    with pytest.raises(ValueError, match="non-negative"):
        random_split(ds, [11, -1])
    with pytest.raises(ValueError, match="between 0 and 1"):
        random_split(ds, [1.5, -0.5])
