"""Collective helpers with Horovod's names: broadcasting parameters, optimizer state and objects."""

from __future__ import annotations

from lucid import _backend
from lucid.tensor import Tensor

from . import comm as _comm


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
    from .optimizer import check_same_layout
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


def allreduce(array, op=_comm.Average, comm=None):
    """Combine an array (or a Tensor's data) across ranks in place; returns it."""
    comm = comm or _comm.world()
    target = array.data if isinstance(array, Tensor) else array
    if not (hasattr(target, "dtype") and (_backend.is_gpu_array(target) or hasattr(target, "flags"))):
        raise TypeError(f"allreduce takes an array or a lucid Tensor, not {type(array).__name__}")
    comm.allreduce(target, _comm.ReduceOp(op))
    return array
