"""Who owns what: which rank holds the optimizer state of which elements, or which whole parameters, of a flat buffer.

Pure functions of sizes, weights and the world size: every rank computes the same answers without
communicating, and the sharding strategies, checkpoint save and checkpoint load all ask here.

- Element ownership (elementwise optimizers): a flat buffer is padded to a multiple of the world size
  and cut into equal contiguous slices, rank r owning slice r; a parameter may straddle two ranks.
- Parameter ownership (optimizers whose update needs a whole tensor): each parameter has one owner,
  chosen greedily by weight (its optimizer-state bytes), heaviest first, each going to the rank with
  the least so far (ties: the lower index, the lower rank). A flat buffer then holds its parameters
  grouped by owner, so each rank's parameters are again one contiguous range (of uneven length).
- Even pieces: a tensor every rank holds whole is written in world-size nearly equal pieces.

Either way an `Ownership` gives each rank one contiguous [start, stop) range of the buffer; the
ranges are in rank order and cover the buffer, padding included, each element exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ownership:
    """Rank r owns elements [ranges[r][0], ranges[r][1]) of a flat buffer of `size` elements.

    Attributes:
        size: the buffer's length, padding included.
        ranges: one (start, stop) per rank, in rank order, contiguous, covering [0, size).
        whole_parameters: the ranges fall on parameter boundaries (each parameter has one owner).
    """

    size: int
    ranges: tuple
    whole_parameters: bool = False

    @property
    def world_size(self) -> int:
        return len(self.ranges)

    @property
    def counts(self) -> list:
        """The number of elements each rank owns."""
        return [stop - start for start, stop in self.ranges]

    @property
    def equal(self) -> bool:
        """Every rank owns as many elements (an in-place all-gather of equal slices fits)."""
        return len(set(self.counts)) == 1

    def part(self, start: int, stop: int, rank: int) -> tuple:
        """[a, b) of the flat range [start, stop) that `rank` owns, in buffer coordinates (a == b: none)."""
        low, high = self.ranges[rank]
        a, b = max(start, low), min(stop, high)
        return (a, b) if a < b else (start, start)

    def counts_within(self, start: int, stop: int) -> list:
        """How many elements of [start, stop) each rank owns (a bucket's reduce-scatter pieces)."""
        return [b - a for a, b in (self.part(start, stop, r) for r in range(self.world_size))]


def padded_size(numel: int, world_size: int) -> int:
    """The length of a flat buffer of `numel` elements padded to a multiple of the world size (at least one
    element per rank)."""
    return -(-numel // world_size) * world_size if numel else world_size


def element_ownership(size: int, world_size: int) -> Ownership:
    """Equal contiguous slices of a buffer of `size` elements (a multiple of the world size)."""
    if size <= 0 or size % world_size:
        raise ValueError(f"a flat buffer of {size} elements does not split into {world_size} equal slices")
    length = size // world_size
    return Ownership(size, tuple((r * length, (r + 1) * length) for r in range(world_size)))


def assign_owners(weights, world_size: int) -> tuple:
    """One owner per item, balancing the sum of weights per rank (sorted greedy: longest processing time).

    Heaviest first (ties by index), each to the rank with the least weight so far (ties: the rank with
    fewer items, then the lowest rank: weightless items go round). The heaviest rank ends at most
    (total / world_size + the largest single weight).

    Args:
        weights: non-negative numbers, one per item (a parameter's optimizer-state bytes).
        world_size: the number of ranks.

    Returns:
        The owning rank of each item, in the items' order.
    """
    if world_size < 1:
        raise ValueError(f"world size must be at least 1, got {world_size}")
    weights = list(weights)
    if any(w < 0 for w in weights):
        raise ValueError(f"weights must be non-negative, got {weights}")
    loads, counts = [0] * world_size, [0] * world_size
    owners = [0] * len(weights)
    for index in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        rank = min(range(world_size), key=lambda r: (loads[r], counts[r], r))
        owners[index] = rank
        loads[rank] += weights[index]
        counts[rank] += 1
    return tuple(owners)


def grouped_by_owner(owners) -> list:
    """Item indices ordered by owner (a stable sort: each owner's items keep their order)."""
    return sorted(range(len(owners)), key=lambda i: owners[i])


def parameter_ownership(numels, owners, world_size: int) -> Ownership:
    """The ranges of a flat buffer whose parameters (sizes `numels`) lie grouped by owner, in owner order.

    Args:
        numels: each parameter's element count, in the buffer's order.
        owners: each parameter's owner, in the same order (non-decreasing: see `grouped_by_owner`).
        world_size: the number of ranks.
    """
    owners = list(owners)
    if any(b < a for a, b in zip(owners, owners[1:])):
        raise ValueError(f"parameters must lie grouped by owner in rank order, got owners {owners}")
    if any(not 0 <= r < world_size for r in owners):
        raise ValueError(f"owners {owners} do not all exist in a world of size {world_size}")
    ends = [0] * world_size
    offset = 0
    for numel, owner in zip(numels, owners):
        offset += numel
        ends[owner] = offset
    ranges, start = [], 0
    for rank in range(world_size):
        stop = max(start, ends[rank])
        ranges.append((start, stop))
        start = stop
    return Ownership(offset, tuple(ranges), whole_parameters=True)


def even_piece(numel: int, rank: int, world_size: int) -> tuple:
    """[start, stop) of the rank-th of `world_size` nearly equal pieces of a tensor every rank holds whole."""
    length = -(-numel // world_size) if numel else 0
    return min(rank * length, numel), min((rank + 1) * length, numel)
