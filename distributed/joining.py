"""`distributed.join()`: a rank that ran out of data shadows the others' collectives until all have joined.

Horovod's name and return value (the last rank to join). A joined rank sits in a loop of control
exchanges (`control.py`) marked JOINED. Each exchange tells it what the other ranks are about to do,
and it takes part:

- all-reduces (metrics, SyncBatchNorm's statistics) get zeros from it, and an Average divides by
  the ranks that contributed, not by the world size; all-gathers get no rows; barriers pass;
- a `DistributedOptimizer` (registered here as a joinable) shadows its own calls: its gradient
  reductions get zero gradients, and it runs the same optimizer step with the reduced gradients, so
  parameters and optimizer state stay equal on every rank (with `shard_state=True` a joined rank
  still steps the shard it owns);
- any other collective is refused: the ranks not joined raise `JoinedError`, the joined ones wait on.

`join()` returns on every rank once every rank has called it.
"""

from __future__ import annotations

import weakref

import numpy as np

from . import comm as _comm
from . import control
from .control import Call, Kind

_joinables = weakref.WeakKeyDictionary()  # communicator -> [weakref to a joinable], in registration order


def register(comm, joinable) -> int:
    """Record a joinable on `comm`; returns its id.

    A joinable has `check_joinable()` (raise if this rank may not join now), `shadow(comm, kind, call)`
    (take part in one of its calls as a joined rank) and `joined(last)` (every rank has joined; `last` joined
    last).

    Ids are registration positions, the same on every rank when every rank makes the same objects in
    the same order (as they must: making a DistributedOptimizer is a collective).
    """
    owners = _joinables.setdefault(comm, [])
    owners.append(weakref.ref(joinable))
    return len(owners) - 1


def join(device=-1, *, comm=None) -> int:
    """Wait, shadowing the other ranks' collectives, until every rank has called join().

    Call it when this rank has no more batches (every DistributedOptimizer stepped: no gradients
    waiting to be reduced). `device` is accepted for Horovod's signature and not used.

    Returns:
        The rank that joined last (the same on every rank).
    """
    comm = comm or _comm.world()
    for owner in _owners(comm):
        owner.check_joinable()
    joined_at = getattr(comm, "entered", 0)  # exchanges so far: every rank counts the same ones
    while True:
        outcome = comm.control_exchange(Kind.JOINED, Call("join", bucket=joined_at))
        if outcome is None:  # one process
            return 0
        if outcome.all_joined:
            records = outcome.records
            last = max(range(len(records)), key=lambda r: (int(records[r]["index"]), r))
            for owner in _owners(comm):
                owner.joined(last)
            return last
        if outcome.error is None:  # a refused call: the others raise, this rank waits on
            with comm.prematched(outcome):
                _shadow(comm, outcome.agreed)


def _owners(comm) -> list:
    return [owner for owner in (ref() for ref in _joinables.get(comm, [])) if owner is not None]


def _shadow(comm, rec) -> None:
    """Take part in the collective `rec` describes, as a rank with nothing to contribute."""
    kind, call = Kind(int(rec["kind"])), control.call_of(rec)
    if control.owner_shadows(rec):
        owners = _joinables.get(comm, [])
        owner = owners[call.owner]() if call.owner < len(owners) else None
        if owner is None:
            raise RuntimeError(f"join(): the other ranks' {control.describe(rec)} comes from an object this rank "
                               "no longer has (every rank must keep the same DistributedOptimizers)")
        owner.shadow(comm, kind, call)
        return
    count = int(rec["count"])
    dtype = control.dtype_of(rec["dtype"]) or np.dtype(np.float64)
    if kind is Kind.ALLREDUCE:
        comm.allreduce(np.zeros(count, dtype), _comm.Sum, call=call)
    elif kind is Kind.ALLREDUCE_MAX:
        comm.allreduce_max(np.full(count, _lowest(dtype), dtype), call=call)
    elif kind is Kind.ALLGATHER_ROWS:
        comm.allgather_rows(np.zeros((0, count), dtype), call=call)
    elif kind is Kind.BARRIER:
        comm.barrier(call=call)


def _lowest(dtype):
    """The identity of a maximum: the lowest value of `dtype`."""
    if np.issubdtype(dtype, np.floating):
        return -np.inf
    if dtype == np.bool_:
        return False
    return np.iinfo(dtype).min
