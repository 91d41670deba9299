"""Array helpers for the optimizers with a plain (not elementwise) step: in-place lerp and norms as PyTorch's.

They take NumPy or CuPy arrays and use the array's own module, so the same step runs on the GPU.
"""

from __future__ import annotations

from .. import _backend
from ._vocabulary import NUMPY

_lerp = NUMPY["lerp"]


def lerp_(target, end, weight) -> None:
    """target <- torch.lerp(target, end, weight) in place: the weight and 1 - weight in target's dtype."""
    w = target.dtype.type(weight)
    target[...] = _lerp(target, end, w, target.dtype.type(1) - w)


def lerp(start, end, weight):
    """torch.lerp(start, end, weight) as a new array."""
    w = start.dtype.type(weight)
    return _lerp(start, end, w, start.dtype.type(1) - w)


def norm(array, axis=None, keepdims: bool = False):
    """The 2-norm (of all elements, or along `axis`), in the array's dtype."""
    xp = _backend.array_module(array)
    return xp.sqrt(xp.sum(array * array, axis=axis, keepdims=keepdims))
