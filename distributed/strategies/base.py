"""The interface of an optimizer-state strategy, and the gradient reduction every strategy shares.

A strategy decides where the wrapped optimizer's state lives and what each rank updates: all of it on
every rank (`ReplicatedState`), a slice of every flat buffer per rank (`ElementShardedState`), or whole
parameters per rank (`ParameterShardedState`). The DistributedOptimizer holds one and calls only the
methods below, whichever it is.

Lifecycle: construction plans the flat buffers and who owns what (it changes nothing); `start(handover)`
takes over the optimizer's state (what the previous strategy handed over, else the optimizer's own);
`release()` gives the flat buffers back and returns what the next strategy must take over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lucid import _backend

from .. import norms
from ..compression import Compression
from ..control import JoinedError


@dataclass
class Flight:
    """One bucket's reduction in flight: its request, where the result arrives, and how to finish it."""

    request: object
    received: object   # the reduced values (the wire itself for an all-reduce)
    ctx: object        # the compressor's context for decompress
    scaled: bool       # the ranks summed gradients pre-scaled by dist.wire_scale(): rescale the sum


class Strategy:
    """What a DistributedOptimizer needs from an optimizer-state strategy (see the module docstring).

    Args:
        dist: the DistributedOptimizer (its public options: optimizer, comm, op, compression, scaling).
    """

    replicated = True   # every rank holds all of the optimizer state

    def __init__(self, dist):
        self.dist, self.optimizer, self.comm = dist, dist.optimizer, dist.comm
        self.flats = self.plan_flats()

    def plan_flats(self) -> list:
        """The flat buffers this strategy reduces and steps, in order."""
        raise NotImplementedError

    # ------------------------------------------------------------------ reduction

    def launch(self, bucket) -> Flight:
        """Start reducing one bucket of gradients (a sum of pre-scaled, compressed values when compressing
        or predividing; the communicator's own Average otherwise)."""
        dist = self.dist
        scaled = dist.compression is not Compression.none or dist.gradient_predivide_factor != 1.0
        grad = bucket.grad
        if scaled:
            # average (or predivide) before the cast: a float16 sum of full gradients overflows sooner
            grad *= grad.dtype.type(dist.wire_scale())
        wire, ctx = dist.compression.compress(grad)
        request, received = self.start_reduction(bucket, wire, scaled)
        return Flight(request, received, ctx, scaled)

    def finish(self, bucket, flight: Flight) -> None:
        """Wait for one bucket's reduction and leave the averaged (or summed) gradients where they belong."""
        flight.request.wait()
        target = self.reduced_part(bucket)
        values = self.dist.compression.decompress(flight.received, flight.ctx)
        if values is not target:
            bucket.flat.xp.copyto(target, values, casting="same_kind")
        contributors = flight.request.contributors
        if flight.scaled:
            self.dist.rescale(target, contributors)
        else:
            self.after_plain_sum(target, contributors)

    def start_reduction(self, bucket, wire, scaled: bool) -> tuple:
        """Start the collective over `wire`: (request, the array the result arrives in)."""
        raise NotImplementedError

    def reduced_part(self, bucket):
        """The part of the bucket's gradients this rank receives reduced."""
        raise NotImplementedError

    def after_plain_sum(self, target, contributors) -> None:
        """What an unscaled reduction leaves to do (the average's division, if the collective did not)."""

    # ------------------------------------------------------------------ stepping and norms

    def step(self) -> None:
        """The wrapped optimizer's own step on what this rank owns, then `gather()`."""
        raise NotImplementedError

    def gather(self) -> None:
        """Send the parameters this rank updated to every rank (nothing when every rank updates all)."""

    def owned_gradients(self) -> list:
        """The reduced gradients only this rank holds (all of them when replicated)."""
        return [flat.grad[:flat.numel] for flat in self.flats]

    def grad_norm(self, norm_type: float) -> float:
        """The global norm of the reduced gradients (a collective when the state is sharded)."""
        comm = None if self.replicated else self.comm
        return norms.global_norm(self.owned_gradients(), norm_type, comm, self.dist.call("clip_grad_norm_"))

    # ------------------------------------------------------------------ state

    def start(self, handover) -> None:
        """Take over the optimizer state: `handover` (a full state dict) or, if None, the optimizer's own."""

    def release(self):
        """Give the flat buffers back; return the state the next strategy must take over (None: it stays
        in the optimizer)."""
        return None

    def state_dict(self) -> dict:
        """The full state dict, as the wrapped optimizer would give it in one process."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a full state dict (any world size, or a plain optimizer's); each rank keeps what it owns."""
        self.refuse_while_joined()
        self.load_full(state_dict)

    def load_full(self, state_dict: dict) -> None:
        self.optimizer.load_state_dict(state_dict)

    def refuse_while_joined(self) -> None:
        """Raise JoinedError when some rank is inside join(): it could not load the same state, and would
        fall out of step. Replicated state loads locally (Horovod loads it on rank 0 alone, then
        broadcasts), so this rank refuses when it knows of a joined rank; sharded strategies make the
        load a collective, refused alike on every rank not joined."""
        joined = self.comm.joined_ranks()
        if joined:
            step = self.dist.call("load_state_dict").step
            raise JoinedError(f"DistributedOptimizer.load_state_dict (step {step}) cannot run while ranks "
                              f"{list(joined)} have joined: joined ranks shadow all-reduces, all-gathers, barriers "
                              "and DistributedOptimizer steps only; call it before join() or after every rank has "
                              "joined")

    def state_bytes(self) -> int:
        """Bytes of optimizer state this rank holds."""
        return sum(nbytes(state) for state in self.optimizer.state.values())

    def checkpoint_view(self):
        """What distributed.checkpoint saves and loads of this rank's optimizer state (a `StateView`)."""
        raise NotImplementedError


def nbytes(value) -> int:
    """Bytes of the arrays in a state value (nested in lists, tuples and dicts too)."""
    if isinstance(value, np.ndarray) or _backend.is_gpu_array(value):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    return 0


def gather_ranges(comm, array, ownership, call) -> None:
    """In place: every rank's range of `array` (by `ownership`) from that rank to every rank."""
    if ownership.equal:
        comm.allgather(array, call=call)
        return
    for rank, (start, stop) in enumerate(ownership.ranges):
        if stop > start:
            comm.broadcast(array[start:stop], root=rank, call=call)


class StateView:
    """Which elements of each parameter's optimizer state this rank holds, writes into a checkpoint and
    reads from one (element ranges of the flattened state; for a plain optimizer a parameter's state is
    written and read whole, by the ranks whose range for it is not empty).

    Args:
        optimizer: the lucid optimizer whose state this is.
        held, written, needed: functions of (parameter index, Parameter) -> (start, stop).
        replicated: every rank holds all of the state alike (the checkpoint fingerprints it).
        load: loads a state dict whose arrays are the flattened `needed` ranges (elementwise) or whose
            state holds only the needed parameters (plain).
    """

    def __init__(self, optimizer, held, written, needed, replicated: bool, load):
        self.optimizer = optimizer
        self.held, self.written, self.needed = held, written, needed
        self.replicated = replicated
        self.load = load

    @property
    def elementwise(self) -> bool:
        return self.optimizer.elementwise
