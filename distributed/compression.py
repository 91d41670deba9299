"""Gradient compression for the wire: Compression.none and Compression.fp16 (Horovod's names and shape).

A compressor turns an array into what travels, `compress(array) -> (array, ctx)`, and back,
`decompress(array, ctx)`; `ctx` is whatever it needs to undo the change (None: nothing changed).
"""

from __future__ import annotations

import numpy as np


class Compressor:
    """Sends gradients unchanged."""

    name = "none"

    def compress(self, array):
        """(what travels, ctx): the array itself, and None."""
        return array, None

    def decompress(self, array, ctx):
        """The array as it arrived."""
        return array

    def __repr__(self) -> str:
        return f"Compression.{self.name}"


class FP16Compressor(Compressor):
    """Sends floating-point gradients as float16 and restores their dtype on arrival."""

    name = "fp16"

    def compress(self, array):
        """(a float16 copy, the original dtype) for floating-point arrays wider than float16; else unchanged."""
        dtype = np.dtype(array.dtype)
        if dtype.kind != "f" or dtype == np.float16:
            return array, None
        return array.astype(np.float16), dtype

    def decompress(self, array, ctx):
        """The array back in its original dtype (`ctx`), or as it is when it was not compressed."""
        return array if ctx is None else array.astype(ctx)


class Compression:
    """The available compressions: `Compression.none` and `Compression.fp16`."""

    none = Compressor()
    fp16 = FP16Compressor()
