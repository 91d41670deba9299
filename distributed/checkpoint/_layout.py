"""What a checkpoint is saved from and loaded into, and which elements of each tensor this rank writes.

The manifest records every piece explicitly, as (rank, start, stop) of a tensor's flattened elements,
and a reader checks and follows those pieces without knowing any rule. Who writes what is not decided
here but by the ownership layout (`distributed.layout`) and the optimizer-state strategy's view of
it (`distributed.strategies.StateView`):

- model parameters (every rank holds them whole) are written in even pieces, rank r the r-th
  (`layout.even_piece`), so every rank writes about as much; model buffers (BatchNorm statistics,
  which ranks may hold differently) are written whole by rank 0;
- optimizer state is written and read as the state's view says: even pieces when every rank holds it,
  the owner's part (an element range, or a whole parameter's state) when it is sharded.
"""

from __future__ import annotations

from dataclasses import dataclass

from lucid import nn
from lucid.optim import Optimizer

from .. import layout
from ..optimizer import DistributedOptimizer
from ..strategies import StateView, replicated_view


def model_piece(is_parameter: bool, numel: int, rank: int, world_size: int) -> tuple:
    """What rank `rank` writes of a model state-dict entry: its piece of a parameter, rank 0 a whole buffer."""
    if is_parameter:
        return layout.even_piece(numel, rank, world_size)
    return (0, numel) if rank == 0 else (0, 0)


@dataclass
class Target:
    """What a checkpoint is saved from or loaded into, reduced to what the format needs."""

    optimizer: object          # the lucid optimizer (unwrapped), or None
    view: StateView | None     # which parts of the optimizer state this rank holds, writes and reads
    names: dict                # id(param) -> name, when a model gives the parameters names

    @property
    def params(self) -> list:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def elementwise(self) -> bool:
        return self.optimizer is not None and self.optimizer.elementwise

    @property
    def sharded(self) -> bool:
        return self.view is not None and not self.view.replicated


def describe(model, optimizer, comm) -> Target:
    """Unwrap a DistributedOptimizer and take its strategy's view; a plain optimizer's state is replicated."""
    dist = optimizer if isinstance(optimizer, DistributedOptimizer) else None
    inner = dist.optimizer if dist is not None else optimizer
    if inner is not None and not isinstance(inner, Optimizer):
        raise TypeError(f"checkpoint takes a lucid optimizer or a DistributedOptimizer, not "
                        f"{type(optimizer).__name__}")
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"checkpoint takes a lucid Module as model, not {type(model).__name__}")
    if dist is not None:
        view = dist.strategy.checkpoint_view()
    elif inner is not None:
        view = replicated_view(inner, comm.rank, comm.size)
    else:
        view = None
    names = {id(p): name for name, p in model.named_parameters()} if model is not None else {}
    return Target(inner, view, names)
