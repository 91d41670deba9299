"""Parameter-sharded optimizer state (ZeRO stage 1 for optimizers with a plain step): each parameter is owned,
state and update, by one rank.

For optimizers whose update needs a whole tensor (Adafactor's factored moments, Muon's orthogonalised
momentum, any subclass with its own `step`). Owners are assigned greedily by each parameter's state
bytes (`layout.assign_owners`), so every rank holds at most 1/N of the state plus one parameter's;
those bytes are measured by running the optimizer's own step once on a zero stand-in of each distinct
(group, shape, dtype). The wrapper's flat buffers hold each group's parameters grouped by owner, so a
bucket's reduce-scatter gives every owner its parameters' averaged gradients; the owner runs the
wrapped optimizer's own `step` with the other ranks' parameters' gradients hidden (a plain step skips
a parameter whose `.grad` is None, as torch's do); the updated parameters are then broadcast from their
owners.
"""

from __future__ import annotations

import warnings

import numpy as np

from lucid import _backend
from lucid.nn import Parameter

from .. import layout
from .base import StateView, nbytes
from .replicated import group_flats
from .sharded import ShardedStrategy


class ParameterShardedState(ShardedStrategy):
    """Whole parameters per rank, balanced by state bytes."""

    def plan_flats(self) -> list:
        optimizer, size = self.optimizer, self.comm.size
        params = [p for group in optimizer.param_groups for p in group["params"]]
        weights = state_bytes_per_parameter(optimizer)
        owners = layout.assign_owners(weights, size)
        self.owner = {id(p): owner for p, owner in zip(params, owners)}
        position = {id(p): k for k, p in enumerate(params)}
        flats = [f for i in range(len(optimizer.param_groups))
                 for f in group_flats(optimizer, i, order=lambda p: (self.owner[id(p)], position[id(p)]))]
        for flat in flats:
            self.ownership[id(flat)] = layout.parameter_ownership(
                [p.data.size for p in flat.params], [self.owner[id(p)] for p in flat.params], size)
        return flats

    def owns(self, p) -> bool:
        return self.owner[id(p)] == self.comm.rank

    # ------------------------------------------------------------------ stepping

    def step(self) -> None:
        """The wrapped optimizer's own step, seeing gradients only for this rank's parameters; then the
        updated parameters from their owners to every rank."""
        hidden = [(p, p.grad) for flat in self.flats for p in flat.params if p.grad is not None and not self.owns(p)]
        for p, _ in hidden:
            p.grad = None
        try:
            self.optimizer.step()
        finally:
            for p, grad in hidden:
                p.grad = grad
        self._keep_in_buffers()
        self.gather()

    def _keep_in_buffers(self) -> None:
        """A step that rebound an owned parameter's `.data` leaves the new values where the broadcast reads
        them (the next step re-plans the buffers, as after any rebinding)."""
        for flat in self.flats:
            if flat.is_intact():
                continue
            for i, p in enumerate(flat.params):
                if self.owns(p) and not flat.xp.may_share_memory(p.data, flat.data):
                    flat.xp.copyto(flat.view(flat.data, i), p.data)

    # ------------------------------------------------------------------ state

    def start(self, handover) -> None:
        """Keep the state of this rank's parameters only."""
        optimizer = self.optimizer
        if handover is None:
            if not optimizer.state:
                return
            handover = optimizer.state_dict()  # state the optimizer already had, the same on every rank
        self.load_full(handover)

    def state_dict(self) -> dict:
        """Every owner's part, gathered (a collective): the dict one process would give."""
        state_dict = self.optimizer.state_dict()
        merged = {}
        for part in self.comm.allgather_object(state_dict["state"], call=self.dist.call("state_dict")):
            merged.update(part)
        state_dict["state"] = {k: merged[k] for k in sorted(merged)}
        return state_dict

    def load_full(self, state_dict: dict) -> None:
        """Load the state of this rank's parameters from a full (or owner-filtered) state dict."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        mine = {k for k, p in enumerate(params) if self.owns(p)}
        self.optimizer.load_state_dict({**state_dict, "state": {
            k: v for k, v in state_dict["state"].items() if int(k) in mine}})

    def state_bytes(self) -> int:
        return sum(nbytes(self.optimizer.state.get(p)) for flat in self.flats for p in flat.params if self.owns(p))

    def checkpoint_view(self) -> StateView:
        def whole_if_owned(k, p) -> tuple:
            return (0, p.data.size) if self.owns(p) else (0, 0)
        return StateView(self.optimizer, whole_if_owned, whole_if_owned, whole_if_owned, False, self.load_full)


def state_bytes_per_parameter(optimizer) -> list:
    """Each parameter's optimizer-state bytes after a step, in registration order (its own bytes where the
    optimizer cannot be measured)."""
    measured, weights = {}, []
    for index, group in enumerate(optimizer.param_groups):
        for p in group["params"]:
            key = (index, tuple(p.shape), p.dtype.str, p.device)
            if key not in measured:
                measured[key] = _measure(optimizer, group, p)
            weights.append(measured[key])
    return weights


def _measure(optimizer, group, p) -> int:
    """Bytes of state a fresh optimizer of the same class and options creates in one step of a zero stand-in
    of `p` (its own step code, on a throwaway instance: nothing of the real optimizer is touched)."""
    xp = _backend.array_module(p.data)
    stand_in = Parameter(xp.zeros(p.shape, dtype=p.dtype))
    stand_in.grad = xp.zeros(p.shape, dtype=p.dtype)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            probe = type(optimizer)([stand_in], **optimizer.defaults)
            probe.param_groups[0].update({k: v for k, v in group.items() if k not in ("params", "param_names")})
            probe.step()
        return nbytes(probe.state.get(stand_in))
    except Exception:  # noqa: BLE001 - a class this cannot rebuild: fall back to the parameter's own bytes
        return int(p.data.nbytes)
