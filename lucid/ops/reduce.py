"""Reductions: sum, mean, var, max/min (and amax/amin), logsumexp, argmax/argmin.

Each takes NumPy's spelling (`axis=`, `keepdims=`) and PyTorch's (`dim=`, `keepdim=`). For max and min
the two spellings mean what they mean in their own library: `max(axis=...)` gives the values (NumPy),
`max(dim)` / `max(dim=...)` gives PyTorch's `(values, indices)` named tuple, and `max(other)` the
elementwise maximum. A spelling that could mean either (several dims with `dim=`) raises.
"""

from __future__ import annotations

import builtins
import collections

import numpy as np

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


def amax(a, axis=None, keepdims=False, *, dim=None, keepdim=None) -> Tensor:
    """Largest values over `axis` (one or several axes; all by default); ties share the gradient."""
    axis, keepdims = resolve_axis(axis, dim, keepdims, keepdim)
    return _extreme(a, axis, keepdims, xp_of(a).max, "amax")


def amin(a, axis=None, keepdims=False, *, dim=None, keepdim=None) -> Tensor:
    """Smallest values over `axis` (one or several axes; all by default); ties share the gradient."""
    axis, keepdims = resolve_axis(axis, dim, keepdims, keepdim)
    return _extreme(a, axis, keepdims, xp_of(a).min, "amin")


# torch.return_types.max / .min: what max(dim) and min(dim) return
ValuesIndicesMax = collections.namedtuple("max", ["values", "indices"])
ValuesIndicesMin = collections.namedtuple("min", ["values", "indices"])


def max(a, *args, axis=None, keepdims=False, dim=None, keepdim=None):
    """The largest values, in NumPy's spelling or PyTorch's.

    - `max()`, `max(axis=...)`, `max(axis=..., keepdims=True)`: the values (`axis` may be a tuple);
    - `max(dim)`, `max(dim, keepdim)`, `max(dim=..., keepdim=...)`: PyTorch's named tuple
      `(values, indices)` over one dimension (the first largest element's index, as in PyTorch), so
      `output.max(1, keepdim=True)[1]` is the predicted class;
    - `max(other)`: the elementwise maximum with the Tensor `other`.

    Raises:
        TypeError: for a spelling PyTorch rejects, such as several dims with `dim=` (use `axis=` or
            `amax`) or both `axis` and `dim`.
    """
    return _max_or_min(a, args, axis, keepdims, dim, keepdim, "max")


def min(a, *args, axis=None, keepdims=False, dim=None, keepdim=None):
    """The smallest values; the spellings of `max` (values, `(values, indices)`, elementwise `other`)."""
    return _max_or_min(a, args, axis, keepdims, dim, keepdim, "min")


def _max_or_min(a, args, axis, keepdims, dim, keepdim, name):
    if len(args) > 2:
        raise TypeError(f"{name}() takes at most 2 positional arguments (dim, keepdim) but {len(args)} were given")
    if args and isinstance(args[0], Tensor):
        if len(args) > 1 or axis is not None or dim is not None or keepdim is not None or keepdims:
            raise TypeError(f"{name}(other) takes no dimension arguments: it is the elementwise {name}imum")
        from .arith import maximum, minimum
        return (maximum if name == "max" else minimum)(a, args[0])
    if args:
        if dim is not None:
            raise TypeError(f"{name}() got multiple values for argument 'dim'")
        dim = args[0]
        if len(args) == 2:
            if keepdim is not None:
                raise TypeError(f"{name}() got multiple values for argument 'keepdim'")
            keepdim = args[1]
    keep = bool(keepdims if keepdim is None else keepdim)
    if dim is None:
        pick = xp_of(a).max if name == "max" else xp_of(a).min
        return _extreme(a, tuple(axis) if isinstance(axis, list) else axis, keep, pick, name)
    if axis is not None:
        raise TypeError("pass either 'axis' or 'dim', not both")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{name}(dim) takes one dimension and returns (values, indices), as in PyTorch, not "
                        f"{type(dim).__name__} {dim!r}; for the values over several dimensions use "
                        f"{name}(axis=...) or a{name}(dim=...)")
    return _values_and_indices(a, int(dim), keep, name)


def _values_and_indices(a, dim: int, keepdim: bool, name: str):
    """PyTorch's max(dim) / min(dim): values and int64 indices; the gradient goes to the chosen element."""
    x = a.data
    xp = xp_of(a)
    (axis,) = _normalized_axes(dim, x.ndim)
    work = x.reshape(1) if x.ndim == 0 else x
    if work.shape[axis] == 0:
        raise IndexError(f"{name}(): Expected reduction dim {dim} to have non-zero size.")
    pick = work.argmax if name == "max" else work.argmin
    index = xp.asarray(pick(axis=axis, keepdims=True)).astype(np.int64)  # the shape with `axis` kept
    chosen = xp.take_along_axis(work, index, axis=axis)
    winner = xp.arange(work.shape[axis]).reshape([-1 if i == axis else 1 for i in range(work.ndim)]) == index
    if x.ndim == 0:
        out_shape = x.shape
    else:
        out_shape = index.shape if keepdim else tuple(n for i, n in enumerate(x.shape) if i != axis)

    def backward(g):
        return ((winner * g.reshape(index.shape)).astype(g.dtype, copy=False).reshape(x.shape),)
    values = result(chosen.reshape(out_shape), (a,), backward, name)
    kind = ValuesIndicesMax if name == "max" else ValuesIndicesMin
    return kind(values, Tensor._wrap(index.reshape(out_shape)))


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
