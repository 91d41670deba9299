"""What the environment says about how this process was launched: MPI launchers' and SLURM's variables.

Read without importing MPI, so `distributed.init()` can choose between MPI and one process, and can
tell when a launcher started several ranks that MPI does not see as one world (another MPI's
`mpiexec`, or `srun` without MPI support): each would silently train alone.
"""

from __future__ import annotations

import os

# Variables that give the number of ranks: Open MPI, MPICH / Intel MPI (PMI), PMIx, a SLURM step.
SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS")
# ... and this process's rank among them.
RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID")
# Variables that only say a launcher is present (MPICH's local count).
OTHER_VARIABLES = ("MPI_LOCALNRANKS",)


def _slurm_step() -> bool:
    """Inside an `srun` step (a batch script's own environment also has SLURM_NTASKS and SLURM_PROCID)."""
    return os.environ.get("SLURM_STEP_ID", "").isdigit() or os.environ.get("SLURM_STEPID", "").isdigit()


def _present(names) -> list:
    """(name, int value) of the variables set to a number, SLURM's only inside a step."""
    found = []
    for name in names:
        value = os.environ.get(name, "").strip()
        if name.startswith("SLURM_") and not _slurm_step():
            continue
        if value.isdigit():
            found.append((name, int(value)))
    return found


def launched_by_mpi() -> bool:
    """True when an MPI launcher (mpiexec, mpirun, srun) started this process."""
    return bool(_present(SIZE_VARIABLES + RANK_VARIABLES + OTHER_VARIABLES))


def launcher_size() -> int:
    """The number of ranks the launcher started (1 when no variable says)."""
    sizes = _present(SIZE_VARIABLES)
    return sizes[0][1] if sizes else 1


def several_ranks_evidence() -> list:
    """The variables that say this process is one of several ranks, as "NAME=value" strings."""
    sizes = [f"{n}={v}" for n, v in _present(SIZE_VARIABLES) if v > 1]
    ranks = [f"{n}={v}" for n, v in _present(RANK_VARIABLES) if v > 0]
    return sizes + ranks


def check_world(mpi_size: int, library: str) -> None:
    """Raise when the launcher started several ranks but MPI reports a world of `mpi_size` == 1.

    Raises:
        RuntimeError: naming the launcher's variables and the MPI library that sees one rank.
    """
    evidence = several_ranks_evidence()
    if mpi_size != 1 or not evidence:
        return
    raise RuntimeError(
        f"the launcher started this process as one of several ranks ({', '.join(evidence)}), but MPI "
        f"({library}) reports a world of 1 rank: the mpiexec that started it belongs to another MPI "
        "than the one mpi4py uses, so every process would train alone. Launch with the mpiexec of "
        "mpi4py's MPI (for the mpich wheel: the mpiexec in this virtual environment's bin/), or use an "
        "mpi4py built for the launcher's MPI.")
