"""Which elements of each saved tensor a rank writes, and which it needs when loading: the checkpoint's
one place that knows who owns what.

The manifest records every piece explicitly, as (rank, start, stop) of a tensor's flattened elements,
and a reader checks and follows those pieces without knowing any rule. Only this module's answers
decide them:

- `replicated_piece`: a tensor every rank holds whole (model parameters, an unsharded optimizer's
  state) is written in world-size equal pieces, rank r the r-th, so every rank writes about as much;
- `rank0_piece`: model buffers (BatchNorm statistics, which ranks may hold differently) and a plain
  (not elementwise) optimizer's state, which every rank holds alike: rank 0 writes them whole;
- `Target.owned_range`: sharded optimizer state is written by whoever holds it, as the
  DistributedOptimizer's storage says (element ranges of its flat buffers today; a layout that gives
  whole parameters to ranks fits unchanged: a rank then owns [0, numel) or nothing);
- `Target.needed_range`: loading, a sharded rank needs what it owns, every other rank everything;
- `Target.state_storage`: where a sharded rank's loaded slice goes.
"""

from __future__ import annotations

from dataclasses import dataclass

from lucid import nn
from lucid.optim import Optimizer


def replicated_piece(numel: int, rank: int, world_size: int) -> tuple:
    """[start, stop) of the r-th of `world_size` nearly equal pieces of `numel` elements (maybe empty)."""
    length = -(-numel // world_size) if numel else 0
    return min(rank * length, numel), min((rank + 1) * length, numel)


def rank0_piece(numel: int, rank: int) -> tuple:
    """A tensor rank 0 writes whole (a model buffer, a plain optimizer's state)."""
    return (0, numel) if rank == 0 else (0, 0)


def model_piece(is_parameter: bool, numel: int, rank: int, world_size: int) -> tuple:
    """What rank `rank` writes of a model state-dict entry: its piece of a parameter, rank 0 a whole buffer."""
    return replicated_piece(numel, rank, world_size) if is_parameter else rank0_piece(numel, rank)


@dataclass
class Target:
    """What a checkpoint is saved from or loaded into, reduced to what the format needs."""

    optimizer: object       # the lucid optimizer (unwrapped), or None
    sharded: bool           # optimizer state is split across ranks (each holds its own part)
    names: dict             # id(param) -> name, when a model gives the parameters names
    owned: dict             # sharded only: id(param) -> (start, stop, flat buffer, index in it)

    @property
    def params(self) -> list:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def elementwise(self) -> bool:
        return self.optimizer is not None and self.optimizer.elementwise

    def owned_range(self, p) -> tuple:
        """The flattened elements of p's state this rank holds (all of them unless sharded)."""
        return self.owned[id(p)][:2] if self.sharded else (0, p.data.size)

    def write_range(self, p, rank: int, world_size: int) -> tuple:
        """The elements of p's state this rank writes: what it owns when sharded, else its equal piece."""
        return self.owned_range(p) if self.sharded else replicated_piece(p.data.size, rank, world_size)

    def needed_range(self, p) -> tuple:
        return self.owned_range(p)

    def state_storage(self, p, name: str):
        """The array (1-D, this rank's part) that holds p's state `name` in a sharded optimizer."""
        _, _, flat, i = self.owned[id(p)]
        return flat.storage.view(name, i).reshape(-1)


def describe(model, optimizer) -> Target:
    """Unwrap a DistributedOptimizer; find which parameter elements this rank's state holds."""
    from ..optimizer import DistributedOptimizer
    dist = optimizer if isinstance(optimizer, DistributedOptimizer) else None
    inner = dist.optimizer if dist is not None else optimizer
    if inner is not None and not isinstance(inner, Optimizer):
        raise TypeError(f"checkpoint takes a lucid optimizer or a DistributedOptimizer, not "
                        f"{type(optimizer).__name__}")
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"checkpoint takes a lucid Module as model, not {type(model).__name__}")
    sharded = dist is not None and dist.shard_state
    owned = {}
    if sharded:
        for flat in dist.flat_buffers:
            low, high = flat.storage.span
            for i, p in enumerate(flat.params):
                start, stop = flat.span(i)
                a, b = max(start, low), min(stop, high)
                owned[id(p)] = ((a - start, b - start) if a < b else (0, 0)) + (flat, i)
    names = {id(p): name for name, p in model.named_parameters()} if model is not None else {}
    return Target(inner, sharded, names, owned)
