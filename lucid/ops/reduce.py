"""Reductions: sum, mean, var, max/min, logsumexp, argmax/argmin.

Each takes NumPy's spelling (`axis=`, `keepdims=`) and PyTorch's (`dim=`, `keepdim=`).
"""

from __future__ import annotations

import builtins

from ._core import result, xp_of
from ..tensor import Tensor


def resolve_axis(axis, dim, keepdims, keepdim):
    """Merge the NumPy and PyTorch spellings of the reduction arguments into (axis, keepdims)."""
    if dim is not None:
        if axis is not None:
            raise TypeError("pass either 'axis' or 'dim', not both")
        axis = dim
    if keepdim is not None:
        keepdims = keepdim
    if isinstance(axis, list):
        axis = tuple(axis)
    return axis, bool(keepdims)


def _normalized_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    size = builtins.max(ndim, 1)
    for ax in axes:
        if not -size <= ax < size:
            raise IndexError(f"Dimension out of range (expected to be in range of "
                             f"[{-size}, {size - 1}], but got {ax})")
    return tuple(ax % size for ax in axes)


def _expand_back(g, shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input of `shape`."""
    if keepdims or not shape:
        return g
    kept = [1 if i in axes else n for i, n in enumerate(shape)]
    return g.reshape(kept)


def sum(a, axis=None, keepdims=False, *, dim=None, keepdim=None) -> Tensor:
    """Sum over `axis` (all axes by default)."""
    axis, keepdims = resolve_axis(axis, dim, keepdims, keepdim)
    x = a.data
    axes = _normalized_axes(axis, x.ndim)
    xp = xp_of(a)
    out = xp.asarray(x.sum(axis=axes, keepdims=keepdims))

    def backward(g):
        return (xp.broadcast_to(_expand_back(g, x.shape, axes, keepdims), x.shape),)
    return result(out, (a,), backward, "sum")


def mean(a, axis=None, keepdims=False, *, dim=None, keepdim=None) -> Tensor:
    """Mean over `axis` (all axes by default)."""
    axis, keepdims = resolve_axis(axis, dim, keepdims, keepdim)
    x = a.data
    axes = _normalized_axes(axis, x.ndim)
    xp = xp_of(a)
    count = 1
    for ax in axes:
        count *= x.shape[ax] if x.ndim else 1
    out = xp.asarray(x.mean(axis=axes, keepdims=keepdims))

    def backward(g):
        return (xp.broadcast_to(_expand_back(g, x.shape, axes, keepdims) / count, x.shape),)
    return result(out, (a,), backward, "mean")


def var(a, axis=None, keepdims=False, *, dim=None, keepdim=None, correction=1, unbiased=None) -> Tensor:
    """Variance over `axis`; like PyTorch, Bessel's correction (`correction=1`) is the default."""
    axis, keepdims = resolve_axis(axis, dim, keepdims, keepdim)
    if unbiased is not None:
        correction = 1 if unbiased else 0
    x = a.data
    axes = _normalized_axes(axis, x.ndim)
    xp = xp_of(a)
    count = 1
    for ax in axes:
        count *= x.shape[ax] if x.ndim else 1
    centered = x - x.mean(axis=axes, keepdims=True)
    denom = builtins.max(count - correction, 0)
    out = xp.asarray((centered * centered).sum(axis=axes, keepdims=keepdims) / denom)

    def backward(g):
        return (_expand_back(g, x.shape, axes, keepdims) * (2 / denom) * centered,)
    return result(out, (a,), backward, "var")


def _extreme(a, axis, keepdims, pick, name):
    x = a.data
    xp = xp_of(a)
    if x.size == 0:
        raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0.")
    axes = _normalized_axes(axis, x.ndim)
    out = xp.asarray(pick(x, axis=axes, keepdims=keepdims))

    def backward(g):
        # ties share the gradient evenly, as torch.amax/amin do
        hit = x == _expand_back(out, x.shape, axes, keepdims)
        share = hit / hit.sum(axis=axes, keepdims=True)
        return (_expand_back(g, x.shape, axes, keepdims) * share,)
    return result(out, (a,), backward, name)


def max(a, axis=None, keepdims=False, *, dim=None, keepdim=None) -> Tensor:
    """Largest value over `axis` (values only; `argmax` gives indices)."""
    axis, keepdims = resolve_axis(axis, dim, keepdims, keepdim)
    return _extreme(a, axis, keepdims, xp_of(a).max, "max")


def min(a, axis=None, keepdims=False, *, dim=None, keepdim=None) -> Tensor:
    """Smallest value over `axis` (values only; `argmin` gives indices)."""
    axis, keepdims = resolve_axis(axis, dim, keepdims, keepdim)
    return _extreme(a, axis, keepdims, xp_of(a).min, "min")


def logsumexp(a, axis=None, keepdims=False, *, dim=None, keepdim=None) -> Tensor:
    """log(sum(exp(a))) over `axis`, computed stably."""
    axis, keepdims = resolve_axis(axis, dim, keepdims, keepdim)
    x = a.data
    xp = xp_of(a)
    axes = _normalized_axes(axis, x.ndim)
    shift = x.max(axis=axes, keepdims=True)
    shift = xp.where(xp.isfinite(shift), shift, 0)
    e = xp.exp(x - shift)
    s = e.sum(axis=axes, keepdims=True)
    out_keep = xp.log(s) + shift
    out = out_keep if keepdims else out_keep.reshape([n for i, n in enumerate(x.shape) if i not in axes])

    def backward(g):
        return (_expand_back(g, x.shape, axes, keepdims) * (e / s),)
    return result(xp.asarray(out), (a,), backward, "logsumexp")


def argmax(a, axis=None, keepdims=False, *, dim=None, keepdim=None) -> Tensor:
    """Index of the largest value (over the flattened tensor when no axis is given)."""
    axis, keepdims = resolve_axis(axis, dim, keepdims, keepdim)
    return Tensor._wrap(xp_of(a).asarray(a.data.argmax(axis=axis, keepdims=keepdims)))


def argmin(a, axis=None, keepdims=False, *, dim=None, keepdim=None) -> Tensor:
    """Index of the smallest value (over the flattened tensor when no axis is given)."""
    axis, keepdims = resolve_axis(axis, dim, keepdims, keepdim)
    return Tensor._wrap(xp_of(a).asarray(a.data.argmin(axis=axis, keepdims=keepdims)))
