"""What `distributed.init()` sets up for a job under an MPI launcher, each piece in its own module.

- thread counts: each rank's BLAS, OpenMP and compiled-step threads limited to its share of the cores
  it shares with other ranks of the job (`lucid._threads`), unless the user chose them;
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

from lucid import _threads

from . import control, excepthook, stall

log = logging.getLogger("distributed")


def start(world) -> None:
    """Set up the runtime for the process-wide MPI `world` (every rank calls it, from init)."""
    share_threads(world)
    if world.size < 2:
        return
    excepthook.install(world)
    stall.start(world)
    atexit.register(_exit_handshake, world)


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
