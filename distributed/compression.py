"""Gradient compression for the wire: Compression.none and Compression.fp16 (Horovod's names)."""

from __future__ import annotations

import numpy as np


class Compressor:
    """Sends gradients unchanged."""

    name = "none"

    def wire_dtype(self, dtype):
        """The dtype gradients of `dtype` travel in, or None to send them as they are."""
        return None

    def __repr__(self) -> str:
        return f"Compression.{self.name}"


class FP16Compressor(Compressor):
    """Sends floating-point gradients as float16 and restores their dtype on arrival."""

    name = "fp16"

    def wire_dtype(self, dtype):
        return np.dtype(np.float16) if np.dtype(dtype).kind == "f" and np.dtype(dtype) != np.float16 else None


class Compression:
    """The available compressions: `Compression.none` and `Compression.fp16`."""

    none = Compressor()
    fp16 = FP16Compressor()
