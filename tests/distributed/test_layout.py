"""distributed.layout, the ownership layout: a pure function of sizes, weights and the world size. Every element
is owned once, padding included; parameter owners balance state bytes, deterministically; even pieces
partition a tensor."""

import itertools

import numpy as np
import pytest

from distributed import layout

WORLD_SIZES = [1, 2, 3, 4, 7]


def assert_partitions(ownership, size):
    """Ranges in rank order, contiguous, covering [0, size): every element owned exactly once."""
    assert ownership.size == size
    expected = 0
    for start, stop in ownership.ranges:
        assert start == expected and stop >= start
        expected = stop
    assert expected == size
    owned = np.zeros(size, dtype=int)
    for start, stop in ownership.ranges:
        owned[start:stop] += 1
    assert (owned == 1).all()


@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("numel", [0, 1, 2, 5, 12, 100, 1001])
def test_element_ownership_pads_to_equal_slices_and_owns_every_element_once(numel, world_size):
    size = layout.padded_size(numel, world_size)
    assert size % world_size == 0 and size >= world_size and numel <= size < max(numel, 1) + world_size
    ownership = layout.element_ownership(size, world_size)
    assert_partitions(ownership, size)
    assert ownership.equal and ownership.counts == [size // world_size] * world_size
    for start, stop in [(0, numel), (numel // 3, numel // 2), (0, size)]:
        counts = ownership.counts_within(start, stop)
        assert sum(counts) == stop - start  # a bucket's reduce-scatter pieces add up to the bucket
        parts = [ownership.part(start, stop, r) for r in range(world_size)]
        assert sum(b - a for a, b in parts) == stop - start
        assert all(start <= a <= b <= stop for a, b in parts)


def test_element_ownership_refuses_a_size_that_does_not_split():
    with pytest.raises(ValueError, match="does not split into 3 equal slices"):
        layout.element_ownership(10, 3)


def _weights(seed, n):
    rng = np.random.default_rng(seed)
    kinds = [rng.integers(1, 10), rng.integers(1, 10_000), 0, rng.integers(10_000, 1_000_000)]
    return [int(kinds[rng.integers(0, 4)]) for _ in range(n)]


@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("seed", range(6))
def test_parameter_owners_balance_within_one_parameter_of_the_even_share(seed, world_size):
    weights = _weights(seed, 1 + seed * 7)
    owners = layout.assign_owners(weights, world_size)
    assert len(owners) == len(weights) and all(0 <= r < world_size for r in owners)
    loads = [sum(w for w, r in zip(weights, owners) if r == rank) for rank in range(world_size)]
    assert sum(loads) == sum(weights)  # each parameter owned once
    assert max(loads) <= sum(weights) / world_size + max(weights, default=0)


def test_parameter_owners_are_greedy_heaviest_first_and_weightless_ones_go_round():
    assert layout.assign_owners([5, 1, 4, 3], 2) == (0, 0, 1, 1)  # 5 -> 0, 4 -> 1, 3 -> 1 (4 < 5), 1 -> 0
    assert layout.assign_owners([0, 0, 0, 0, 0], 3) == (0, 1, 2, 0, 1)
    assert layout.assign_owners([], 3) == ()
    with pytest.raises(ValueError, match="non-negative"):
        layout.assign_owners([1, -1], 2)


def test_parameter_owners_are_deterministic_and_depend_only_on_the_weights():
    weights = _weights(11, 40)
    first = layout.assign_owners(weights, 3)
    assert all(layout.assign_owners(list(weights), 3) == first for _ in range(3))
    # the same weights in another container, as another rank would compute them
    assert layout.assign_owners(tuple(np.array(weights)), 3) == first


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_parameter_ownership_gives_each_owner_one_contiguous_range_of_whole_parameters(world_size):
    numels = [35, 7, 21, 3, 1, 64, 9]
    owners = layout.assign_owners([n * 4 for n in numels], world_size)
    order = layout.grouped_by_owner(owners)
    assert sorted(order) == list(range(len(numels)))
    assert all(owners[a] <= owners[b] for a, b in zip(order, order[1:]))
    assert all(a < b for a, b in zip(order, order[1:]) if owners[a] == owners[b])  # stable within an owner
    ownership = layout.parameter_ownership([numels[i] for i in order], [owners[i] for i in order], world_size)
    assert_partitions(ownership, sum(numels))
    assert ownership.whole_parameters
    offset = 0
    for i in order:  # every parameter lies wholly inside its owner's range
        start, stop = ownership.ranges[owners[i]]
        assert start <= offset and offset + numels[i] <= stop
        offset += numels[i]


def test_parameter_ownership_refuses_parameters_not_grouped_by_owner():
    with pytest.raises(ValueError, match="grouped by owner"):
        layout.parameter_ownership([3, 4, 5], [1, 0, 1], 2)
    with pytest.raises(ValueError, match="do not all exist"):
        layout.parameter_ownership([3], [2], 2)


@pytest.mark.parametrize("numel, world_size", list(itertools.product([0, 1, 5, 70, 71], [1, 2, 3, 8])))
def test_even_pieces_partition_a_tensor(numel, world_size):
    pieces = [layout.even_piece(numel, r, world_size) for r in range(world_size)]
    covered = [i for a, b in pieces for i in range(a, b)]
    assert covered == list(range(numel))
    assert all(b - a <= -(-numel // world_size) for a, b in pieces)  # nobody writes more than its share
