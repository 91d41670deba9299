"""Element-sharded optimizer state (ZeRO stage 1 for elementwise optimizers): each rank keeps the state of, and
updates, one equal slice of every flat buffer.

Every flat buffer is padded to a multiple of the world size and cut into equal slices (`layout.
element_ownership`; a parameter may straddle two ranks). Gradients are reduce-scattered bucket by
bucket; the wrapped optimizer's elementwise rule runs on this rank's slice with state for that slice
only (`ShardStorage`, swapped into each buffer); the updated slices are all-gathered into every
rank's full parameter buffer.
"""

from __future__ import annotations

from lucid import _backend
from lucid.optim._flat import FullStorage

from .. import layout
from .base import StateView
from .replicated import group_flats
from .sharded import ShardedStrategy


class ShardStorage(FullStorage):
    """Optimizer state for one slice [low, high) of a FlatBuffer, with FullStorage's interface.

    A parameter's state is the 1-D part of it that falls in the slice (empty when none does).
    """

    def __init__(self, flat, low: int, high: int):
        self.flat = flat
        self.span = (low, high)
        self.state = {}  # name -> array of high - low elements

    def _array(self, name: str):
        array = self.state.get(name)
        if array is None:
            low, high = self.span
            array = self.state[name] = self.flat.xp.zeros(high - low, dtype=self.flat.dtype)
        return array

    def part(self, i: int) -> tuple:
        """[a, b) of parameter i's flat range that falls in this slice (a == b: none)."""
        start, stop = self.flat.span(i)
        low, high = self.span
        a, b = max(start, low), min(stop, high)
        return (a, b) if a < b else (start, start)

    def view(self, name: str, i: int):
        low, _ = self.span
        a, b = self.part(i)
        return self._array(name)[a - low:b - low]

    def load(self, name: str, i: int, value):
        """Copy this slice's part of a full, parameter-shaped `value` into parameter i's storage."""
        view = self.view(name, i)
        start = self.flat.span(i)[0]
        a, b = self.part(i)
        part = _backend.to_device(value, self.flat.device).reshape(-1)[a - start:b - start]
        self.flat.xp.copyto(view, part, casting="unsafe")
        return view

    def arrays(self, names, start: int, stop: int) -> dict:
        low, _ = self.span
        return {name: self._array(name)[start - low:stop - low] for name in names}

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.state.values())


class ElementShardedState(ShardedStrategy):
    """Equal slices of every flat buffer per rank (an elementwise optimizer's rule splits by element)."""

    def plan_flats(self) -> list:
        size = self.comm.size
        flats = [f for i in range(len(self.optimizer.param_groups))
                 for f in group_flats(self.optimizer, i, pad_to=size)]
        for flat in flats:
            if flat.size != layout.padded_size(flat.numel, size):
                raise RuntimeError(f"internal error: a flat buffer of {flat.numel} elements is padded to "
                                   f"{flat.size}, not to {layout.padded_size(flat.numel, size)}")
            self.ownership[id(flat)] = layout.element_ownership(flat.size, size)
        return flats

    def start(self, handover) -> None:
        """Swap each buffer's storage for this rank's slice, then load the state into it."""
        optimizer = self.optimizer
        if handover is None and optimizer.state:
            handover = optimizer.state_dict()  # state the optimizer already had, the same on every rank
        optimizer.state.clear()
        for flat in self.flats:
            flat.state.clear()  # the full state arrays go: only the slice is kept from here on
            flat.storage = ShardStorage(flat, *self.owned_range(flat))
        if handover is not None and handover["state"]:
            optimizer.load_state_dict(handover)

    def release(self):
        full = super().release()
        for flat in self.flats:
            flat.storage = FullStorage(flat)
        return full

    def step(self) -> None:
        self.optimizer.step()  # the rule runs over the range each buffer's storage covers: this slice
        self.gather()

    def state_dict(self) -> dict:
        state_dict = self.optimizer.state_dict()  # groups and scalars are whole; arrays are slices
        ids = {id(p): k for k, p in enumerate(p for g in self.optimizer.param_groups for p in g["params"])}
        for flat in self.flats:
            for name, full in self._gathered(flat).items():
                for i, p in enumerate(flat.params):
                    entry = state_dict["state"].get(ids[id(p)])
                    if entry is not None and name in entry:
                        start, stop = flat.span(i)
                        entry[name] = _backend.to_host(full[start:stop]).reshape(p.shape).copy()
        return state_dict

    def _gathered(self, flat) -> dict:
        """Each state array of `flat`, all-gathered to full length (same names, same order, every rank)."""
        gathered = {}
        low, high = flat.storage.span
        for name in sorted(flat.storage.state):
            full = flat.xp.zeros(flat.size, dtype=flat.dtype)
            full[low:high] = flat.storage.state[name]
            self.comm.allgather(full, call=self.dist.call("state_dict"))
            gathered[name] = full
        return gathered

    def state_bytes(self) -> int:
        return sum(flat.storage.nbytes for flat in self.flats)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_view(self) -> StateView:
        located = {id(p): (flat, i) for flat in self.flats for i, p in enumerate(flat.params)}

        def part(k, p) -> tuple:
            flat, i = located[id(p)]
            a, b = flat.storage.part(i)
            start = flat.span(i)[0]
            return a - start, b - start
        return StateView(self.optimizer, part, part, part, False, lambda sd: self.load_parts(sd, located))

    def load_parts(self, state_dict: dict, located: dict) -> None:
        """Load a state dict whose arrays are this rank's flattened parts (no full-size array anywhere)."""
        optimizer = self.optimizer
        optimizer.load_state_dict({"state": {}, "param_groups": state_dict["param_groups"]})  # checks, clears
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for k, values in state_dict["state"].items():
            p = params[int(k)]
            flat, i = located[id(p)]
            state = optimizer.state[p]
            for name, value in values.items():
                if name in optimizer.scalar_state:
                    state[name] = optimizer.scalar_value(name, value)
                    continue
                view = flat.storage.view(name, i)
                view[...] = _backend.to_device(value, flat.device).reshape(view.shape)
                state[name] = view
