"""DataLoader: batches of a dataset in sequential, shuffled or sampler-given order, and default_collate."""

from __future__ import annotations

import collections.abc
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from .. import _backend
from ..tensor import Tensor
from .dataset import batch_fetcher
from .sampler import BatchSampler, RandomSampler, SequentialSampler

if TYPE_CHECKING:
    from .dataset import Dataset


def _stack_arrays(arrays) -> Tensor:
    """Stack same-shaped arrays (or NumPy scalars) along a new first axis, on their own device."""
    xp = _backend.array_module(arrays[0])
    return Tensor(xp.stack([xp.asarray(a) for a in arrays]))


def default_collate(batch):
    """Merge a list of samples into a batch (PyTorch's default_collate, with lucid Tensors).

    Tensors, arrays and NumPy scalars are stacked along a new first axis into a Tensor (dtypes kept);
    Python ints become an int64 Tensor, floats a float64 Tensor (as PyTorch does), bools a bool Tensor;
    strings and bytes stay a list; mappings are collated key by key; tuples, namedtuples and lists
    are transposed and collated field by field, keeping their type (PyTorch turns plain tuples into
    lists; lucid keeps tuples so that both DataLoader paths yield the same thing).

    Raises:
        TypeError: for a sample type it cannot batch.
        RuntimeError: when sequence samples have different lengths.
    """
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack_arrays([t.data for t in batch])
    if isinstance(elem, (np.ndarray, np.generic)) or _backend.is_gpu_array(elem):
        if isinstance(elem, np.ndarray) and elem.dtype.kind in "OUSV":
            raise TypeError(f"default_collate: cannot batch arrays of dtype {elem.dtype}")
        return _stack_arrays(batch)
    if isinstance(elem, bool):
        return Tensor(np.array(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return Tensor(np.array(batch, dtype=np.int64))
    if isinstance(elem, float):
        return Tensor(np.array(batch, dtype=np.float64))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        collated = {key: default_collate([d[key] for d in batch]) for key in elem}
        try:
            return collated if type(elem) is dict else type(elem)(collated)
        except TypeError:  # a Mapping whose constructor takes something else
            return collated
    if isinstance(elem, collections.abc.Sequence):
        if any(len(sample) != len(elem) for sample in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        fields = [default_collate(list(samples)) for samples in zip(*batch)]
        if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
            return type(elem)(*fields)
        return tuple(fields) if isinstance(elem, tuple) else fields
    raise TypeError(f"default_collate: batch must contain Tensors, arrays, numbers, strings, dicts "
                    f"or lists; found {type(elem).__name__}")


class DataLoader:
    """Iterates over a dataset in batches, with PyTorch's DataLoader semantics (single process).

    Args:
        dataset: a map-style dataset (`__getitem__` and `__len__`).
        batch_size: samples per batch (a positive int).
        shuffle: visit the samples in a new random order every epoch. Mutually exclusive with `sampler`.
        sampler: any object with `__iter__` (yielding indices) and `__len__`, e.g. a
            DistributedSampler; call its `set_epoch` yourself where it has one.
        drop_last: drop the last batch when it is smaller than `batch_size`.
        seed: seed of the shuffling: epoch k of a loader built with `seed` is the same in every run
            (see RandomSampler). None shuffles from lucid's global generator.
        collate_fn: merges a list of samples into a batch; default `default_collate`. With the
            default, datasets that fetch whole batches (TensorDataset, its subclasses and Subsets of
            them) are indexed once per batch instead of sample by sample.

    Raises:
        ValueError: for `shuffle` together with `sampler`, or a bad batch_size / drop_last.
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = False,
                 sampler: Iterable[int] | None = None, drop_last: bool = False, seed: int | None = None,
                 collate_fn: Callable[[list], object] | None = None) -> None:
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if sampler is None:
            sampler = RandomSampler(dataset, seed=seed) if shuffle else SequentialSampler(dataset)
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.seed = seed
        self.sampler = sampler
        self.batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        self._fetch_batch = batch_fetcher(dataset) if collate_fn is None else None

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        batches = iter(self.batch_sampler)
        if self._fetch_batch is not None:
            return map(self._fetch_batch, batches)
        return (self.collate_fn([self.dataset[i] for i in indices]) for indices in batches)

    def __repr__(self) -> str:
        return (f"DataLoader(dataset={type(self.dataset).__name__}, batch_size={self.batch_size}, "
                f"sampler={type(self.sampler).__name__}, drop_last={self.drop_last})")
