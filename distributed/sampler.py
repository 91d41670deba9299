"""DistributedSampler: each rank's share of a dataset's indices, reshuffled every epoch."""

from __future__ import annotations

import math
from collections.abc import Sized

import numpy as np

from . import comm as _comm


class DistributedSampler:
    """Indices for this rank, as torch.utils.data.DistributedSampler.

    Every epoch the indices are shuffled with the same seed on every rank (seed + epoch), padded by
    repeating the first ones so that they split evenly (or cut with `drop_last`), and rank r takes
    every num_replicas-th index starting at r. Call `set_epoch(epoch)` before each epoch.

    Args:
        dataset: anything with `len()`.
        num_replicas: number of ranks (default: the world size).
        rank: this rank (default: the world rank).
        shuffle: shuffle each epoch.
        seed: shuffling seed; must be the same on every rank.
        drop_last: drop the tail instead of padding.
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None:
            num_replicas = _comm.world().size
        if rank is None:
            rank = _comm.world().rank
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be at least 1, got {num_replicas}")
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas, self.rank = num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0
        n = len(dataset)
        if drop_last and n % num_replicas:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self):
        n = len(self.dataset)
        indices = (np.random.default_rng(self.seed + self.epoch).permutation(n) if self.shuffle
                   else np.arange(n))
        if self.drop_last:
            indices = indices[:self.total_size]
        elif self.total_size > n:
            repeats = math.ceil((self.total_size - n) / max(n, 1))
            indices = np.concatenate([indices] + [indices] * repeats)[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Use a new shuffle for `epoch` (the same on every rank)."""
        self.epoch = int(epoch)
