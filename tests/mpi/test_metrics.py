"""The metric helpers with Horovod's semantics: allreduce of numbers (a float back) and of arrays and
Tensors (in place), allgather along the first axis with unequal first dimensions, broadcast in place."""

import numpy as np
import pytest

import lucid

import distributed
from distributed import CollectiveMismatchError, allgather, allreduce, broadcast

pytestmark = pytest.mark.timeout(60, method="thread")


def test_allreduce_of_numbers_returns_a_float(comm):
    mean = allreduce(comm.rank + 1, name="rank", comm=comm)
    assert isinstance(mean, float) and mean == (comm.size + 1) / 2
    total = allreduce(np.float32(0.5), op=distributed.Sum, comm=comm)
    assert isinstance(total, float) and total == 0.5 * comm.size
    assert allreduce(1e300, op="sum", comm=comm) == 1e300 * comm.size  # float64 all the way


def test_allreduce_of_arrays_and_tensors_is_in_place(comm):
    a = np.full((2, 3), comm.rank, dtype=np.float32)
    assert allreduce(a, name="a", comm=comm) is a
    np.testing.assert_allclose(a, (comm.size - 1) / 2)
    t = lucid.Tensor(np.arange(4.0) * (comm.rank + 1))
    assert allreduce(t, op=distributed.Sum, comm=comm) is t
    np.testing.assert_allclose(t.data, np.arange(4.0) * comm.size * (comm.size + 1) / 2)
    strided = np.zeros((4, 4))[:, ::2]  # not contiguous: reduced through a copy, written back
    strided[...] = comm.rank
    allreduce(strided, op=distributed.Sum, comm=comm)
    np.testing.assert_array_equal(strided, comm.size * (comm.size - 1) / 2)
    with pytest.raises(TypeError, match="allreduce takes a number, an array or a lucid Tensor, not list"):
        allreduce([1.0], comm=comm)


def test_allgather_concatenates_unequal_first_dimensions_in_rank_order(comm):
    mine = np.full((comm.rank + 1, 2, 3), comm.rank, dtype=np.int64)
    out = allgather(mine, comm=comm)
    assert out.shape == (comm.size * (comm.size + 1) // 2, 2, 3) and out.dtype == np.int64
    assert out[:, 0, 0].tolist() == [r for r in range(comm.size) for _ in range(r + 1)]
    tensor = allgather(lucid.Tensor(np.zeros((0 if comm.rank else 1, 2), dtype=np.float32)), comm=comm)
    assert isinstance(tensor, lucid.Tensor) and tensor.shape == (1, 2)
    with pytest.raises(ValueError, match="at least one dimension"):
        allgather(np.float64(1.0) * np.ones(()), comm=comm)


@pytest.mark.mpi(min_size=2)
def test_allgather_of_different_trailing_shapes_fails_on_every_rank(world):
    mine = np.zeros((2, 3 if world.rank else 4), dtype=np.float32)
    try:
        allgather(mine, comm=world)
        text = "ok"
    except CollectiveMismatchError as error:
        text = str(error)
    texts = world.comm.allgather(text)
    assert len(set(texts)) == 1 and "allgather of 4 float32 per row" in texts[0], texts


def test_broadcast_is_in_place_from_the_root(comm):
    for root in sorted({0, comm.size - 1}):
        a = np.full(5, comm.rank, dtype=np.float64)
        assert broadcast(a, root_rank=root, comm=comm) is a
        np.testing.assert_array_equal(a, root)
        t = lucid.Tensor(np.full((2, 2), float(comm.rank)))
        assert broadcast(t, root, comm=comm) is t
        np.testing.assert_array_equal(t.data, root)
    with pytest.raises(ValueError, match="out of range"):
        broadcast(np.zeros(2), root_rank=comm.size, comm=comm)
