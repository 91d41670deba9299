"""Communication between ranks: the Communicator interface, SelfComm (one process) and MPIComm (mpi4py).

This is the only module that imports mpi4py, and it does so lazily, inside `MPIComm` and `init()`, so
`import distributed` works without MPI. Buffer methods take NumPy or CuPy arrays and work in place;
`*_object` methods move picklable Python objects (small metadata only: never checkpoint data).

CuPy buffers: the current stream is synchronised before every MPI call (MPI reads device memory
directly and knows nothing of streams). When the MPI library is CUDA-aware the device buffer goes to
MPI as is; otherwise it is staged through a pinned host buffer. Which one is decided at run time
(`cuda_aware()`), with the environment variable LUCID_MPI_CUDA_AWARE=1/0 overriding the detection.

MPIComm starts its non-blocking collectives through one `Pipeline` (`requests.py`): in submission
order, one at a time, a host all-reduce cut into 1 MiB pieces.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import os

import numpy as np

from lucid import _backend

from .requests import PIECE_BYTES, Pipeline, PipelinedRequest, Request

_LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")
_LAUNCHER_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MPI_LOCALRANKID")


class ReduceOp(enum.Enum):
    """How gradients (or any buffers) are combined across ranks."""

    SUM = "sum"
    AVERAGE = "average"


Sum = ReduceOp.SUM
Average = ReduceOp.AVERAGE


class Communicator:
    """What the distributed optimizer needs from a group of ranks. All buffer operations are in place."""

    rank = 0
    size = 1
    local_rank = 0
    local_size = 1

    def allreduce(self, buf, op: ReduceOp = Sum) -> None:
        """Combine `buf` across ranks in place (Average divides the sum by the size)."""
        self.iallreduce(buf, op).wait()

    def iallreduce(self, buf, op: ReduceOp = Sum) -> Request:
        raise NotImplementedError

    def reduce_scatter(self, sendbuf, recvbuf, counts=None) -> None:
        """Sum `sendbuf` across ranks; rank r receives the r-th consecutive piece of the sum.

        Args:
            sendbuf: this rank's contribution, `sum(counts)` elements.
            recvbuf: where this rank's piece lands (`counts[rank]` elements).
            counts: the piece sizes, one per rank; default equal pieces of len(recvbuf).
        """
        self.ireduce_scatter(sendbuf, recvbuf, counts).wait()

    def ireduce_scatter(self, sendbuf, recvbuf, counts=None) -> Request:
        raise NotImplementedError

    def allgather(self, buf) -> None:
        """In place: `buf` holds size equal slices; each rank contributes its own slice, all get all."""
        raise NotImplementedError

    def broadcast(self, buf, root: int = 0) -> None:
        """Copy `buf` from `root` to every rank, in place."""
        raise NotImplementedError

    def broadcast_object(self, obj, root: int = 0):
        """`obj` from `root` on every rank (pickled: metadata only)."""
        raise NotImplementedError

    def allgather_object(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank."""
        raise NotImplementedError

    def allreduce_max(self, values: np.ndarray) -> np.ndarray:
        """Elementwise maximum of a small host array across ranks (a new array)."""
        raise NotImplementedError

    def barrier(self) -> None:
        raise NotImplementedError

    def progress(self) -> None:
        """Let pending non-blocking operations advance (called from the gradient hooks during backward)."""

    def abort(self, code: int = 1) -> None:
        """End every rank of the job (used when one rank cannot go on)."""
        os._exit(code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class SelfComm(Communicator):
    """One process: every collective is the identity."""

    def iallreduce(self, buf, op: ReduceOp = Sum) -> Request:
        return Request()

    def ireduce_scatter(self, sendbuf, recvbuf, counts=None) -> Request:
        _backend.array_module(recvbuf).copyto(recvbuf, sendbuf.reshape(recvbuf.shape))
        return Request()

    def allgather(self, buf) -> None:
        return None

    def broadcast(self, buf, root: int = 0) -> None:
        _check_root(root, 1)

    def broadcast_object(self, obj, root: int = 0):
        _check_root(root, 1)
        return obj

    def allgather_object(self, obj) -> list:
        return [obj]

    def allreduce_max(self, values: np.ndarray) -> np.ndarray:
        return np.array(values, copy=True)

    def barrier(self) -> None:
        return None


def _check_root(root: int, size: int) -> None:
    if not 0 <= root < size:
        raise ValueError(f"root rank {root} is out of range for a world of size {size}")


class MPIComm(Communicator):
    """Ranks of an MPI communicator (COMM_WORLD by default), through mpi4py's buffer interface."""

    def __init__(self, comm=None):
        from mpi4py import MPI
        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self._cuda_aware = None
        self._pipeline = Pipeline()

    # ------------------------------------------------------------------ buffers

    def iallreduce(self, buf, op: ReduceOp = Sum) -> Request:
        ReduceOp(op)
        if buf.size == 0:
            return Request()
        divisor = self.size if op is ReduceOp.AVERAGE and self.size > 1 else 1
        if _backend.is_gpu_array(buf) or not buf.flags.c_contiguous:
            return self._device_safe(buf, self._start_allreduce, _divider(buf, divisor), writes_back=True)
        flat, step = buf.reshape(-1), max(1, PIECE_BYTES // buf.itemsize)
        for first in range(0, flat.size, step):
            piece = flat[first:first + step]
            number = self._pipeline.submit(lambda piece=piece: self._start_allreduce(piece),
                                           _divider(piece, divisor))
        return PipelinedRequest(self._pipeline, number)

    def _start_allreduce(self, buf):
        return self.comm.Iallreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)

    def ireduce_scatter(self, sendbuf, recvbuf, counts=None) -> Request:
        counts = [recvbuf.size] * self.size if counts is None else [int(c) for c in counts]
        if len(counts) != self.size or sum(counts) != sendbuf.size or counts[self.rank] != recvbuf.size:
            raise ValueError(f"reduce_scatter: {sendbuf.size} elements to send and {recvbuf.size} to receive "
                             f"do not match the pieces {counts} of a world of size {self.size}")
        send, recv, complete = sendbuf, recvbuf, None
        if _backend.is_gpu_array(sendbuf) and not self.cuda_aware():
            send, recv = _pinned_copy(sendbuf), _pinned_empty(recvbuf)
            complete = lambda: recvbuf.set(recv)  # noqa: E731
        else:
            _backend.synchronize(sendbuf)

        def start():
            return self.comm.Ireduce_scatter(send, recv, recvcounts=counts, op=self._MPI.SUM)
        return PipelinedRequest(self._pipeline, self._pipeline.submit(start, complete))

    def allgather(self, buf) -> None:
        if buf.size % self.size:
            raise ValueError(f"allgather: {buf.size} elements do not split into {self.size} equal slices")
        self._device_safe(buf, lambda b: self.comm.Iallgather(self._MPI.IN_PLACE, b), None,
                          writes_back=True).wait()

    def broadcast(self, buf, root: int = 0) -> None:
        _check_root(root, self.size)
        self._device_safe(buf, lambda b: self.comm.Ibcast(b, root=root), None, writes_back=True).wait()

    def _device_safe(self, buf, start, finish, writes_back: bool) -> Request:
        """Start an in-place MPI operation on `buf`, staging a GPU buffer through host memory if needed."""
        if _backend.is_gpu_array(buf) and not self.cuda_aware():
            host = _pinned_copy(buf)

            def complete():
                if writes_back:
                    buf.set(host)
                if finish:
                    finish()
            return PipelinedRequest(self._pipeline, self._pipeline.submit(lambda: start(host), complete))
        _backend.synchronize(buf)
        return PipelinedRequest(self._pipeline, self._pipeline.submit(lambda: start(buf), finish))

    # ------------------------------------------------------------------ objects and control

    def broadcast_object(self, obj, root: int = 0):
        _check_root(root, self.size)
        self._pipeline.drain()
        return self.comm.bcast(obj, root=root)

    def allgather_object(self, obj) -> list:
        self._pipeline.drain()
        return self.comm.allgather(obj)

    def allreduce_max(self, values: np.ndarray) -> np.ndarray:
        out = np.array(values, copy=True)
        self._pipeline.drain()
        self.comm.Allreduce(self._MPI.IN_PLACE, out, op=self._MPI.MAX)
        return out

    def barrier(self) -> None:
        self._pipeline.drain()
        self.comm.Barrier()

    def progress(self) -> None:
        self._pipeline.progress()

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)

    def cuda_aware(self) -> bool:
        """Whether MPI can read and write CUDA device memory (detected once; see the module docstring)."""
        if self._cuda_aware is None:
            self._cuda_aware = detect_cuda_aware(self._MPI, self.comm)
        return self._cuda_aware


