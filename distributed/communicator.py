"""The Communicator interface (what the distributed optimizer needs from a group of ranks), ReduceOp,
and SelfComm, the one-process communicator. MPIComm, the MPI one, is in comm.py."""

from __future__ import annotations

import contextlib
import enum

import numpy as np

from lucid import _backend

from .control import Call, Kind
from .requests import Request


class ReduceOp(enum.Enum):
    """How gradients (or any buffers) are combined across ranks."""

    SUM = "sum"
    AVERAGE = "average"


Sum = ReduceOp.SUM
Average = ReduceOp.AVERAGE


class Communicator:
    """What the distributed optimizer needs from a group of ranks. All buffer operations are in place.

    Reductions take Horovod's `prescale_factor` / `postscale_factor`: the data is multiplied by the
    first before it is combined and by the second after (an Average also divides by the number of
    ranks that contributed).
    """

    rank = 0
    size = 1
    local_rank = 0
    local_size = 1

    def allreduce(self, buf, op: ReduceOp = Sum, *, call: Call | None = None, prescale_factor: float = 1.0,
                  postscale_factor: float = 1.0) -> None:
        """Combine `buf` across ranks in place (Average divides the sum by the size)."""
        self.iallreduce(buf, op, call=call, prescale_factor=prescale_factor,
                        postscale_factor=postscale_factor).wait()

    def iallreduce(self, buf, op: ReduceOp = Sum, *, call: Call | None = None, prescale_factor: float = 1.0,
                   postscale_factor: float = 1.0) -> Request:
        raise NotImplementedError

    def reduce_scatter(self, sendbuf, recvbuf, counts=None, *, call: Call | None = None) -> None:
        """Sum `sendbuf` across ranks; rank r receives the r-th consecutive piece of the sum.

        Args:
            sendbuf: this rank's contribution, `sum(counts)` elements.
            recvbuf: where this rank's piece lands (`counts[rank]` elements).
            counts: the piece sizes, one per rank; default equal pieces of len(recvbuf).
        """
        self.ireduce_scatter(sendbuf, recvbuf, counts, call=call).wait()

    def ireduce_scatter(self, sendbuf, recvbuf, counts=None, *, call: Call | None = None) -> Request:
        raise NotImplementedError

    def allgather(self, buf, *, call: Call | None = None) -> None:
        """In place: `buf` holds size equal slices; each rank contributes its own slice, all get all."""
        raise NotImplementedError

    def allgather_rows(self, array, *, call: Call | None = None):
        """Every rank's `array` concatenated along the first axis, in rank order (a new array).

        The first dimension may differ between ranks; the rest of the shape and the dtype may not.
        """
        raise NotImplementedError

    def broadcast(self, buf, root: int = 0, *, call: Call | None = None) -> None:
        """Copy `buf` from `root` to every rank, in place."""
        raise NotImplementedError

    def broadcast_object(self, obj, root: int = 0, *, call: Call | None = None):
        """`obj` from `root` on every rank (pickled: metadata only)."""
        raise NotImplementedError

    def allgather_object(self, obj, *, call: Call | None = None) -> list:
        """Every rank's `obj`, in rank order, on every rank."""
        raise NotImplementedError

    def allreduce_max(self, values: np.ndarray, *, call: Call | None = None) -> np.ndarray:
        """Elementwise maximum of a small host array across ranks (a new array)."""
        raise NotImplementedError

    def iallreduce_max(self, values: np.ndarray, *, call: Call | None = None) -> tuple:
        """`allreduce_max` started now: (its Request, the array that holds the maximum once it is done)."""
        return Request(), self.allreduce_max(values, call=call)

    def barrier(self, *, call: Call | None = None) -> None:
        raise NotImplementedError

    def progress(self) -> None:
        """Let pending non-blocking operations advance (called from the gradient hooks during backward)."""

    def abort(self, code: int = 1) -> None:
        """End every rank of the job (used when one rank cannot go on)."""
        import os
        os._exit(code)

    # ------------------------------------------------------------------ control (distributed.join)

    def control_exchange(self, kind: Kind, call: Call | None = None):
        """A collective of control records only (no data); returns how it settled (None: one process)."""
        return None

    def joined_ranks(self) -> tuple:
        """The ranks inside `distributed.join()`, as of everything this rank has submitted (a wait)."""
        return ()

    @contextlib.contextmanager
    def prematched(self, outcome):
        """The next collective's control exchange already happened (`outcome`): a joined rank shadowing it."""
        yield

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class SelfComm(Communicator):
    """One process: every collective is the identity (scale factors still apply)."""

    def iallreduce(self, buf, op: ReduceOp = Sum, *, call=None, prescale_factor=1.0, postscale_factor=1.0):
        ReduceOp(op)
        factor = float(prescale_factor) * float(postscale_factor)
        if factor != 1.0 and buf.size:
            _backend.array_module(buf).multiply(buf, factor, out=buf, casting="unsafe")
        return Request()

    def ireduce_scatter(self, sendbuf, recvbuf, counts=None, *, call=None) -> Request:
        _backend.array_module(recvbuf).copyto(recvbuf, sendbuf.reshape(recvbuf.shape))
        return Request()

    def allgather(self, buf, *, call=None) -> None:
        return None

    def allgather_rows(self, array, *, call=None):
        check_rows(array)
        return _backend.array_module(array).array(array, copy=True)

    def broadcast(self, buf, root: int = 0, *, call=None) -> None:
        check_root(root, 1)

    def broadcast_object(self, obj, root: int = 0, *, call=None):
        check_root(root, 1)
        return obj

    def allgather_object(self, obj, *, call=None) -> list:
        return [obj]

    def allreduce_max(self, values: np.ndarray, *, call=None) -> np.ndarray:
        return np.array(values, copy=True)

    def barrier(self, *, call=None) -> None:
        return None


def check_root(root: int, size: int) -> None:
    if not 0 <= root < size:
        raise ValueError(f"root rank {root} is out of range for a world of size {size}")


def check_rows(array) -> None:
    if array.ndim == 0:
        raise ValueError("allgather needs an array with at least one dimension (it concatenates along the "
                         "first), got a 0-d array")
