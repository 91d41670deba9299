"""The one NumPy/CuPy switch: which array module holds an array, moving arrays between devices, and
which GPU this process uses.

Nothing else in lucid imports CuPy (kernel compilation aside). It is imported lazily, the first time a
GPU is asked for, so `import lucid` works (and stays fast) on a machine without CuPy or without a GPU.

Devices are spelled "cpu", "gpu" (the current GPU: `current_device()`, which `distributed.init()` sets
to one GPU per local rank) and "gpu:N" (GPU N). An array on the current GPU reports "gpu", one on
another GPU "gpu:N".
"""

from __future__ import annotations

import sys

import numpy as np

CPU = "cpu"
GPU = "gpu"
_DEVICE_ALIASES = {"cpu": CPU, "gpu": GPU, "cuda": GPU}
INSTALL_HINT = "pip install 'lucid-distributed[gpu]'"

_cupy = None          # the cupy module once imported and checked
_cupy_error = None    # why the GPU is unavailable, once we know
_chosen_device = None  # the GPU index the user chose with set_device(), if any
_pending_device = None  # a GPU selected before lucid used the GPU, made current when it first does


def normalize_device(device) -> str:
    """Return "cpu", "gpu" or "gpu:N" for a device spelling; raise ValueError for anything else."""
    if isinstance(device, str):
        name, colon, index = device.partition(":")
        kind = _DEVICE_ALIASES.get(name.lower())
        if kind is not None and not colon:
            return kind
        if kind is not None and index.isascii() and index.isdigit():
            if kind == GPU:
                return f"{GPU}:{int(index)}"
            if int(index) == 0:
                return CPU  # torch's "cpu:0"
    raise ValueError(f"unknown device {device!r}: expected 'cpu', 'gpu' or 'gpu:N' ('cuda', 'cuda:N' too)")


# ---------------------------------------------------------------------------- is there a usable GPU

def _import_cupy():
    """The cupy module if it imports (no GPU needed), else None."""
    try:
        import cupy
    except Exception:  # ImportError, or a broken install
        return None
    return cupy


