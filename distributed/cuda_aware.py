"""Whether MPI can read and write CUDA device memory, and the pinned host buffers used when it cannot.

Decided at run time: LUCID_MPI_CUDA_AWARE=1/0 overrides; else MPI 4.1's `mpi_memory_alloc_kinds`
info; else the vendors' MPIX_Query_cuda_support from the libmpi this process loaded.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from lucid import _backend


def detect_cuda_aware(MPI, comm) -> bool:
    """LUCID_MPI_CUDA_AWARE if set; else the MPI 4.1 `mpi_memory_alloc_kinds` info; else vendor queries."""
    override = os.environ.get("LUCID_MPI_CUDA_AWARE")
    if override is not None:
        if override.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if override.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"LUCID_MPI_CUDA_AWARE must be 1 or 0, not {override!r}")
    kinds = _memory_alloc_kinds(MPI, comm)
    if kinds is not None and "cuda" in kinds:
        return True
    return _vendor_query() is True


def _memory_alloc_kinds(MPI, comm):
    """The `mpi_memory_alloc_kinds` info value (MPI 4.1), from the communicator or the environment."""
    for get_info in (comm.Get_info, lambda: MPI.INFO_ENV):
        try:
            value = get_info().Get("mpi_memory_alloc_kinds")
        except Exception:  # older MPIs have no such key or no INFO_ENV
            value = None
        if value:
            return value.lower()
    return None


def _vendor_query():
    """MPIX_Query_cuda_support (Open MPI, MPICH) from the libmpi this process loaded; None if absent."""
    paths = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libmpi" in line
                    and line.split()[-1].startswith("/")}) if os.path.exists("/proc/self/maps") else []
    for path in paths:
        try:
            query = getattr(ctypes.CDLL(path), "MPIX_Query_cuda_support")
        except (OSError, AttributeError):
            continue
        return bool(query())
    return None


def pinned_empty(like):
    """A host array in page-locked memory, shaped like `like` (fast device<->host copies)."""
    cupy = _backend.cupy_module()
    memory = cupy.cuda.alloc_pinned_memory(like.nbytes)
    return np.frombuffer(memory, dtype=like.dtype, count=like.size).reshape(like.shape)


def pinned_copy(device_array):
    host = pinned_empty(device_array)
    device_array.get(out=host)  # synchronous: the stream is drained before MPI reads `host`
    return host
