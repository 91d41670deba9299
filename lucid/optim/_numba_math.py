"""The rule vocabulary as numba scalar functions (imported only by generated kernel modules).

Each mirrors the NumPy function of the same name in `_math.py` on one element.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(inline="always")
def sqrt(x):
    return np.sqrt(x)


@numba.njit(inline="always")
def abs(x):  # noqa: A001
    return np.abs(x)


@numba.njit(inline="always")
def sign(x):
    return np.sign(x)


@numba.njit(inline="always")
def maximum(a, b):
    return np.maximum(a, b)


@numba.njit(inline="always")
def minimum(a, b):
    return np.minimum(a, b)


@numba.njit(inline="always")
def where(condition, a, b):
    return a if condition else b


@numba.njit(inline="always")
def lerp(start, end, weight, one_minus_weight):
    if math.fabs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * one_minus_weight
