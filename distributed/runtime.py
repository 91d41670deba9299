"""What `distributed.init()` sets up for a job under an MPI launcher, each piece in its own module.

- thread counts: each rank's BLAS, OpenMP and compiled-step threads limited to its share of the cores
  it shares with other ranks of the job (`lucid._threads`), unless the user chose them;
- one GPU per rank: where GPUs exist, GPU `local_rank % device_count` becomes the current one (what
  "gpu" means), unless the user chose one with `lucid.gpu.set_device` first;
- LUCID_MPI_CUDA_AWARE, when set, checked against what the MPI library reports (`cuda_aware.py`), so a
  refused setting fails at init on every rank rather than at the first GPU collective;
- the exception hook (`excepthook.py`) and the stall inspector (`stall.py`), for several ranks;
- the exit handshake: at interpreter exit every rank makes one last control exchange, so a rank whose
  script ended while another still calls collectives ends the job with a message naming both,
  instead of leaving the other waiting.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys

from lucid import _backend, _threads

from . import control, cuda_aware, excepthook, stall

log = logging.getLogger("distributed")


def start(world) -> None:
    """Set up the runtime for the process-wide MPI `world` (every rank calls it, from init)."""
    share_threads(world)
    select_gpu(world)
    if world.size > 1:
        excepthook.install(world)
    if os.environ.get(cuda_aware.OVERRIDE) is not None:
        world.cuda_aware()  # raises a refused override here, on every rank (the hook ends the job)
    if world.size < 2:
        return
    stall.start(world)
    atexit.register(_exit_handshake, world)


def select_gpu(world):
    """Make GPU `local_rank % device_count` current, where there are GPUs and the user chose none.

    Returns the GPU index selected, or None (no GPU, or the user's choice kept).
    """
    if _backend.chosen_device() is not None:
        return None
    count = _backend.device_count()
    if count == 0:
        return None
    index = world.local_rank % count
    _backend.set_device(index, chosen=False)
    log.debug("rank %d (local rank %d of %d): GPU %d of %d", world.rank, world.local_rank, world.local_size,
              index, count)
    return index


def cores_to_share(world) -> tuple:
    """(cores, ranks): the cores this rank may run on and how many ranks of the job share them."""
    mine = _affinity()
    host = socket.gethostname()
    everyone = world.allgather_object((host, sorted(mine)), call=control.Call("distributed.init"))
    sharing = [set(cores) for h, cores in everyone if h == host and mine & set(cores)]
    cores = set().union(*sharing) if sharing else mine
    return len(cores), max(1, len(sharing))


def share_threads(world) -> None:
    """Limit this rank's thread pools to cores / ranks sharing them (at least 1), unless the user chose."""
    cores, ranks = cores_to_share(world)
    threads = max(1, min(len(_affinity()), cores // ranks))
    chosen = _threads.share_cores(threads)
    log.debug("rank %d: %d ranks share %d cores here: %s", world.rank, ranks, cores,
              ", ".join(f"{pool} {what}" for pool, what in chosen.items()))


def _affinity() -> set:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def _exit_handshake(world) -> None:
    """The last control exchange: all ranks at exit, or the same mismatch error on every rank."""
    try:
        world.control_exchange(control.Kind.EXIT, control.Call("exit"))
    except control.CollectiveMismatchError as error:
        sys.stdout.flush()
        sys.stderr.write(f"[rank {world.rank}] {error}\n")
        sys.stderr.flush()
        stall.stop()
        world.abort(1)
    except BaseException:  # noqa: BLE001 - a broken communicator: nothing left to agree on
        pass
    stall.stop()