def _probe(cupy) -> None:
    """Compile and run one tiny kernel and one matrix product; raise RuntimeError naming what is missing."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise RuntimeError(f"CuPy finds no CUDA driver or GPU ({type(exc).__name__}: {exc})") from exc
    if count == 0:
        raise RuntimeError("CuPy sees no CUDA GPU (check CUDA_VISIBLE_DEVICES)")
    try:
        square = cupy.ElementwiseKernel("T x", "T y", "y = x * x + T(1)", "lucid_gpu_probe")
        got = square(cupy.arange(4, dtype=cupy.float32)).get().tolist()
    except Exception as exc:
        raise RuntimeError("CuPy cannot compile and run a kernel: it needs NVRTC (nvidia-cuda-nvrtc-cu12) and "
                           f"the CUDA headers (nvidia-cuda-runtime-cu12) ({type(exc).__name__}: {exc})") from exc
    if got != [1.0, 2.0, 5.0, 10.0]:
        raise RuntimeError(f"a probe kernel on the GPU computed {got} instead of [1, 2, 5, 10]")
    try:
        product = (cupy.ones((2, 2), dtype=cupy.float32) @ cupy.ones((2, 2), dtype=cupy.float32)).get()
    except Exception as exc:
        raise RuntimeError("CuPy cannot multiply matrices: it needs cuBLAS (nvidia-cublas-cu12) "
                           f"({type(exc).__name__}: {exc})") from exc
    if product.tolist() != [[2.0, 2.0], [2.0, 2.0]]:
        raise RuntimeError(f"a probe matrix product on the GPU computed {product.tolist()}")


def _load_cupy():
    """Import CuPy and check the GPU works (a kernel and a matmul run); cache the module or the reason."""
    global _cupy, _cupy_error
    if _cupy is not None or _cupy_error is not None:
        return _cupy
    cupy = _import_cupy()
    if cupy is None:
        _cupy_error = "CuPy is not installed"
        return None
    try:
        if _pending_device is not None:
            cupy.cuda.Device(_pending_device).use()
        _probe(cupy)
        _cupy = cupy
    except RuntimeError as exc:
        _cupy_error = str(exc)
    return _cupy


def gpu_available() -> bool:
    """True when CuPy imports and a CUDA GPU compiles and runs a kernel and a matrix product."""
    return _load_cupy() is not None


def unavailable_reason():
    """Why `gpu_available()` is False (a sentence naming what is missing), or None when it is True."""
    _load_cupy()
    return _cupy_error


def cupy_module():
    """Return the cupy module, or raise a clear RuntimeError when there is no usable GPU."""
    cupy = _load_cupy()
    if cupy is None:
        raise RuntimeError(f"device 'gpu' is not available: lucid runs on the GPU through CuPy ({INSTALL_HINT}) "
                           f"and needs a CUDA GPU: {_cupy_error}")
    return cupy


# ---------------------------------------------------------------------------- which GPU

def device_count() -> int:
    """How many CUDA GPUs this process sees (0 without CuPy or a driver); runs no kernel."""
    cupy = _import_cupy()
    if cupy is None:
        return 0
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver
        return 0


def current_device() -> int:
    """The index of the current GPU (what "gpu" means)."""
    return int(cupy_module().cuda.runtime.getDevice())


def set_device(index: int, *, chosen: bool = True) -> None:
    """Make GPU `index` the current one.

    With `chosen` (the default) it counts as the user's choice, which `distributed.init()` keeps, and
    takes effect at once. Without it (`distributed.init()`'s pick per local rank) it takes effect when
    lucid first uses the GPU, so a job that never does creates no CUDA context on it.
    """
    global _chosen_device, _pending_device
    count = device_count()
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < count:
        raise ValueError(f"invalid GPU index {index!r}: this process sees {count} GPU(s)"
                         + ("" if count else f" ({unavailable_reason()})"))
    if chosen:
        _chosen_device = int(index)
    if chosen or _cupy is not None:
        _import_cupy().cuda.Device(int(index)).use()
        _pending_device = None
    else:
        _pending_device = int(index)


def chosen_device():
    """The GPU index the user chose with `set_device`, or None."""
    return _chosen_device


def gpu_index(device: str) -> int:
    """The GPU index of a normalized GPU device name ("gpu": the current one); ValueError if absent."""
    cupy = cupy_module()
    if device == GPU:
        return int(cupy.cuda.runtime.getDevice())
    index = int(device.split(":", 1)[1])
    count = device_count()
    if index >= count:
        raise ValueError(f"device {device!r} does not exist: this process sees {count} GPU(s)")
    return index


# ---------------------------------------------------------------------------- arrays

def is_gpu_array(x) -> bool:
    """True for a CuPy array (checked by type name, so CuPy is never imported here)."""
    return type(x).__module__.startswith("cupy")


def array_module(x):
    """The array module (numpy or cupy) that owns `x`."""
    if isinstance(x, np.ndarray) or not is_gpu_array(x):
        return np
    return cupy_module()


def device_of(x) -> str:
    """"cpu" for anything but a CuPy array; "gpu" for one on the current GPU, "gpu:N" on GPU N."""
    if not is_gpu_array(x):
        return CPU
    index = x.device.id
    return GPU if index == sys.modules["cupy"].cuda.runtime.getDevice() else f"{GPU}:{index}"


def on_device(x, device: str) -> bool:
    """Whether `x` already lives on the normalized `device`."""
    if device == CPU:
        return not is_gpu_array(x)
    return is_gpu_array(x) and x.device.id == gpu_index(device)


def module_for(device: str):
    """The array module for a normalized device name."""
    return np if device == CPU else cupy_module()


def to_device(x, device: str):
    """Return `x` as an array on `device` (the same object when it is already there)."""
    device = normalize_device(device)
    if device == CPU:
        return to_host(x)
    cupy = cupy_module()
    index = gpu_index(device)
    if is_gpu_array(x) and x.device.id == index:
        return x
    with cupy.cuda.Device(index):
        return x.copy() if is_gpu_array(x) else cupy.asarray(x)  # copy(): onto the current device


def to_host(x) -> np.ndarray:
    """Return `x` as a NumPy array (a copy when it lives on the GPU)."""
    if is_gpu_array(x):
        return x.get()
    return np.asarray(x)


def synchronize(x=None) -> None:
    """Wait for the work queued on the current stream (of `x`'s GPU, if given) to finish; a no-op for
    CPU arrays, and when nothing imported CuPy.

    MPI and host copies read device memory directly, so they must not start before the kernels that
    write it have finished. This works on CuPy arrays that lucid did not make (before lucid loaded CuPy).
    """
    if x is not None and not is_gpu_array(x):
        return
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return  # nothing can be queued on a GPU when no one imported CuPy
    if x is not None:
        with x.device:
            cupy.cuda.get_current_stream().synchronize()
        return
    try:
        cupy.cuda.get_current_stream().synchronize()
    except cupy.cuda.runtime.CUDARuntimeError:  # CuPy imported, but no GPU: nothing queued
        pass
