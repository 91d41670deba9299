"""dtypes: the names lucid accepts, conversion from user spellings, and the default floating dtype."""

from __future__ import annotations

import numpy as np

float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int8 = np.dtype(np.int8)
int16 = np.dtype(np.int16)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
uint8 = np.dtype(np.uint8)
bool_ = np.dtype(np.bool_)

half, float, double = float16, float32, float64
short, int, long = int16, int32, int64

_ALLOWED = {float16, float32, float64, int8, int16, int32, int64, uint8, bool_}
_default_dtype = float32


def to_dtype(spec) -> np.dtype:
    """Convert a dtype spelling (numpy dtype, type, or name such as "float32") to a numpy dtype.

    Raises:
        ValueError: for anything that is not one of lucid's dtypes.
    """
    try:
        dtype = np.dtype(spec)
    except TypeError:
        dtype = None
    if dtype is None or dtype not in _ALLOWED or spec is None:
        raise ValueError(f"unknown dtype {spec!r}: expected one of "
                         + ", ".join(sorted(d.name for d in _ALLOWED)))
    return dtype


def get_default_dtype() -> np.dtype:
    """The dtype given to floating-point data built from Python numbers and lists (float32 at start)."""
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Set the default floating dtype (float16, float32 or float64), as torch.set_default_dtype."""
    global _default_dtype
    dtype = to_dtype(dtype)
    if dtype.kind != "f":
        raise TypeError("only floating-point types are supported as the default type")
    _default_dtype = dtype


def is_floating(dtype) -> bool:
    """True for a floating-point dtype."""
    return np.dtype(dtype).kind == "f"
