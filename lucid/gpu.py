"""lucid.gpu: which CUDA GPU this process uses (torch.cuda's names where it has them).

    >>> import lucid
    >>> lucid.gpu.device_count() >= 0
    True

"gpu" always means the current GPU. `distributed.init()` makes GPU `local_rank % device_count()` the
current one on every rank (one GPU per rank on a multi-GPU node), unless `set_device` was called
first; calling `set_device` afterwards overrides it. `device="gpu:N"` places a tensor on GPU N
whatever the current one is, but the kernels that compute on it run on the current GPU (CuPy's
rule), so make GPU N current to compute there.
"""

from __future__ import annotations

from ._backend import chosen_device, device_count, unavailable_reason
from ._backend import current_device, gpu_available as is_available
from ._backend import set_device as _set_device
from ._backend import synchronize as _synchronize

__all__ = ["device_count", "current_device", "set_device", "is_available", "unavailable_reason",
           "chosen_device", "synchronize"]


def set_device(index: int) -> None:
    """Make GPU `index` the current one ("gpu" from now on); ValueError for an index that does not exist."""
    _set_device(index)


def synchronize() -> None:
    """Wait until the work queued on the current GPU's current stream has finished (torch.cuda.synchronize)."""
    _synchronize()
