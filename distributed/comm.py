"""Communication between ranks over MPI: MPIComm (mpi4py) and the process-wide communicator (`init()`).

The Communicator interface and SelfComm (one process) are in communicator.py, and importable from
here too. This is the only module that imports mpi4py, and it does so lazily, inside `MPIComm` and
`init()`, so `import distributed` works without MPI. Buffer methods take NumPy or CuPy arrays and
work in place; `*_object` methods move picklable Python objects (small metadata only: never
checkpoint data). Every method takes an optional `call=` (a `control.Call`: who calls it and why).

MPIComm precedes each collective with a control message (`control.py`): ranks that call different
collectives fail together with the same error instead of exchanging wrong data. It starts its
non-blocking collectives through one `Pipeline` (`requests.py`): in submission order, one at a time,
a host all-reduce cut into 1 MiB pieces.

CuPy buffers: MPI knows nothing of streams, so a collective on a device buffer starts only once an
event recorded after the work queued on the current stream (what writes the buffer) has completed;
the caller never waits for it (a later call, or the wait, starts it). When the MPI library is
CUDA-aware (`cuda_aware.py`) the device buffer goes to MPI as is; otherwise it is staged through
pinned host memory on a side stream, and the result is copied back the same way.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time

import numpy as np

from lucid import _backend

from . import control
from .communicator import Average, Communicator, ReduceOp, SelfComm, Sum, check_root, check_rows
from .control import Call, Kind
from .cuda_aware import Staged, detect_cuda_aware, ready_event
from .launcher import check_world, launched_by_mpi, launcher_size
from .requests import PIECE_BYTES, Pipeline, PipelinedRequest, Request, open_gate

ABORT_GRACE_S = 0.5  # seconds between a rank's last words and MPI_Abort

__all__ = ["ReduceOp", "Sum", "Average", "Communicator", "SelfComm", "MPIComm", "Request", "Call", "init",
           "is_initialized", "world", "launched_by_mpi", "detect_cuda_aware"]


class Op:
    """One collective on this rank: its control record, and how its control exchange settled."""

    __slots__ = ("record", "number", "gate", "outcome", "error")

    def __init__(self, record, number: int):
        self.record, self.number, self.gate, self.outcome, self.error = record, number, None, None, None

    @property
    def contributors(self) -> int:
        return self.outcome.contributors

    def __repr__(self) -> str:
        return control.describe(control.decode(self.record)[0])


class MPIComm(Communicator):
    """Ranks of an MPI communicator (COMM_WORLD by default), through mpi4py's buffer interface.

    Attributes:
        entered: how many collectives this rank has entered here; `last_entered` is the latest (an
            `Op`); both feed stall reports.
        joined: the ranks inside `distributed.join()`, as of the last settled control exchange.
    """

    def __init__(self, comm=None):
        from mpi4py import MPI
        self.MPI = self._MPI = MPI  # mpi4py.MPI, for the stall inspector (which must not import it)
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.world_ranks = self.comm.Get_group().Translate_ranks(list(range(self.size)), MPI.COMM_WORLD.Get_group())
        self._cuda_aware = None
        self._pipeline = Pipeline()
        self._prematched = None
        self.entered, self.last_entered, self.joined = 0, None, ()
        self.label = f"COMM_WORLD ({self.size} ranks)" if comm is None else f"a communicator of {self.size} ranks"
        from . import stall
        stall.watch(self)

    # ------------------------------------------------------------------ control

    def _enter(self, kind: Kind, call, count=-1, dtype=None, extra=0, index=-1) -> Op:
        """Start a collective: queue its control exchange (or take the one a joined rank shadows)."""
        if self._pipeline.broken is not None:
            raise self._pipeline.broken
        self.entered += 1
        op = self.last_entered = Op(control.record(kind, call, count, dtype, extra, index), self.entered)
        if self._prematched is not None:
            outcome, self._prematched = self._prematched, None
            mine, theirs = control.decode(op.record)[0], outcome.agreed
            if any(mine[f] != theirs[f] for f in control.SHADOW_MATCHED):
                raise RuntimeError(f"internal error: a joined rank shadowed {control.describe(theirs)} with "
                                   f"{control.describe(mine)}")
            op.gate = open_gate(op)
            self._settle(op, outcome)
            return op
        send = np.frombuffer(op.record, np.uint8)
        recv = np.empty(self.size * control.RECORD.itemsize, np.uint8)
        op.gate = self._pipeline.control(lambda: self.comm.Iallgather(send, recv),
                                         lambda: self._settle(op, control.settle(recv, self.label)), label=op)
        return op

    def _settle(self, op: Op, outcome) -> None:
        op.outcome = outcome
        # a rank stays joined from its first JOINED record until all have joined (it also makes ordinary
        # calls while it shadows a step): every rank folds the same outcomes in the same order
        if outcome.joined:
            self.joined = () if outcome.all_joined else tuple(sorted(set(self.joined) | set(outcome.joined)))
        if outcome.error is not None and (outcome.fatal or self.rank not in outcome.joined):
            op.error = outcome.error
            if outcome.fatal:
                self._pipeline.break_(outcome.error)

    def _submit(self, op: Op, start, complete=None, ready=None) -> int:
        """Queue one data collective of `op` (started once `ready`, if any, has completed); it is skipped
        if the control exchange refused `op`."""
        def guarded_start():
            return None if op.error is not None else start()

        def guarded_complete():
            if op.error is None:
                complete()
        return self._pipeline.submit(guarded_start, None if complete is None else guarded_complete, after=op.gate,
                                     label=op, ready=ready)

    def _settled(self, op: Op) -> None:
        """Wait for everything queued (so `op`'s control exchange too) and raise what it settled on."""
        self._pipeline.drain()
        if op.error is not None:
            raise op.error

    def control_exchange(self, kind: Kind, call: Call | None = None):
        op = self._enter(kind, call)
        self._settled(op)
        return op.outcome

    def joined_ranks(self) -> tuple:
        self._pipeline.drain()
        return self.joined

    def waiting(self):
        """(monotonic time it began, Op) while this rank blocks in a collective here; else None."""
        since, op = self._pipeline.waiting_since, self._pipeline.waiting_on
        return None if since is None or op is None else (since, op)

    @contextlib.contextmanager
    def prematched(self, outcome):
        self._prematched = outcome
        try:
            yield
        finally:
            unused, self._prematched = self._prematched, None
            if unused is not None:
                raise RuntimeError(f"internal error: a joined rank did not shadow {control.describe(unused.agreed)}")

    # ------------------------------------------------------------------ buffers

    def iallreduce(self, buf, op: ReduceOp = Sum, *, call=None, prescale_factor=1.0, postscale_factor=1.0):
        reduce, pre, post = ReduceOp(op), float(prescale_factor), float(postscale_factor)
        entry = self._enter(Kind.ALLREDUCE, call, buf.size, buf.dtype, control.extra_code(reduce.value, pre, post))
        if buf.size == 0:
            return PipelinedRequest(self._pipeline, self._pipeline.submitted, entry)
        if pre != 1.0 and _backend.is_gpu_array(buf) and self.cuda_aware():
            _scale(buf, pre)  # on the device, before the event MPI waits for
            pre = 1.0
        # the same pieces on every rank whatever the buffer (MPI matches them one by one): a buffer MPI
        # cannot take as it is is reduced in a contiguous (or host) copy, copied back at the end
        work, copy_back, ready = self._mpi_buffer(buf)
        flat, step = work.reshape(-1), max(1, PIECE_BYTES // buf.itemsize)
        average = reduce is ReduceOp.AVERAGE
        for first in range(0, flat.size, step):
            piece = flat[first:first + step]
            finish = _finisher(piece, average, post, entry)
            if copy_back is not None and first + step >= flat.size:
                finish = _then(finish, copy_back)
            number = self._submit(entry, lambda piece=piece: self._start_allreduce(_scale(piece, pre)), finish,
                                  ready)
        return PipelinedRequest(self._pipeline, number, entry)

    def _mpi_buffer(self, buf):
        """(contiguous buffer MPI reads and writes, how to copy it back into `buf` or None, what must
        complete before MPI reads it or None).

        A device buffer goes to a CUDA-aware MPI as it is, once an event recorded after the work queued
        so far (what writes it) has completed; otherwise it is staged through pinned host memory
        (`cuda_aware.Staged`). Neither blocks the caller.
        """
        on_gpu = _backend.is_gpu_array(buf)
        if on_gpu and not self.cuda_aware():
            staged = Staged(buf)
            return staged.host, lambda: staged.copy_back(buf), staged.ready
        xp = _backend.array_module(buf)
        work = buf if buf.flags.c_contiguous else xp.ascontiguousarray(buf)
        copy_back = None if work is buf else lambda: xp.copyto(buf, work)
        return work, copy_back, ready_event() if on_gpu else None

    def _start_allreduce(self, buf):
        return self.comm.Iallreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)

    def ireduce_scatter(self, sendbuf, recvbuf, counts=None, *, call=None) -> Request:
        counts = [recvbuf.size] * self.size if counts is None else [int(c) for c in counts]
        if len(counts) != self.size or sum(counts) != sendbuf.size or counts[self.rank] != recvbuf.size:
            raise ValueError(f"reduce_scatter: {sendbuf.size} elements to send and {recvbuf.size} to receive "
                             f"do not match the pieces {counts} of a world of size {self.size}")
        entry = self._enter(Kind.REDUCE_SCATTER, call, sendbuf.size, sendbuf.dtype, control.extra_code(*counts))
        send, recv, complete, ready = sendbuf, recvbuf, None, None
        if _backend.is_gpu_array(sendbuf) and not self.cuda_aware():
            out, back = Staged(sendbuf), Staged(recvbuf, copy_out=False)
            send, recv, ready = out.host, back.host, out.ready
            complete = lambda: back.copy_back(recvbuf)  # noqa: E731
        elif _backend.is_gpu_array(sendbuf):
            ready = ready_event()

        def start():
            return self.comm.Ireduce_scatter(send, recv, recvcounts=counts, op=self._MPI.SUM)
        return PipelinedRequest(self._pipeline, self._submit(entry, start, complete, ready), entry)

    def allgather(self, buf, *, call=None) -> None:
        if buf.size % self.size:
            raise ValueError(f"allgather: {buf.size} elements do not split into {self.size} equal slices")
        entry = self._enter(Kind.ALLGATHER, call, buf.size, buf.dtype)
        self._in_place(entry, buf, lambda b: self.comm.Iallgather(self._MPI.IN_PLACE, b)).wait()

    def allgather_rows(self, array, *, call=None):
        check_rows(array)
        per_row = math.prod(array.shape[1:])
        entry = self._enter(Kind.ALLGATHER_ROWS, call, per_row, array.dtype,
                            control.extra_code(*array.shape[1:]), index=array.shape[0])
        self._settled(entry)
        rows = entry.outcome.rows()
        host = np.ascontiguousarray(_backend.to_host(array))
        out = np.empty((sum(rows),) + tuple(array.shape[1:]), dtype=array.dtype)
        self.comm.Allgatherv(host, [out, [r * per_row for r in rows]])
        return _backend.to_device(out, _backend.device_of(array)) if _backend.is_gpu_array(array) else out

    def broadcast(self, buf, root: int = 0, *, call=None) -> None:
        check_root(root, self.size)
        entry = self._enter(Kind.BROADCAST, call, buf.size, buf.dtype, root)
        self._in_place(entry, buf, lambda b: self.comm.Ibcast(b, root=root)).wait()

    def _in_place(self, entry: Op, buf, start) -> Request:
        """Start one in-place MPI operation `start(array)` on `buf` (through a copy MPI can take if need be)."""
        work, copy_back, ready = self._mpi_buffer(buf)
        return PipelinedRequest(self._pipeline, self._submit(entry, lambda: start(work), copy_back, ready), entry)

    # ------------------------------------------------------------------ objects and control

    def broadcast_object(self, obj, root: int = 0, *, call=None):
        check_root(root, self.size)
        self._settled(self._enter(Kind.BROADCAST_OBJECT, call, extra=root))
        return self.comm.bcast(obj, root=root)

    def allgather_object(self, obj, *, call=None) -> list:
        self._settled(self._enter(Kind.ALLGATHER_OBJECT, call))
        return self.comm.allgather(obj)

    def allreduce_max(self, values: np.ndarray, *, call=None) -> np.ndarray:
        request, out = self.iallreduce_max(values, call=call)
        request.wait()
        return out

    def iallreduce_max(self, values: np.ndarray, *, call=None) -> tuple:
        out = np.array(values, copy=True)
        entry = self._enter(Kind.ALLREDUCE_MAX, call, out.size, out.dtype)
        if out.size == 0:
            return PipelinedRequest(self._pipeline, self._pipeline.submitted, entry), out
        number = self._submit(entry, lambda: self.comm.Iallreduce(self._MPI.IN_PLACE, out, op=self._MPI.MAX))
        return PipelinedRequest(self._pipeline, number, entry), out

    def barrier(self, *, call=None) -> None:
        self.control_exchange(Kind.BARRIER, call)  # every rank's record arrived: that is the barrier

    def progress(self) -> None:
        self._pipeline.progress()

    def abort(self, code: int = 1) -> None:
        # what this rank just printed must reach the launcher before MPI_Abort tears the job down
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_S)
        self.comm.Abort(code)

    def cuda_aware(self) -> bool:
        """Whether MPI can read and write CUDA device memory (detected once; see cuda_aware.py)."""
        if self._cuda_aware is None:
            self._cuda_aware = detect_cuda_aware(self._MPI, self.comm)
        return self._cuda_aware

    def library(self) -> str:
        """The MPI library's name and version, on one line."""
        return " ".join(self._MPI.Get_library_version().split()[:3])


