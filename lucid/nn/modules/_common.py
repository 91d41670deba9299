"""Helpers the layer modules share: parameters and buffers made with torch's dtype/device keywords."""

from __future__ import annotations

import numpy as np

from ... import dtypes
from ...tensor import Tensor
from ..parameter import Parameter


def _float_dtype(dtype):
    return dtypes.get_default_dtype() if dtype is None else dtypes.to_dtype(dtype)


def empty_parameter(shape, dtype=None, device=None) -> Parameter:
    """A Parameter of `shape` (default dtype unless `dtype` is given) whose values `reset_parameters` sets."""
    return Parameter(np.empty(tuple(shape), dtype=_float_dtype(dtype)), device=device)


def full_buffer(shape, fill: float, dtype=None, device=None) -> Tensor:
    """A floating Tensor of `shape` filled with `fill`, for a module buffer."""
    return Tensor(np.full(tuple(shape), fill, dtype=_float_dtype(dtype)), device=device)
