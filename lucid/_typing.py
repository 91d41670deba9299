"""Type aliases for lucid's public signatures (imported only while type checking)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Union

from numpy.typing import ArrayLike, DTypeLike

Device = str                               # "cpu" or "gpu" ("cuda" and "cuda:0" are accepted)
IntOrPair = Union[int, "tuple[int, int]"]  # a kernel size, stride, padding or dilation
Shape = Union[int, Sequence[int]]

__all__ = ["ArrayLike", "DTypeLike", "Device", "IntOrPair", "Iterable", "Sequence", "Shape"]
