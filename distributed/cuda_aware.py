"""Whether MPI can read and write CUDA device memory, and how device buffers travel when it cannot.

Decided at run time: what the library reports (MPI 4.1's `mpi_memory_alloc_kinds` info, else the
vendors' MPIX_Query_cuda_support from the libmpi this process loaded); LUCID_MPI_CUDA_AWARE=1/0
overrides it, except that =1 on a library that reports NO CUDA support is refused (MPI would read
device pointers as host memory) unless LUCID_MPI_CUDA_AWARE_FORCE=1 says the user knows better.

Without CUDA-aware MPI a device buffer is staged (`Staged`): copied into pinned host memory on a side
stream once the work queued before it has finished, the MPI call started when that copy's event has
completed, and the result copied back on the side stream with the compute stream told to wait for it.
Nothing blocks the host, so the copies of early buckets overlap the rest of the backward pass; the
pinned memory stays referenced until an event recorded after its last copy has completed.
"""

from __future__ import annotations

import collections
import ctypes
import os

import numpy as np

from lucid import _backend

OVERRIDE = "LUCID_MPI_CUDA_AWARE"
FORCE = "LUCID_MPI_CUDA_AWARE_FORCE"


def detect_cuda_aware(MPI, comm) -> bool:
    """Whether to hand device buffers to MPI: LUCID_MPI_CUDA_AWARE if set (checked against what the
    library reports), else what the library reports.

    Raises:
        RuntimeError: LUCID_MPI_CUDA_AWARE=1 while the library reports no CUDA support, without
            LUCID_MPI_CUDA_AWARE_FORCE=1.
        ValueError: either variable set to something other than 1 or 0.
    """
    override, reported = _flag(OVERRIDE), library_cuda_support(MPI, comm)
    if override is None:
        return reported is True
    if override and reported is False and not _flag(FORCE):
        raise RuntimeError(
            f"{OVERRIDE}=1, but this MPI library ({' '.join(MPI.Get_library_version().split()[:3])}) reports "
            f"no CUDA support ({_evidence(MPI, comm)}): it would read GPU pointers as host memory and crash or "
            f"corrupt data. Unset {OVERRIDE} to stage device buffers through host memory, or set {FORCE}=1 "
            "as well if you know this library handles device memory")
    return override


def library_cuda_support(MPI, comm):
    """True or False when the MPI library says whether it handles CUDA memory, None when it says nothing."""
    kinds = _memory_alloc_kinds(MPI, comm)
    if kinds is not None and "cuda" in kinds:
        return True
    vendor = _vendor_query()
    if vendor is not None:
        return vendor
    return False if kinds is not None else None  # it lists the memory kinds it supports: CUDA is not one


def _evidence(MPI, comm) -> str:
    kinds, vendor = _memory_alloc_kinds(MPI, comm), _vendor_query()
    said = [] if kinds is None else [f"mpi_memory_alloc_kinds={kinds!r}"]
    return ", ".join(said + ([] if vendor is None else [f"MPIX_Query_cuda_support()={int(vendor)}"]))


def _flag(name: str):
    value = os.environ.get(name)
    if value is None:
        return None
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0, not {value!r}")


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


# ---------------------------------------------------------------------------- staging

_side_streams = {}              # device id -> the stream staging copies run on
_in_flight = collections.deque()  # (event, what must stay alive until it completes)


def pinned_empty(like):
    """A host array in page-locked memory, shaped like `like` (its memory lives as long as the array)."""
    cupy = _backend.cupy_module()
    memory = cupy.cuda.alloc_pinned_memory(max(1, like.nbytes))
    return np.frombuffer(memory, dtype=like.dtype, count=like.size).reshape(like.shape)


def ready_event():
    """An event recorded on the current stream: complete once the work queued so far has finished."""
    cupy = _backend.cupy_module()
    event = cupy.cuda.Event(disable_timing=True)
    event.record(cupy.cuda.get_current_stream())
    return event


class Staged:
    """One device buffer's trip through pinned host memory, on a side stream (see the module docstring).

    Args:
        device_array: the buffer (any layout: a non-contiguous one goes through a contiguous copy).
        copy_out: copy the buffer into `host` (False: `host` only receives a result).

    Attributes:
        host: the pinned host array MPI reads and writes.
        ready: an event, complete once `host` holds the buffer (None without `copy_out`).
    """

    def __init__(self, device_array, copy_out: bool = True):
        cupy = _backend.cupy_module()
        _reap()
        self.device_id = device_array.device.id
        self.host = pinned_empty(device_array)
        self.ready = None
        with cupy.cuda.Device(self.device_id):
            self.compute = cupy.cuda.get_current_stream()
            if copy_out:
                source = cupy.ascontiguousarray(device_array)  # the array itself when already contiguous
                stream = self._side_stream()
                stream.wait_event(ready_event())  # after the kernels that wrote the buffer
                source.data.copy_to_host_async(self.host.ctypes.data, source.nbytes, stream)
                self.ready = self._record(stream, (self.host, source))

    def copy_back(self, target) -> None:
        """Copy `host` into `target` (a device array shaped like it) without blocking: the copy runs on
        the side stream and the stream that was current at the start waits for it before its next work."""
        cupy = _backend.cupy_module()
        with cupy.cuda.Device(self.device_id):
            contiguous = target if target.flags.c_contiguous else cupy.empty(target.shape, target.dtype)
            stream = self._side_stream()
            contiguous.data.copy_from_host_async(self.host.ctypes.data, contiguous.nbytes, stream)
            done = self._record(stream, (self.host, contiguous))
            self.compute.wait_event(done)
            if contiguous is not target:
                with self.compute:
                    cupy.copyto(target, contiguous)

    def _side_stream(self):
        stream = _side_streams.get(self.device_id)
        if stream is None:
            cupy = _backend.cupy_module()
            with cupy.cuda.Device(self.device_id):
                stream = _side_streams[self.device_id] = cupy.cuda.Stream(non_blocking=True)
        return stream

    @staticmethod
    def _record(stream, keep):
        """An event recorded on `stream` now; `keep` stays referenced until it has completed."""
        event = _backend.cupy_module().cuda.Event(disable_timing=True)
        event.record(stream)
        _in_flight.append((event, keep))
        return event


def _reap() -> None:
    """Drop the references of staging copies that have completed."""
    while _in_flight and _in_flight[0][0].query():
        _in_flight.popleft()


def in_flight() -> int:
    """How many staging copies may still be running (their buffers are kept alive until they finish)."""
    _reap()
    return len(_in_flight)
