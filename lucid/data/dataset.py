"""Datasets: the map-style Dataset base, TensorDataset, Subset and random_split (PyTorch's names)."""

from __future__ import annotations

import math

import numpy as np

from .. import _backend, random
from ..tensor import Tensor


class Dataset:
    """Base class of map-style datasets: `dataset[i]` returns sample i, `len(dataset)` counts them.

    Subclasses implement `__getitem__` and `__len__`. A subclass may also implement
    `_get_batch(indices)`, returning an already collated batch; DataLoader then fetches whole
    batches through it instead of collating samples one by one (TensorDataset does).
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")


def _as_data_array(value, position: int):
    """The raw array behind a Tensor, array or array-like (lists become arrays as Tensor would)."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, np.ndarray) or _backend.is_gpu_array(value):
        return value
    try:
        return Tensor(value).data
    except (TypeError, ValueError) as exc:
        raise TypeError(f"TensorDataset argument {position} is a {type(value).__name__}, "
                        "not a Tensor or an array") from exc


class TensorDataset(Dataset):
    """A dataset of tensors that share their first dimension: sample i is `(t[i] for t in tensors)`.

    Args:
        *tensors: lucid Tensors or numpy/cupy arrays, all with the same size in dimension 0. They
            are wrapped, not copied, and keep their dtypes (integer labels stay int64).

    Raises:
        ValueError: when there are no tensors, a tensor is 0-d, or the first dimensions differ.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        arrays = [_as_data_array(t, i) for i, t in enumerate(tensors)]
        if any(a.ndim == 0 for a in arrays):
            raise ValueError("TensorDataset tensors must have at least one dimension; got shapes "
                             f"{[tuple(a.shape) for a in arrays]}")
        sizes = [int(a.shape[0]) for a in arrays]
        if len(set(sizes)) != 1:
            raise ValueError(f"Size mismatch between tensors: first dimensions are {sizes}")
        # Arrays are read through `.data` at every access, so a tensor moved later is followed.
        self.tensors = tuple(t if isinstance(t, Tensor) else Tensor(a) for t, a in zip(tensors, arrays))

    def __len__(self) -> int:
        return int(self.tensors[0].data.shape[0])

    def __getitem__(self, index):
        # `[index, ...]` keeps a 0-d array (not a NumPy scalar) so the dtype survives exactly.
        return tuple(Tensor(t.data[index, ...]) for t in self.tensors)

    def _get_batch(self, indices) -> tuple:
        """The samples at `indices`, already batched: one fancy-indexing per tensor."""
        idx = np.asarray(indices, dtype=np.int64)
        out = []
        for t in self.tensors:
            a = t.data
            xp = _backend.array_module(a)
            out.append(Tensor(a[xp.asarray(idx)]))
        return tuple(out)


class Subset(Dataset):
    """The samples of `dataset` at the given `indices`, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    def __getitem__(self, index):
        if isinstance(index, (list, tuple, np.ndarray)):
            return [self.dataset[self.indices[int(i)]] for i in index]
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return len(self.indices)


def batch_fetcher(dataset):
    """A callable mapping a list of indices to a collated batch, or None when `dataset` has none.

    TensorDataset (and subclasses) fetch a batch with one fancy-indexing per tensor; a Subset of such
    a dataset maps its indices and fetches the same way. DataLoader uses this when collate_fn is None.
    """
    if isinstance(dataset, Subset):
        inner = batch_fetcher(dataset.dataset)
        if inner is None:
            return None
        indices = dataset.indices
        return lambda batch: inner([indices[int(i)] for i in batch])
    return getattr(dataset, "_get_batch", None)


def _split_lengths(n: int, lengths) -> list[int]:
    """Integer lengths summing to n; fractions are floored and the remainder dealt round-robin."""
    lengths = list(lengths)
    integral = all(isinstance(x, (int, np.integer)) for x in lengths)
    if not integral and math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        if any(not 0 <= frac <= 1 for frac in lengths):
            raise ValueError(f"Fractions in random_split must be between 0 and 1, got {lengths}")
        counts = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        return counts
    if not integral or any(x < 0 for x in lengths):
        raise ValueError("random_split lengths must be non-negative integers or fractions summing "
                         f"to 1, got {lengths}")
    if sum(lengths) != n:
        raise ValueError("Sum of input lengths does not equal the length of the input dataset!")
    return [int(x) for x in lengths]


def random_split(dataset, lengths, seed=None) -> list[Subset]:
    """Split `dataset` into non-overlapping random Subsets of the given lengths.

    Args:
        dataset: any dataset with `__len__`.
        lengths: integer lengths summing to `len(dataset)`, or fractions summing to 1 (floored, with
            the remainder dealt one by one from the first split on, as PyTorch does).
        seed: seed for the permutation; None draws it from lucid's global generator
            (`lucid.manual_seed` makes it reproducible).

    Returns:
        One Subset per length.
    """
    counts = _split_lengths(len(dataset), lengths)
    rng = random.default_generator() if seed is None else np.random.default_rng(seed)
    perm = rng.permutation(len(dataset)).tolist()
    out, start = [], 0
    for count in counts:
        out.append(Subset(dataset, perm[start:start + count]))
        start += count
    return out
