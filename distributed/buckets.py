"""Bucket plans over flat gradient buffers, and tracking which buckets are ready to communicate.

A bucket is a contiguous slice of one flat gradient buffer (`lucid.optim._flat.FlatBuffer.grad`)
holding whole parameters, so it is reduced in place with no packing copy. Buckets run from the last
registered parameter to the first: backward produces those gradients first, so they go first.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Bucket:
    """Parameters [first, last) of `flat`, i.e. elements [start, stop) of its flat arrays."""

    index: int
    flat: object
    first: int
    last: int
    start: int
    stop: int
    received: object = field(default=None, repr=False)  # this rank's reduced piece, when sharding

    @property
    def grad(self):
        """The bucket's gradients: a view into the flat gradient buffer."""
        return self.flat.grad[self.start:self.stop]

    @property
    def params(self) -> list:
        return self.flat.params[self.first:self.last]

    @property
    def nbytes(self) -> int:
        return (self.stop - self.start) * self.flat.grad.itemsize


def plan_buckets(flats: list, cap_bytes: int) -> list:
    """Split flat gradient buffers into buckets of at most `cap_bytes` (a larger parameter gets its own).

    Args:
        flats: FlatBuffers in registration order (groups in order, then device/dtype kinds).
        cap_bytes: the most bytes a bucket holds, unless a single parameter is bigger.

    Returns:
        Buckets in launch order: the last registered parameters first.
    """
    if cap_bytes <= 0:
        raise ValueError(f"bucket_cap_mb must be positive, got a cap of {cap_bytes} bytes")
    buckets = []
    for flat in reversed(flats):
        last = len(flat.params)
        while last > 0:
            first, size = last - 1, _param_bytes(flat, last - 1)
            while first > 0 and size + _param_bytes(flat, first - 1) <= cap_bytes:
                first -= 1
                size += _param_bytes(flat, first)
            start, stop = flat.span(first)[0], flat.span(last - 1)[1]
            buckets.append(Bucket(len(buckets), flat, first, last, start, stop))
            last = first
    return buckets


def _param_bytes(flat, i: int) -> int:
    start, stop = flat.span(i)
    return (stop - start) * flat.grad.itemsize


class Readiness:
    """Counts gradients per bucket through a backward pass (or `passes` accumulated passes).

    `mark(param)` is called from a parameter's post-accumulate-grad hook; it returns the indices of
    the buckets that may now be launched. Launches happen strictly in bucket order on every rank (MPI
    matches non-blocking collectives by the order they start), so a bucket that completes early waits
    for the ones before it.
    """

    def __init__(self, buckets: list, passes: int):
        self.passes = passes
        self.bucket_of = {id(p): b.index for b in buckets for p in b.params}
        self.sizes = [b.last - b.first for b in buckets]
        self.reset()

    def reset(self) -> None:
        self.seen = {}                          # id(param) -> backward passes since the last step
        self.missing = list(self.sizes)         # per bucket: parameters not yet complete
        self.next_launch = 0                    # buckets [0, next_launch) have been launched

    def mark(self, param) -> range:
        """Record one more gradient for `param`; return the buckets that can now launch, in order."""
        key = id(param)
        count = self.seen.get(key, 0) + 1
        if count > self.passes:
            raise RuntimeError("Gradients were computed more than backward_passes_per_step times before "
                               "call to step(). Increase backward_passes_per_step to accumulate gradients "
                               "locally.")
        self.seen[key] = count
        if count == self.passes:
            self.missing[self.bucket_of[key]] -= 1
        return self.launchable()

    def launchable(self) -> range:
        """Buckets from `next_launch` on that are complete, stopping at the first incomplete one."""
        start = end = self.next_launch
        while end < len(self.missing) and self.missing[end] == 0:
            end += 1
        self.next_launch = end
        return range(start, end)

    def remaining(self) -> range:
        """Every bucket not launched yet (at synchronize time, complete or not)."""
        start, self.next_launch = self.next_launch, len(self.missing)
        return range(start, self.next_launch)

    @property
    def any_gradient(self) -> bool:
        return bool(self.seen)
