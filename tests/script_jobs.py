"""Running a script from a test as a job of its own: this interpreter (and the mpiexec beside it), an
environment without an outer launcher's or pytest's variables, one BLAS/numba thread per rank when the
ranks share the cores, the checkout on PYTHONPATH, and a failure that shows the job's output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import distributed

ROOT = Path(__file__).resolve().parent.parent
# an MPI launcher's variables (MPICH/Hydra, Open MPI, PMIx, Slurm): a child that inherits them joins the outer job
LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPI_LOCAL", "SLURM_", "MPIEXEC_")
_DROP = LAUNCHER_PREFIXES + ("PYTEST_CURRENT_TEST", "PYTEST_XDIST")
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def mpiexec() -> str:
    """The mpiexec beside this Python (the `mpich` wheel's), else the one on PATH; skips without one."""
    beside = Path(sys.executable).with_name("mpiexec")
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec beside this Python or on PATH (pip install mpich)")
    return found


def skip_if_under_mpi(config) -> None:
    """A test that starts mpiexec jobs does not run inside one (`mpiexec ... pytest --with-mpi`)."""
    if distributed.launched_by_mpi() or config.getoption("--with-mpi", default=False):
        pytest.skip("running under MPI: this test's own mpiexec jobs are not launched from inside one")


def job_env(ranks: int = 1, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP)}
    threads = str(max(1, (os.cpu_count() or 1) // ranks))
    for var in _THREAD_VARS:
        env.setdefault(var, threads)
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def run(command: list, cwd, ranks: int = 1, timeout: float = 240, env: dict | None = None) -> str:
    """Run `command` in `cwd`; its stdout (the test fails with the job's output if it fails)."""
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env or job_env(ranks),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (f"$ {' '.join(map(str, command))}  (in {cwd}, exit status {done.returncode})\n"
                                  f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}")
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    return done.stdout


def mpirun(ranks: int, *args, cwd, timeout: float = 240) -> str:
    """`mpiexec -n ranks python -m mpi4py *args` (one rank's exception ends the whole job)."""
    return run([mpiexec(), "-n", ranks, sys.executable, "-m", "mpi4py", *args], cwd, ranks=ranks, timeout=timeout)