def _divider(buf, divisor: int):
    """The completion step of an Average: divide `buf` in place by the world size (None for a Sum)."""
    if divisor == 1:
        return None
    return lambda: _backend.array_module(buf).divide(buf, divisor, out=buf, casting="unsafe")


# ---------------------------------------------------------------------------- CUDA-aware detection

def detect_cuda_aware(MPI, comm) -> bool:
    """LUCID_MPI_CUDA_AWARE if set; else the MPI 4.1 `mpi_memory_alloc_kinds` info; else vendor queries."""
    override = os.environ.get("LUCID_MPI_CUDA_AWARE")
    if override is not None:
        if override.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if override.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"LUCID_MPI_CUDA_AWARE must be 1 or 0, not {override!r}")
    kinds = _memory_alloc_kinds(MPI, comm)
    if kinds is not None and "cuda" in kinds:
        return True
    return _vendor_query() is True


def _memory_alloc_kinds(MPI, comm):
    """The `mpi_memory_alloc_kinds` info value (MPI 4.1), from the communicator or the environment."""
    for get_info in (comm.Get_info, lambda: MPI.INFO_ENV):
        try:
            value = get_info().Get("mpi_memory_alloc_kinds")
        except Exception:  # older MPIs have no such key or no INFO_ENV
            value = None
        if value:
            return value.lower()
    return None


