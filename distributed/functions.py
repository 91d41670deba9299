"""Collective helpers with Horovod's names: parameters, optimizer state, objects, and all-reduce /
all-gather / broadcast of numbers, arrays and Tensors."""

from __future__ import annotations

import numbers

import numpy as np

from lucid import _backend
from lucid.tensor import Tensor

from . import comm as _comm
from .agreement import check_same_layout


def _arrays(params):
    """(name, array) pairs from a state dict or from named_parameters(), in a rank-independent order."""
    if hasattr(params, "items"):
        pairs = sorted(params.items(), key=lambda kv: kv[0])
    else:
        pairs = list(params)
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError("broadcast_parameters takes a state dict or (name, tensor) pairs such as "
                             "model.named_parameters()")
    return [(name, value.data if isinstance(value, Tensor) else value) for name, value in pairs]


def broadcast_parameters(params, root_rank: int = 0, comm=None) -> None:
    """Copy parameter values from `root_rank` to every rank, in place.

    Args:
        params: a state dict (`model.state_dict()`) or `model.named_parameters()`.
        root_rank: the rank whose values everyone takes.
    """
    comm = comm or _comm.world()
    arrays = _arrays(params)
    names = [(name, tuple(a.shape), a.dtype.name) for name, a in arrays]
    check_same_layout(comm, [("broadcast_parameters",)] + names)
    for _, array in arrays:
        if not array.flags.c_contiguous:
            raise ValueError("broadcast_parameters needs contiguous arrays")
        comm.broadcast(array, root=root_rank)


def broadcast_optimizer_state(optimizer, root_rank: int = 0, comm=None) -> None:
    """Make every rank's optimizer state (and hyperparameters) equal to `root_rank`'s.

    Works before the first step too, when state is still empty: the root's state dict, empty or not,
    is what every rank loads. A DistributedOptimizer is handled through its full state dict.
    """
    comm = comm or getattr(optimizer, "comm", None) or _comm.world()
    state = optimizer.state_dict() if comm.rank == root_rank or _is_sharded(optimizer) else None
    state = comm.broadcast_object(state, root=root_rank)
    optimizer.load_state_dict(state)


def _is_sharded(optimizer) -> bool:
    return getattr(optimizer, "shard_state", False)


def broadcast_object(obj, root_rank: int = 0, comm=None):
    """`obj` from `root_rank` on every rank (pickled; for small objects)."""
    return (comm or _comm.world()).broadcast_object(obj, root=root_rank)


def allgather_object(obj, comm=None) -> list:
    """Every rank's `obj`, in rank order, on every rank (pickled; for small objects)."""
    return (comm or _comm.world()).allgather_object(obj)


def _target(value, what: str):
    """The array a buffer collective works on: an array itself or a Tensor's data."""
    target = value.data if isinstance(value, Tensor) else value
    if not (hasattr(target, "dtype") and (_backend.is_gpu_array(target) or hasattr(target, "flags"))):
        raise TypeError(f"{what} takes a number, an array or a lucid Tensor, not {type(value).__name__}")
    return target


def allreduce(value, op=_comm.Average, name=None, *, comm=None):
    """Combine `value` across ranks (Horovod's allreduce, for metrics and anything else).

    Args:
        value: a Python (or NumPy) number, or an array or Tensor, reduced in place.
        op: `distributed.Average` (the default: divided by the ranks that contributed; ranks inside
            `join()` do not) or `distributed.Sum`.
        name: a name for the reduction; ranks that pass different names get the same error.

    Returns:
        A float for a number; the array or Tensor itself otherwise.
    """
    comm = comm or _comm.world()
    op = _comm.ReduceOp(op)
    call = _comm.Call(name or "")
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        number = np.array([value], dtype=np.float64)
        comm.allreduce(number, op, call=call)
        return float(number[0])
    target = _target(value, "allreduce")
    comm.allreduce(target, op, call=call)
    return value


def allgather(value, name=None, *, comm=None):
    """Every rank's array (or Tensor) concatenated along the first axis, in rank order (Horovod's).

    The first dimension may differ between ranks; the other dimensions and the dtype must agree.
    Ranks inside `join()` contribute nothing. Returns a new array (a Tensor for a Tensor).
    """
    comm = comm or _comm.world()
    out = comm.allgather_rows(_target(value, "allgather"), call=_comm.Call(name or ""))
    return Tensor(out) if isinstance(value, Tensor) else out


def broadcast(value, root_rank: int = 0, name=None, *, comm=None):
    """`root_rank`'s array (or Tensor) on every rank, in place; returns it (Horovod's broadcast_)."""
    comm = comm or _comm.world()
    target = _target(value, "broadcast")
    if not (_backend.is_gpu_array(target) or target.flags.c_contiguous):
        raise ValueError("broadcast needs a contiguous array")
    comm.broadcast(target, root=root_rank, call=_comm.Call(name or ""))
    return value
