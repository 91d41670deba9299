"""An uncaught exception on one rank ends the whole MPI job, even under plain `python train.py`.

Without it the other ranks wait forever in their next collective for the rank that died (mpi4py
finalizes MPI at exit, which waits too). `distributed.init()` installs the hook when the world has
more than one rank; `python -m mpi4py` does the same job its own way and keeps working.
"""

from __future__ import annotations

import sys
import traceback


def install(world) -> None:
    """From now on an uncaught exception prints its traceback, each line marked with the rank, and
    aborts every rank of `world`'s job (non-zero exit status)."""
    if getattr(sys.excepthook, "lucid_rank", None) is not None:
        return
    previous = sys.excepthook

    def abort_the_job(kind, value, tb):
        try:
            prefix = f"[rank {world.rank}] "
            text = "".join(traceback.format_exception(kind, value, tb))
            sys.stdout.flush()
            sys.stderr.write(f"{prefix}uncaught {kind.__name__} on rank {world.rank} of {world.size}: aborting "
                             "the MPI job\n" + "".join(prefix + line for line in text.splitlines(True)))
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001 - whatever happens, the job must not be left hanging
            previous(kind, value, tb)
        finally:
            world.abort(1)

    abort_the_job.lucid_rank = world.rank
    sys.excepthook = abort_the_job
