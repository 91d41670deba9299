"""Replicated optimizer state: every rank all-reduces every bucket, holds all of the state and steps it all.

The flat buffers are the optimizer's own for an elementwise optimizer, and the wrapper's (one per group,
device and dtype, in registration order) for one with a plain step, whose parameters and gradients
then live in them too. Checkpoints: every rank writes an even piece of each elementwise state array;
a plain optimizer's state is written per parameter by the owner `layout.assign_owners` gives it by
its state's bytes, so saves run on every rank in parallel.
"""

from __future__ import annotations

import numpy as np

from lucid.optim._flat import FlatBuffer

from .. import comm as _comm
from .. import layout
from .base import StateView, Strategy, nbytes


def group_flats(optimizer, index: int, pad_to: int = 1, order=None) -> list:
    """Group `index`'s flat buffers: the optimizer's own (elementwise), else new ones per device and dtype.

    Args:
        order: for a plain optimizer, a sort key of the group's parameters within each buffer.
    """
    if optimizer.elementwise:
        return optimizer.flat_buffers(index, pad_to=pad_to)
    kinds = {}
    for p in optimizer.param_groups[index]["params"]:
        kinds.setdefault((p.device, p.dtype), []).append(p)
    return [FlatBuffer(ps if order is None else sorted(ps, key=order)) for ps in kinds.values()]


class ReplicatedState(Strategy):
    """All of the state on every rank; gradients all-reduced bucket by bucket."""

    replicated = True

    def plan_flats(self) -> list:
        return [f for i in range(len(self.optimizer.param_groups)) for f in group_flats(self.optimizer, i)]

    def start_reduction(self, bucket, wire, scaled: bool) -> tuple:
        dist = self.dist
        call = dist.call("gradients", bucket.index, shadow=True)
        if scaled:
            return self.comm.iallreduce(wire, _comm.Sum, call=call), wire
        pre, post = dist.scale_factors()
        return self.comm.iallreduce(wire, dist.op, call=call, prescale_factor=pre, postscale_factor=post), wire

    def reduced_part(self, bucket):
        return bucket.grad

    def step(self) -> None:
        self.optimizer.step()

    def state_bytes(self) -> int:
        if self.optimizer.elementwise:
            return sum(a.nbytes for flat in self.flats for a in flat.state.values())
        return super().state_bytes()

    def checkpoint_view(self) -> StateView:
        return replicated_view(self.optimizer, self.comm.rank, self.comm.size)


def replicated_view(optimizer, rank: int, world_size: int) -> StateView:
    """The checkpoint view of state every rank holds alike (a plain lucid optimizer's too)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    everything = lambda k, p: (0, p.data.size)  # noqa: E731
    if optimizer.elementwise:
        written = lambda k, p: layout.even_piece(p.data.size, rank, world_size)  # noqa: E731
    else:
        weights = [nbytes(optimizer.state.get(p)) for p in params]
        owners = layout.assign_owners(weights, world_size)
        written = lambda k, p: (0, p.data.size) if owners[k] == rank else (0, 0)  # noqa: E731
    return StateView(optimizer, everything, written, everything, True,
                     lambda state_dict: _load_whole(optimizer, params, state_dict))


def _load_whole(optimizer, params: list, state_dict: dict) -> None:
    """Load a state dict whose elementwise arrays are flattened: reshaped to their parameters first."""
    if optimizer.elementwise:
        state_dict = {**state_dict, "state": {
            k: {name: value.reshape(params[k].shape) if isinstance(value, np.ndarray) else value
                for name, value in entry.items()} for k, entry in state_dict["state"].items()}}
    optimizer.load_state_dict(state_dict)
