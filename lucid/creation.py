"""Factory functions: tensor, zeros, ones, full, arange, eye, empty, rand, randn, randint, *_like."""

from __future__ import annotations

import numpy as np

from . import _backend, dtypes, random
from .tensor import Tensor


def _shape(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(size[0])
    return tuple(size)


def _float_dtype(dtype):
    return dtypes.get_default_dtype() if dtype is None else dtypes.to_dtype(dtype)


def _make(array, requires_grad, device):
    return Tensor(array, requires_grad=requires_grad, device="cpu" if device is None else device)


def tensor(data, requires_grad: bool = False, dtype=None, device=None) -> Tensor:
    """A new Tensor holding a copy of `data` (like torch.tensor)."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray) or _backend.is_gpu_array(data):
        data = data.copy()
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros of the given shape."""
    return _make(np.zeros(_shape(size), dtype=_float_dtype(dtype)), requires_grad, device)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones of the given shape."""
    return _make(np.ones(_shape(size), dtype=_float_dtype(dtype)), requires_grad, device)


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """An uninitialised tensor of the given shape."""
    return _make(np.empty(_shape(size), dtype=_float_dtype(dtype)), requires_grad, device)


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor filled with `fill_value`."""
    if dtype is None and isinstance(fill_value, (bool, int)) and not isinstance(fill_value, float):
        dtype = dtypes.bool_ if isinstance(fill_value, bool) else dtypes.int64
    return _make(np.full(tuple(size), fill_value, dtype=_float_dtype(dtype)), requires_grad, device)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return ones(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def full_like(t: Tensor, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=device or t.device,
                requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Evenly spaced values in [start, end); integers unless a bound or the step is a float."""
    if end is None:
        start, end = 0, start
    values = np.arange(start, end, step)
    if dtype is None:
        dtype = dtypes.int64 if values.dtype.kind in "iu" else dtypes.get_default_dtype()
    return _make(values.astype(dtypes.to_dtype(dtype)), requires_grad, device)


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """The identity matrix (n x m)."""
    return _make(np.eye(n, m, dtype=_float_dtype(dtype)), requires_grad, device)


def rand(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) from lucid's global generator."""
    dtype = _float_dtype(dtype)
    values = random.default_generator().random(_shape(size), dtype=np.float64).astype(dtype)
    return _make(values, requires_grad, device)


def randn(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from lucid's global generator."""
    dtype = _float_dtype(dtype)
    values = random.default_generator().standard_normal(_shape(size)).astype(dtype)
    return _make(values, requires_grad, device)


def randint(low, high=None, size=(), dtype=None, device=None) -> Tensor:
    """Integers uniform in [low, high) (int64 unless `dtype` says otherwise)."""
    if high is None:
        low, high = 0, low
    values = random.default_generator().integers(low, high, size=tuple(size))
    return _make(values.astype(dtypes.to_dtype(dtype or dtypes.int64)), False, device)
