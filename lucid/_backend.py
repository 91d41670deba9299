"""The one NumPy/CuPy switch: which array module holds an array, and moving arrays between devices.

Nothing else in lucid imports CuPy. It is imported lazily, the first time a GPU array is asked for, so
`import lucid` works (and stays fast) on a machine without CuPy or without a GPU.
"""

from __future__ import annotations

import numpy as np

CPU = "cpu"
GPU = "gpu"
_DEVICE_ALIASES = {"cpu": CPU, "gpu": GPU, "cuda": GPU}

_cupy = None          # the cupy module once imported and checked
_cupy_error = None    # why the GPU is unavailable, once we know


def normalize_device(device) -> str:
    """Return "cpu" or "gpu" for a device spelling; raise ValueError for anything else."""
    if isinstance(device, str):
        name = device.split(":", 1)[0].lower()
        if name in _DEVICE_ALIASES:
            return _DEVICE_ALIASES[name]
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'gpu'")


def _load_cupy():
    """Import CuPy and check that a GPU answers; cache the module or the reason it failed."""
    global _cupy, _cupy_error
    if _cupy is not None or _cupy_error is not None:
        return _cupy
    try:
        import cupy
        if not cupy.cuda.is_available():
            raise RuntimeError("CuPy is installed but no CUDA GPU is available")
        cupy.cuda.runtime.getDeviceCount()
        _cupy = cupy
    except Exception as exc:  # ImportError, CUDARuntimeError, ...: all mean "no GPU here"
        _cupy_error = f"{type(exc).__name__}: {exc}"
    return _cupy


def gpu_available() -> bool:
    """True when CuPy imports and a CUDA GPU is present."""
    return _load_cupy() is not None


def cupy_module():
    """Return the cupy module, or raise a clear RuntimeError when there is no usable GPU."""
    cupy = _load_cupy()
    if cupy is None:
        raise RuntimeError(
            "device 'gpu' is not available: lucid runs on the GPU through CuPy "
            f"(pip install 'lucid[gpu]') and needs a CUDA GPU ({_cupy_error})")
    return cupy


def is_gpu_array(x) -> bool:
    """True for a CuPy array (checked by type name, so CuPy is never imported here)."""
    return type(x).__module__.startswith("cupy")


def array_module(x):
    """The array module (numpy or cupy) that owns `x`."""
    if isinstance(x, np.ndarray) or not is_gpu_array(x):
        return np
    return cupy_module()


def device_of(x) -> str:
    """"gpu" for a CuPy array, "cpu" for anything else."""
    return GPU if is_gpu_array(x) else CPU


def module_for(device: str):
    """The array module for a normalized device name."""
    return np if device == CPU else cupy_module()


def to_device(x, device: str):
    """Return `x` as an array on `device` (the same object when it is already there)."""
    device = normalize_device(device)
    if device == CPU:
        return to_host(x)
    cupy = cupy_module()
    return x if is_gpu_array(x) else cupy.asarray(x)


def to_host(x) -> np.ndarray:
    """Return `x` as a NumPy array (a copy when it lives on the GPU)."""
    if is_gpu_array(x):
        return x.get()
    return np.asarray(x)


def synchronize(x=None) -> None:
    """Wait for queued GPU work (on the current stream) to finish; a no-op for CPU arrays.

    MPI and host copies read device memory directly, so they must not start before the kernels that
    write it have finished.
    """
    if x is not None and not is_gpu_array(x):
        return
    if _cupy is not None:
        _cupy.cuda.get_current_stream().synchronize()
