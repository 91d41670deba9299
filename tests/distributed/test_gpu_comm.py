"""Device buffers through MPIComm in one process (marked `gpu`, skipped without a CUDA GPU).

A collective on a CuPy buffer must not block its caller (the gradient hook) while the GPU is busy: the
buffer is copied to pinned memory on a side stream once the kernels before it have finished, MPI
starts when that copy is done, the result comes back the same way, and the pinned memory stays
referenced until the last copy has completed. A kernel that spins for a quarter of a second stands
for the rest of the backward pass.
"""

import time

import numpy as np
import pytest

from gpu_helpers import GPU, busy_gpu
from lucid import _backend

from distributed import Sum, cuda_aware

pytestmark = GPU


@pytest.fixture
def staged(monkeypatch):
    """A one-rank MPIComm that stages device buffers (LUCID_MPI_CUDA_AWARE=0)."""
    from mpi4py import MPI

    import distributed
    monkeypatch.setenv("LUCID_MPI_CUDA_AWARE", "0")
    own = MPI.COMM_SELF.Dup()
    comm = distributed.MPIComm(own)
    assert comm.cuda_aware() is False
    yield comm
    own.Free()


def test_a_staged_allreduce_returns_while_the_gpu_is_busy_and_reads_what_the_kernels_wrote(staged):
    cupy = _backend.cupy_module()
    buf = cupy.arange(1 << 20, dtype=cupy.float32)
    stream = cupy.cuda.get_current_stream()
    busy_gpu()
    buf *= 2  # queued behind the busy kernel: the copy must wait for it
    start = time.perf_counter()
    request = staged.iallreduce(buf, Sum, postscale_factor=3.0)
    returned = time.perf_counter() - start
    assert not stream.done and returned < 0.1, f"iallreduce blocked for {returned:.3f} s"
    assert cuda_aware.in_flight() >= 1  # the pinned buffer is held while its copy waits
    request.wait()
    np.testing.assert_array_equal(buf.get(), np.arange(1 << 20, dtype=np.float32) * 6)
    stream.synchronize()
    assert cuda_aware.in_flight() == 0


def test_staged_reduce_scatter_broadcast_and_allgather_of_device_buffers(staged):
    cupy = _backend.cupy_module()
    send = cupy.arange(10, dtype=cupy.float64)
    recv = cupy.zeros(10, dtype=cupy.float64)
    staged.reduce_scatter(send, recv)
    np.testing.assert_array_equal(recv.get(), np.arange(10.0))
    matrix = cupy.arange(12, dtype=cupy.float32).reshape(3, 4)
    view = matrix[:, 1]  # not contiguous: staged through a contiguous copy, written back in place
    staged.broadcast(view, root=0)
    staged.allgather(matrix.reshape(-1))
    np.testing.assert_array_equal(matrix.get(), np.arange(12, dtype=np.float32).reshape(3, 4))
    staged.allreduce(view, Sum, postscale_factor=2.0)
    np.testing.assert_array_equal(matrix.get()[:, 1], [2.0, 10.0, 18.0])
    np.testing.assert_array_equal(matrix.get()[:, 0], [0.0, 4.0, 8.0])


def test_the_pinned_copy_waits_for_the_kernels_before_it():
    cupy = _backend.cupy_module()
    buf = cupy.zeros(1 << 16, dtype=cupy.float32)
    busy_gpu()
    buf += 1
    trip = cuda_aware.Staged(buf)
    assert not trip.ready.query()  # behind the busy kernel
    trip.ready.synchronize()
    np.testing.assert_array_equal(trip.host, np.ones(1 << 16, np.float32))
    trip.host *= 5
    trip.copy_back(buf)
    buf += 1  # on the compute stream: after the copy back
    np.testing.assert_array_equal(buf.get(), np.full(1 << 16, 6.0, np.float32))


def test_a_cuda_aware_allreduce_starts_after_the_kernels_that_write_the_buffer(monkeypatch):
    from mpi4py import MPI

    import distributed
    own = MPI.COMM_SELF.Dup()
    try:
        comm = distributed.MPIComm(own)
        if not comm.cuda_aware():
            pytest.skip(f"this MPI ({comm.library()}) is not CUDA-aware")
        cupy = _backend.cupy_module()
        buf = cupy.ones(1 << 20, dtype=cupy.float32)
        busy_gpu()
        buf *= 4
        start = time.perf_counter()
        request = comm.iallreduce(buf, Sum, prescale_factor=0.5)
        assert time.perf_counter() - start < 0.1
        request.wait()
        np.testing.assert_array_equal(buf.get(), np.full(1 << 20, 2.0, np.float32))
    finally:
        own.Free()
