"""What both sharded strategies share: each rank owns one contiguous range of every flat buffer (its
`layout.Ownership`), receives only that range of the reduced gradients (a reduce-scatter per bucket),
steps it, and sends the updated parameters of its range back to every rank.

Sharding is of optimizer state (ZeRO stage 1): every rank still holds all the parameters and a full
gradient buffer, of which only its own range is reduced.
"""

from __future__ import annotations

from .. import comm as _comm
from ..control import Kind
from .base import Strategy, gather_ranges


class ShardedStrategy(Strategy):
    """A strategy whose flat buffers each have an `ownership` (set by `plan_flats`)."""

    replicated = False

    def __init__(self, dist):
        self.ownership = {}   # id(flat) -> layout.Ownership
        super().__init__(dist)

    def owned_range(self, flat) -> tuple:
        """[start, stop) of `flat` whose state this rank owns."""
        return self.ownership[id(flat)].ranges[self.comm.rank]

    # ------------------------------------------------------------------ reduction: reduce-scatter

    def start_reduction(self, bucket, wire, scaled: bool) -> tuple:
        counts = self.ownership[id(bucket.flat)].counts_within(bucket.start, bucket.stop)
        mine = counts[self.comm.rank]
        received = bucket.received
        if received is None or received.shape != (mine,) or received.dtype != wire.dtype:
            received = bucket.received = bucket.flat.xp.empty(mine, dtype=wire.dtype)
        call = self.dist.call("gradients", bucket.index, shadow=True)
        return self.comm.ireduce_scatter(wire, received, counts, call=call), received

    def reduced_part(self, bucket):
        a, b = self.ownership[id(bucket.flat)].part(bucket.start, bucket.stop, self.comm.rank)
        return bucket.flat.grad[a:b]

    def after_plain_sum(self, target, contributors) -> None:
        contributors = contributors or self.comm.size
        if self.dist.op is _comm.Average and contributors > 1:
            target /= target.dtype.type(contributors)

    # ------------------------------------------------------------------ parameters back, norms

    def gather(self) -> None:
        call = self.dist.call("parameters")
        for flat in self.flats:
            gather_ranges(self.comm, flat.data, self.ownership[id(flat)], call)

    def owned_gradients(self) -> list:
        grads = []
        for flat in self.flats:
            start, stop = self.owned_range(flat)
            grads.append(flat.grad[start:min(stop, flat.numel)])
        return grads

    # ------------------------------------------------------------------ state

    def release(self):
        """Gather the full state dict (a collective), for the next strategy to take over."""
        full = self.state_dict()
        self.optimizer.state.clear()
        return full

    def refuse_while_joined(self) -> None:
        """Every rank loads its part, so a load is a collective: refused alike on every rank not joined
        while some rank is inside join() (the joined ones wait on)."""
        self.comm.control_exchange(Kind.ANNOUNCE, self.dist.call("load_state_dict"))
