"""Samplers: the orders in which a DataLoader visits a dataset (PyTorch's names and semantics)."""

from __future__ import annotations

import numpy as np

from .. import random


class Sampler:
    """Base class of samplers: `iter(sampler)` yields dataset indices, `len(sampler)` counts them.

    DataLoader accepts any object with `__iter__` and `__len__`; subclassing is optional (a
    DistributedSampler from another package plugs in the same way).
    """

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")


class SequentialSampler(Sampler):
    """Yields 0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """Yields a random permutation of the indices, a fresh one on every pass.

    Args:
        data_source: the dataset (only its length is used).
        seed: with a seed, pass k (counted from `epoch`, which starts at 0) uses the permutation
            drawn from `numpy.random.default_rng([seed, k])`: two samplers with one seed give the
            same sequence of epochs, and `set_epoch` jumps to any of them. Without a seed, each pass
            draws from lucid's global generator (reproducible through `lucid.manual_seed`).
    """

    def __init__(self, data_source, seed=None):
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool)
                                 or seed < 0):
            raise ValueError(f"seed should be a non-negative integer or None, but got seed={seed!r}")
        self.data_source = data_source
        self.seed = None if seed is None else int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use epoch `epoch`'s permutation (only meaningful with a seed)."""
        self.epoch = int(epoch)

    def __iter__(self):
        # The permutation is drawn here, not lazily, so the epoch advances when iter() is called.
        n = len(self.data_source)
        if self.seed is None:
            perm = random.default_generator().permutation(n)
        else:
            perm = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        self.epoch += 1
        return iter(perm.tolist())

    def __len__(self) -> int:
        return len(self.data_source)


class BatchSampler(Sampler):
    """Groups the indices of `sampler` into lists of `batch_size` (the last one shorter or dropped).

    Raises:
        ValueError: for a batch_size that is not a positive integer or a drop_last that is not a bool
            (PyTorch's messages).
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) \
                or batch_size <= 0:
            raise ValueError("batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = drop_last

    def __iter__(self):
        # iter(sampler) now, not at the first next(): a RandomSampler's epoch advances per iter() call.
        return self._batches(iter(self.sampler))

    def _batches(self, indices):
        batch = []
        for index in indices:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size
