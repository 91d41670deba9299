"""ZeRO-style sharding: each rank keeps optimizer state for, and updates, one slice of every flat buffer.

Every flat buffer is padded to a multiple of the world size and cut into equal contiguous slices, rank
r owning slice r (a parameter may straddle two ranks). Gradients are reduce-scattered bucket by bucket,
so a rank receives only its slice of the reduced gradient; the wrapped optimizer's elementwise rule
runs on that slice with state for that slice only (`ShardStorage`); the updated parameter slices are
then all-gathered into every rank's full parameter buffer.
"""

from __future__ import annotations

import numpy as np

from lucid import _backend
from lucid.optim._flat import FullStorage

from . import comm as _comm


def shard_range(padded_size: int, rank: int, world_size: int) -> tuple:
    """[start, stop) of rank's slice of a flat buffer padded to a multiple of the world size."""
    if padded_size % world_size:
        raise ValueError(f"a flat buffer of {padded_size} elements does not split into {world_size} slices")
    length = padded_size // world_size
    return rank * length, (rank + 1) * length


def _overlap(start, stop, low, high) -> tuple:
    a, b = max(start, low), min(stop, high)
    return (a, b) if a < b else (low, low)


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

    def view(self, name: str, i: int):
        low, _ = self.span
        a, b = _overlap(*self.flat.span(i), *self.span)
        return self._array(name)[a - low:b - low]

    def load(self, name: str, i: int, value):
        view = self.view(name, i)
        start = self.flat.span(i)[0]
        a, b = _overlap(*self.flat.span(i), *self.span)
        part = _backend.to_device(value, self.flat.device).reshape(-1)[a - start:b - start]
        self.flat.xp.copyto(view, part, casting="unsafe")
        return view

    def arrays(self, names, start: int, stop: int) -> dict:
        low, _ = self.span
        return {name: self._array(name)[start - low:stop - low] for name in names}

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.state.values())


class ShardedState:
    """The sharded half of a DistributedOptimizer: reduce-scatter, shard step, all-gather, state dicts."""

    def __init__(self, dist):
        optimizer = dist.optimizer
        self.dist, self.optimizer, self.comm = dist, optimizer, dist.comm
        local = optimizer.state_dict() if optimizer.state else None  # state the optimizer already had
        optimizer.state.clear()
        for flat in dist._flats:
            flat.state.clear()  # the full state arrays go: only the slice is kept from here on
            flat.storage = ShardStorage(flat, *shard_range(flat.size, self.comm.rank, self.comm.size))
        if local is not None and local["state"]:
            optimizer.load_state_dict(local)

    def release(self) -> None:
        """Give the flat buffers back full (empty) storage; the optimizer state is dropped."""
        self.optimizer.state.clear()
        for flat in self.dist._flats:
            flat.storage = FullStorage(flat)

    # ------------------------------------------------------------------ communication

    def launch(self, bucket) -> _comm.Request:
        """Reduce-scatter one bucket: this rank receives the reduced part of its slice."""
        flat, size, rank = bucket.flat, self.comm.size, self.comm.rank
        wire_dtype = self.dist.compression.wire_dtype(flat.dtype)
        if size == 1 and wire_dtype is None:
            return _comm.Request()  # one rank: the whole bucket is its slice and already "reduced"
        pieces = [_overlap(bucket.start, bucket.stop, *shard_range(flat.size, r, size)) for r in range(size)]
        counts = [b - a for a, b in pieces]
        a, b = pieces[rank]
        send = bucket.grad
        if wire_dtype is not None:
            if bucket.wire is None or bucket.wire.shape != send.shape:
                bucket.wire = flat.xp.empty(send.shape, dtype=wire_dtype)
            send = bucket.wire
            # average (or predivide) before the cast: a float16 sum of full gradients overflows sooner
            flat.xp.multiply(bucket.grad, self.dist.wire_scale(), out=send, casting="same_kind")
        elif self.dist.gradient_predivide_factor != 1.0:
            send *= send.dtype.type(self.dist.wire_scale())
        if bucket.received is None or bucket.received.shape != (counts[rank],) or bucket.received.dtype != send.dtype:
            bucket.received = flat.xp.empty(counts[rank], dtype=send.dtype)
        received = bucket.received
        call = self.dist.call("gradients", bucket.index, shadow=True)
        request = self.comm.ireduce_scatter(send, received, counts, call=call)
        scaled = wire_dtype is not None or self.dist.gradient_predivide_factor != 1.0

        def finish():
            request.wait()
            target = flat.grad[a:b]
            flat.xp.copyto(target, received, casting="same_kind")
            if scaled:
                self.dist.rescale(target, request.contributors)
            elif self.dist.op is _comm.Average and (request.contributors or size) > 1:
                target /= request.contributors or size
        return _comm.Request(None, finish)

    def step(self) -> None:
        """Step this rank's slice of every buffer, then all-gather the parameters."""
        self.optimizer.step()
        for flat in self.dist._flats:
            self.comm.allgather(flat.data, call=self.dist.call("parameters"))

    def global_norm(self, norm_type: float) -> float:
        """The norm of the reduced gradients from this rank's slices, combined across ranks in float64."""
        from .optimizer import _partial_norm
        partials = []
        for flat in self.dist._flats:
            low, high = flat.storage.span
            partials.append(_partial_norm(flat.grad[low:min(high, flat.numel)], norm_type))
        call = self.dist.call("clip_grad_norm_")
        if norm_type == float("inf"):
            return float(self.comm.allreduce_max(np.array([max(partials, default=0.0)]), call=call)[0])
        total = np.array([sum(partials)], dtype=np.float64)
        self.comm.allreduce(total, _comm.Sum, call=call)
        return float(total[0]) ** (1.0 / norm_type)

    # ------------------------------------------------------------------ state

    def state_bytes(self) -> int:
        """Bytes of optimizer state this rank holds."""
        return sum(flat.storage.nbytes for flat in self.dist._flats)

    def state_dict(self) -> dict:
        """The full state dict, as the wrapped optimizer would give it in one process (a collective)."""
        state_dict = self.optimizer.state_dict()  # groups and scalars are whole; arrays are slices
        ids = {id(p): k for k, p in enumerate(p for g in self.optimizer.param_groups for p in g["params"])}
        for flat in self.dist._flats:
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

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a full state dict (any world size, or a plain optimizer's); each rank keeps its slice."""
        self.optimizer.load_state_dict(state_dict)
