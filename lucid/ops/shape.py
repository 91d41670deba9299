"""Shape and indexing primitives: reshape, transpose, squeeze, expand, indexing, cat/stack, pad."""

from __future__ import annotations

import builtins

import numpy as np

from .. import _backend
from ._core import check_same_device, result, xp_of
from ..tensor import Tensor


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def reshape(a, *shape) -> Tensor:
    """A tensor with the same data and a new shape (-1 infers one dimension)."""
    shape = _shape_arg(shape)
    x = a.data
    try:
        out = x.reshape(shape)
    except ValueError:
        raise ValueError(f"shape {list(shape)} is invalid for input of size {x.size} "
                         f"(shape {tuple(x.shape)})") from None
    return result(out, (a,), lambda g: (g.reshape(x.shape),), "reshape")


def permute(a, *dims) -> Tensor:
    """Reorder the dimensions."""
    dims = _shape_arg(dims)
    if sorted(d % builtins.max(a.ndim, 1) for d in dims) != list(range(a.ndim)):
        raise ValueError(f"permute: dims {list(dims)} are not a permutation of {a.ndim} dimensions")
    inverse = tuple(int(i) for i in np.argsort([d % a.ndim for d in dims]))  # on the host: a few ints
    out = a.data.transpose(dims)
    return result(out, (a,), lambda g: (g.transpose(inverse),), "permute")


def transpose(a, *dims) -> Tensor:
    """Swap two dimensions (`transpose(0, 1)`, PyTorch), permute all (`transpose((2, 0, 1))`), or reverse all."""
    if not dims:
        return permute(a, tuple(reversed(range(a.ndim))))
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        return permute(a, tuple(dims[0]))
    if len(dims) != 2:
        raise TypeError("transpose() takes two dimensions to swap, or one tuple of all dimensions")
    order = list(range(a.ndim))
    i, j = dims[0] % a.ndim, dims[1] % a.ndim
    order[i], order[j] = order[j], order[i]
    return permute(a, tuple(order))


def squeeze(a, axis=None, *, dim=None) -> Tensor:
    """Drop dimensions of size 1 (only `axis` when given; a no-op when that dimension is not 1)."""
    axis = dim if dim is not None else axis
    x = a.data
    if axis is None:
        axes = tuple(i for i, n in enumerate(x.shape) if n == 1)
    else:
        axes = tuple(ax % x.ndim for ax in (axis if isinstance(axis, tuple) else (axis,))
                     if x.shape[ax] == 1)
    out = x.squeeze(axis=axes) if axes else x
    return result(out, (a,), lambda g: (g.reshape(x.shape),), "squeeze")


def unsqueeze(a, axis=None, *, dim=None) -> Tensor:
    """Insert a dimension of size 1 at `axis`."""
    axis = dim if dim is not None else axis
    x = a.data
    out = xp_of(a).expand_dims(x, axis)
    return result(out, (a,), lambda g: (g.reshape(x.shape),), "unsqueeze")


def flatten(a, start_dim=0, end_dim=-1) -> Tensor:
    """Merge dimensions start_dim..end_dim into one."""
    shape = a.shape
    if not shape:
        return reshape(a, 1)
    start, end = start_dim % len(shape), end_dim % len(shape)
    merged = 1
    for n in shape[start:end + 1]:
        merged *= n
    return reshape(a, shape[:start] + (merged,) + shape[end + 1:])


def expand(a, *shape) -> Tensor:
    """Broadcast to `shape` (-1 keeps a dimension); the gradient sums back."""
    shape = _shape_arg(shape)
    x = a.data
    lead = len(shape) - x.ndim
    target = tuple(x.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
    out = xp_of(a).broadcast_to(x, target)
    return result(out, (a,), lambda g: (g,), "expand")  # autograd.unbroadcast sums back


def _is_basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in items)


def unwrap_index(index, data):
    """`index` for indexing the array `data`: Tensors unwrapped, index arrays moved to `data`'s device."""
    if isinstance(index, tuple):
        return tuple(_index_part(i, data) for i in index)
    return _index_part(index, data)


def _index_part(part, data):
    if isinstance(part, Tensor):
        part = part.data
    if (isinstance(part, np.ndarray) or _backend.is_gpu_array(part)) and not _backend.on_device(
            part, _backend.device_of(data)):
        return _backend.to_device(part, _backend.device_of(data))
    return part


def getitem(a, index) -> Tensor:
    """a[index] with NumPy semantics; the gradient scatters back (adding over repeated indices)."""
    index = unwrap_index(index, a.data)
    x = a.data
    xp = xp_of(a)
    out = x[index]
    basic = _is_basic_index(index)

    def backward(g):
        full = xp.zeros(x.shape, dtype=g.dtype)
        if basic:
            full[index] = g
        else:
            xp.add.at(full, index, g)
        return (full,)
    return result(out if basic else xp.asarray(out), (a,), backward, "getitem")


def concatenate(tensors, axis=0, *, dim=None) -> Tensor:
    """Join tensors along an existing axis (torch.cat)."""
    axis = dim if dim is not None else axis
    tensors = list(tensors)
    check_same_device(*tensors)
    xp = xp_of(tensors[0])
    arrays = [t.data for t in tensors]
    out = xp.concatenate(arrays, axis=axis)
    bounds, total = [], 0
    for arr in arrays[:-1]:
        total += arr.shape[axis]
        bounds.append(total)
    return result(out, tuple(tensors), lambda g: tuple(xp.split(g, bounds, axis=axis)), "cat")


def stack(tensors, axis=0, *, dim=None) -> Tensor:
    """Join tensors along a new axis."""
    axis = dim if dim is not None else axis
    tensors = list(tensors)
    check_same_device(*tensors)
    xp = xp_of(tensors[0])
    out = xp.stack([t.data for t in tensors], axis=axis)
    count = len(tensors)

    def backward(g):
        return tuple(xp.squeeze(part, axis=axis) for part in xp.split(g, count, axis=axis))
    return result(out, tuple(tensors), backward, "stack")


def pad(a, pad_width, value=0.0) -> Tensor:
    """Pad with a constant; `pad_width` in NumPy's form, ((before, after), ...) per dimension."""
    x = a.data
    xp = xp_of(a)
    out = xp.pad(x, pad_width, mode="constant", constant_values=value)
    region = tuple(slice(before, before + n) for (before, _), n in zip(pad_width, x.shape))
    return result(out, (a,), lambda g: (g[region],), "pad")
