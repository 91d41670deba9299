"""Array helpers for the optimizers with a plain (not elementwise) step: in-place lerp and norms as PyTorch's.

They take NumPy or CuPy arrays and use the array's own module, so the same step runs on the GPU.
"""

from __future__ import annotations

from .. import _backend, autograd
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


def closure_loss(closure):
    """The loss `closure` returns, evaluated with gradients enabled (None without a closure)."""
    if closure is None:
        return None
    with autograd.enable_grad():
        return closure()


def with_gradients(group: dict, optimizer: str):
    """The group's parameters that have a gradient, in order (the others are skipped, as in torch)."""
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.dtype.kind == "c":
            raise RuntimeError(f"{optimizer} does not support complex parameters")
        yield p


def norm(array):
    """The 2-norm of all elements, in the array's dtype (a dot product: no temporary array)."""
    xp = _backend.array_module(array)
    flat = array.reshape(-1)
    return xp.sqrt(xp.dot(flat, flat))