def _vendor_query():
    """MPIX_Query_cuda_support (Open MPI, MPICH) from the libmpi this process loaded; None if absent."""
    paths = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libmpi" in line
                    and line.split()[-1].startswith("/")}) if os.path.exists("/proc/self/maps") else []
    for path in paths:
        try:
            query = getattr(ctypes.CDLL(path), "MPIX_Query_cuda_support")
        except (OSError, AttributeError):
            continue
        return bool(query())
    return None


def _pinned_empty(like):
    """A host array in page-locked memory, shaped like `like` (fast device<->host copies)."""
    cupy = _backend.cupy_module()
    memory = cupy.cuda.alloc_pinned_memory(like.nbytes)
    return np.frombuffer(memory, dtype=like.dtype, count=like.size).reshape(like.shape)


def _pinned_copy(device_array):
    host = _pinned_empty(device_array)
    device_array.get(out=host)  # synchronous: the stream is drained before MPI reads `host`
    return host


# ---------------------------------------------------------------------------- the process-wide communicator

_world = None


def launched_by_mpi() -> bool:
    """True when an MPI launcher (mpiexec, mpirun, srun) started this process."""
    return any(var in os.environ for var in _LAUNCHER_SIZE_VARS + _LAUNCHER_RANK_VARS)


def _launcher_size() -> int:
    for var in _LAUNCHER_SIZE_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 1


def init(comm=None) -> Communicator:
    """Set up the process-wide communicator once (later calls return it) and return it.

    Args:
        comm: a Communicator or an mpi4py communicator to use; by default MPI's COMM_WORLD when an MPI
            launcher started the process, else a single-process SelfComm.

    Raises:
        RuntimeError: when a launcher started several ranks but mpi4py cannot be imported (running
            them as independent single processes would silently train N separate models).
    """
    global _world
    if _world is not None and comm is None:
        return _world
    if isinstance(comm, Communicator):
        _world = comm
    elif comm is not None:
        _world = MPIComm(comm)
    elif launched_by_mpi():
        try:
            _world = MPIComm()
            _share_cores(_world.local_size)
        except ImportError as exc:
            if _launcher_size() > 1:
                raise RuntimeError(f"started by an MPI launcher with {_launcher_size()} ranks, but mpi4py "
                                   f"cannot be imported ({exc}); pip install mpi4py mpich") from exc
            _world = SelfComm()
    else:
        _world = SelfComm()
    return _world


def _share_cores(local_size: int) -> None:
    """Give each rank on a machine its share of the cores for the optimizer's compiled step."""
    if local_size > 1 and "NUMBA_NUM_THREADS" not in os.environ:
        from lucid.optim import set_kernel_threads
        set_kernel_threads(max(1, (os.cpu_count() or 1) // local_size))


def is_initialized() -> bool:
    return _world is not None


def world() -> Communicator:
    """The process-wide communicator (initialised on first use)."""
    return init()


@contextlib.contextmanager
def use_world(comm: Communicator):
    """Make `comm` the process-wide communicator inside a `with` block, then restore what was there.

    For tests and tools that run one piece of code as a single process inside a multi-rank job
    (`with use_world(SelfComm()): ...`). Afterwards the previous communicator is back, or none at all
    if none was set up, so a later `init()` decides afresh.
    """
    global _world
    if not isinstance(comm, Communicator):
        raise TypeError(f"use_world takes a Communicator, not {type(comm).__name__}")
    previous, _world = _world, comm
    try:
        yield comm
    finally:
        _world = previous
