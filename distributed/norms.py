"""Global gradient norms from partial sums: each rank sums over the gradients it holds, the ranks combine.

A partial is max |g| for the inf norm and sum |g|^p otherwise, accumulated in float64 over chunks of
the array (so no float64 copy of a whole gradient is ever made); partials combine by max or sum, and
the norm is the combined partial to the power 1/p. `clip_grad_norm_` of a DistributedOptimizer uses
it over the reduced gradients each rank holds (all of them when replicated, its own range when sharded).
"""

from __future__ import annotations

import numpy as np

from lucid import _backend

from . import comm as _comm

CHUNK = 1 << 16  # elements per float64 temporary: 512 KiB, cache-sized


def is_inf(norm_type: float) -> bool:
    return norm_type == float("inf")


def partial_norm(array, norm_type: float) -> float:
    """max |g| (inf norm) or sum |g|^p of one gradient array, in float64, a chunk at a time."""
    flat = array.reshape(-1)
    if flat.size == 0:
        return 0.0
    xp = _backend.array_module(flat)
    if is_inf(norm_type):  # a maximum is exact in the array's own dtype
        return _max(float(xp.abs(flat[start:start + CHUNK]).max()) for start in range(0, flat.size, CHUNK))
    total = 0.0
    for start in range(0, flat.size, CHUNK):
        chunk = flat[start:start + CHUNK].astype(np.float64)
        if norm_type == 2.0:
            total += float(xp.dot(chunk, chunk))
        elif norm_type == 1.0:
            total += float(xp.abs(chunk).sum())
        else:
            xp.abs(chunk, out=chunk)
            total += float((chunk ** norm_type).sum())
    return total


def combine(partials, norm_type: float) -> float:
    """Partials of several arrays as one: their max (inf norm) or their sum."""
    partials = list(partials)
    return _max(partials) if is_inf(norm_type) else float(sum(partials))


def finish(partial: float, norm_type: float) -> float:
    """The norm from the combined partial of every gradient."""
    return partial if is_inf(norm_type) else partial ** (1.0 / norm_type)


def _max(values) -> float:
    """The largest value, NaN if any is NaN (as a NaN gradient makes torch's norm NaN), 0 for none."""
    best = 0.0
    for value in values:
        if value != value:
            return value
        best = max(best, value)
    return best


def global_norm(arrays, norm_type: float, comm=None, call=None) -> float:
    """The norm of the gradients in `arrays` on every rank of `comm` (None: this rank's arrays alone).

    With `comm`, every rank must call it, each with the arrays it alone holds (a collective).
    """
    partial = combine((partial_norm(a, norm_type) for a in arrays), norm_type)
    if comm is not None:
        if is_inf(norm_type):
            partial = float(comm.allreduce_max(np.array([partial]), call=call)[0])
        else:
            total = np.array([partial], dtype=np.float64)
            comm.allreduce(total, _comm.Sum, call=call)
            partial = float(total[0])
    return finish(partial, norm_type)
