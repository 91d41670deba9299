"""Hyperparameters that may be tensors (PyTorch's tensor `lr` and `betas`): reading, checking, updating.

A hyperparameter is a Python number or a one-element tensor (a `lucid.Tensor` or an array). Its value
is read as a Python number or as a NumPy scalar of the tensor's own dtype, so arithmetic on it rounds as
PyTorch's arithmetic on the 0-d tensor does (float32 unless the tensor is float64; NumPy >= 2 keeps a
Python number "weak" beside a NumPy scalar, as PyTorch keeps it beside a tensor). Schedulers change a
tensor hyperparameter in place, so whoever holds the tensor sees the new value.
"""

from __future__ import annotations

import numpy as np

from .. import _backend
from ..tensor import Tensor


def is_tensor(x) -> bool:
    """True for a lucid Tensor or an array (NumPy or CuPy), False for Python numbers."""
    return isinstance(x, (Tensor, np.ndarray)) or _backend.is_gpu_array(x)


def _array(x):
    return x.data if isinstance(x, Tensor) else x


def value(x):
    """The hyperparameter's value: a Python number as it is, a tensor as a NumPy scalar of its dtype."""
    if not is_tensor(x):
        return x
    array = _array(x)
    return np.asarray(_backend.to_host(array)).reshape(-1)[0]


def check_one_element(x, what: str = "lr") -> None:
    """PyTorch's ValueError for a tensor hyperparameter with more than one element."""
    if is_tensor(x) and _array(x).size != 1:
        raise ValueError(f"Tensor {what} must be 1-element")


def fill(x, new) -> None:
    """Write `new` into the tensor `x` in place (its dtype, shape and identity stay)."""
    array = _array(x)
    array[...] = value(new)


def clone(x):
    """A copy of a tensor hyperparameter (of the same kind), or a number as it is."""
    if isinstance(x, Tensor):
        return Tensor(x.data.copy())
    if is_tensor(x):
        return x.copy()
    return x


def host_copy(x):
    """What a state dict holds for a hyperparameter: numbers as they are, tensors as host NumPy arrays."""
    if is_tensor(x):
        return np.array(_backend.to_host(_array(x)), copy=True)
    return x
