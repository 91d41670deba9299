"""Differentiable copies: dtype casts, clones and moves between the CPU and the GPU."""

from __future__ import annotations

from .. import _backend
from ._core import result
from ..tensor import Tensor


def astype(a, dtype) -> Tensor:
    """`a` cast to `dtype` (the same tensor when it already has it); the gradient is cast back."""
    if a.data.dtype == dtype:
        return a
    source = a.data.dtype
    return result(a.data.astype(dtype), (a,), lambda g: (g.astype(source),), "astype")


def clone(a) -> Tensor:
    """A copy of `a`'s data that stays in the graph."""
    return result(a.data.copy(), (a,), lambda g: (g,), "clone")


def to_device(a, device: str) -> Tensor:
    """`a` on the normalized `device` (the same tensor when it is already there); the gradient moves back."""
    if _backend.on_device(a.data, device):
        return a
    source = _backend.device_of(a.data)
    out = _backend.to_device(a.data, device)
    return result(out, (a,), lambda g: (_backend.to_device(g, source),), "to_device")
