"""Optimizer-state strategies behind one interface (`base.Strategy`): replicated, element-sharded, parameter-sharded.

`create(dist)` picks one for a DistributedOptimizer, once, from `shard_state` and the wrapped optimizer:
replicated state without sharding; with it, element slices for an elementwise optimizer (its rule
splits by element, so the slices balance exactly) and whole parameters for one with a plain step.
An optimizer that evaluates its closure itself (LBFGS) cannot be sharded either way.
"""

from __future__ import annotations

from .base import StateView, Strategy
from .elements import ElementShardedState, ShardStorage
from .parameters import ParameterShardedState
from .replicated import ReplicatedState, replicated_view


def check_shardable(optimizer) -> None:
    """Raise ValueError for an optimizer whose state no strategy can shard."""
    if optimizer.requires_closure:
        raise ValueError(f"shard_state=True cannot shard {type(optimizer).__name__}: its step is one direction "
                         "over all parameters at once (it re-evaluates the closure and searches along the "
                         "concatenated gradient), so neither its state nor its update splits by element or by "
                         "parameter; use shard_state=False")


def create(dist, shard_state: bool) -> Strategy:
    """The strategy for `dist` (a DistributedOptimizer), planned but not started."""
    if not shard_state:
        return ReplicatedState(dist)
    check_shardable(dist.optimizer)
    if dist.optimizer.elementwise:
        return ElementShardedState(dist)
    return ParameterShardedState(dist)


__all__ = ["Strategy", "StateView", "ReplicatedState", "ElementShardedState", "ParameterShardedState",
           "ShardStorage", "create", "check_shardable", "replicated_view"]