def _scale(buf, factor: float):
    """`buf` multiplied in place by `factor` (Horovod's prescale), returned."""
    if factor != 1.0:
        _backend.array_module(buf).multiply(buf, factor, out=buf, casting="unsafe")
    return buf


def _then(first, second):
    """Run `first` (if any), then `second`."""
    if first is None:
        return second
    return lambda: (first(), second())


def _finisher(buf, average: bool, post: float, entry: Op):
    """The completion step of a reduction: the postscale and, for an Average, the division by the number
    of ranks that contributed (known once the control exchange settled). None when there is nothing to do."""
    if not average and post == 1.0:
        return None

    def finish():
        xp, ranks = _backend.array_module(buf), entry.contributors if average else 1
        if post == 1.0:
            if ranks > 1:
                xp.divide(buf, ranks, out=buf, casting="unsafe")
        else:
            xp.multiply(buf, post / ranks, out=buf, casting="unsafe")
    return finish


# ---------------------------------------------------------------------------- the process-wide communicator

_world = None


def init(comm=None) -> Communicator:
    """Set up the process-wide communicator once (later calls return it) and return it.

    Under an MPI launcher with several ranks it also gives each rank its share of the node's cores,
    installs the exception hook that ends the whole job when one rank raises, and starts the stall
    inspector (`runtime.py`).

    Args:
        comm: a Communicator or an mpi4py communicator to use; by default MPI's COMM_WORLD when an MPI
            launcher started the process, else a single-process SelfComm.

    Raises:
        RuntimeError: when a launcher started several ranks but mpi4py cannot be imported, or MPI sees a
            world of one rank (running them as independent single processes would silently train N
            separate models).
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
            world = MPIComm()
        except ImportError as exc:
            if launcher_size() > 1:
                raise RuntimeError(f"started by an MPI launcher with {launcher_size()} ranks, but mpi4py "
                                   f"cannot be imported ({exc}); pip install mpi4py mpich") from exc
            world = SelfComm()
        else:
            check_world(world.size, world.library())
            from . import runtime
            runtime.start(world)
        _world = world
    else:
        _world = SelfComm()
    return _world


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
