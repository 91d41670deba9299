"""SelfComm, init() without a launcher, the lazy mpi4py import and the CUDA-aware override."""

import os
import subprocess
import sys

import numpy as np
import pytest

import distributed
from distributed import comm as comm_module
from distributed import cuda_aware
from distributed.comm import SelfComm, detect_cuda_aware

from script_jobs import LAUNCHER_PREFIXES, job_env


@pytest.fixture
def no_launcher(monkeypatch):
    """A fresh process-wide communicator slot and no launcher variables (restored afterwards)."""
    for var in list(os.environ):
        if var.startswith(LAUNCHER_PREFIXES):
            monkeypatch.delenv(var)
    monkeypatch.setattr(comm_module, "_world", None)


def test_self_comm_collectives_are_the_identity():
    comm = SelfComm()
    assert (comm.rank, comm.size, comm.local_rank, comm.local_size) == (0, 1, 0, 1)
    assert repr(comm) == "SelfComm(rank=0, size=1)"
    buf = np.arange(6, dtype=np.float32)
    for op in (distributed.Sum, distributed.Average):
        comm.allreduce(buf, op)
        np.testing.assert_array_equal(buf, np.arange(6))
        request = comm.iallreduce(buf, op)
        assert request.test()
        request.wait()
    recv = np.zeros(6, dtype=np.float32)
    comm.reduce_scatter(buf, recv)
    np.testing.assert_array_equal(recv, buf)
    comm.reduce_scatter(buf, recv, counts=[6])
    comm.allgather(buf)
    comm.broadcast(buf, root=0)
    np.testing.assert_array_equal(buf, np.arange(6))
    with pytest.raises(ValueError, match="root rank 1 is out of range"):
        comm.broadcast(buf, root=1)
    with pytest.raises(ValueError, match="out of range"):
        comm.broadcast_object("x", root=-1)
    obj = {"a": [1, 2]}
    assert comm.broadcast_object(obj) is obj
    assert comm.allgather_object(obj) == [obj]
    values = np.array([1, 0, 3], dtype=np.uint8)
    out = comm.allreduce_max(values)
    np.testing.assert_array_equal(out, values)
    assert out is not values
    comm.barrier()


def test_module_functions_use_the_self_world(no_launcher):
    assert not distributed.is_initialized()
    assert (distributed.rank(), distributed.size(), distributed.local_rank(), distributed.local_size()) == \
        (0, 1, 0, 1)
    distributed.barrier()
    assert distributed.is_initialized()
    assert distributed.broadcast_object([1, 2]) == [1, 2]
    assert distributed.allgather_object("me") == ["me"]
    a = np.array([1.0, 2.0])
    assert distributed.allreduce(a) is a
    np.testing.assert_array_equal(a, [1.0, 2.0])
    with pytest.raises(TypeError, match="allreduce takes a number, an array or a lucid Tensor"):
        distributed.allreduce([1.0, 2.0])


def test_init_without_a_launcher_is_a_self_comm_and_idempotent(no_launcher):
    assert not distributed.launched_by_mpi()
    world = distributed.init()
    assert isinstance(world, SelfComm)
    assert distributed.init() is world
    mine = SelfComm()
    assert distributed.init(mine) is mine
    assert distributed.init() is mine


def test_init_under_a_launcher_without_mpi4py(no_launcher, monkeypatch):
    def no_mpi4py(*args, **kwargs):
        raise ImportError("No module named 'mpi4py'")
    monkeypatch.setattr(comm_module, "MPIComm", no_mpi4py)
    monkeypatch.setenv("PMI_SIZE", "3")
    monkeypatch.setenv("PMI_RANK", "1")
    assert distributed.launched_by_mpi()
    with pytest.raises(RuntimeError, match="3 ranks, but mpi4py cannot be imported"):
        distributed.init()
    monkeypatch.setenv("PMI_SIZE", "1")  # a one-rank launch may fall back to a single process
    assert isinstance(distributed.init(), SelfComm)


def test_import_distributed_does_not_import_mpi4py():
    code = ("import sys, distributed, lucid\n"
            "assert 'mpi4py' not in sys.modules, 'import'\n"
            "world = distributed.init()\n"
            "assert type(world).__name__ == 'SelfComm', world\n"
            "assert 'mpi4py' not in sys.modules, 'init'\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], env=job_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


def _real_mpi():
    from mpi4py import MPI
    return MPI, MPI.COMM_WORLD


@pytest.mark.parametrize("value", ["0", "off", "no", " FALSE "])
def test_cuda_aware_override_off(monkeypatch, value):
    monkeypatch.setenv("LUCID_MPI_CUDA_AWARE", value)
    assert detect_cuda_aware(*_real_mpi()) is False


@pytest.mark.parametrize("value", ["1", " TRUE ", "yes"])
def test_cuda_aware_override_on_an_mpi_without_cuda_support_is_refused(monkeypatch, value):
    # the PyPI mpich wheel reports no CUDA support (mpi_memory_alloc_kinds without cuda, and
    # MPIX_Query_cuda_support() = 0): handing it device pointers would crash or corrupt data
    MPI, world = _real_mpi()
    assert cuda_aware.library_cuda_support(MPI, world) is False
    monkeypatch.setenv("LUCID_MPI_CUDA_AWARE", value)
    monkeypatch.delenv("LUCID_MPI_CUDA_AWARE_FORCE", raising=False)
    with pytest.raises(RuntimeError) as info:
        detect_cuda_aware(MPI, world)
    message = str(info.value)
    assert "reports no CUDA support" in message and "MPIX_Query_cuda_support()=0" in message
    assert "LUCID_MPI_CUDA_AWARE_FORCE=1" in message and "Unset LUCID_MPI_CUDA_AWARE" in message
    monkeypatch.setenv("LUCID_MPI_CUDA_AWARE_FORCE", "1")  # the documented second override
    assert detect_cuda_aware(MPI, world) is True
    monkeypatch.setenv("LUCID_MPI_CUDA_AWARE_FORCE", "0")
    with pytest.raises(RuntimeError, match="reports no CUDA support"):
        detect_cuda_aware(MPI, world)


@pytest.mark.parametrize("variable", ["LUCID_MPI_CUDA_AWARE", "LUCID_MPI_CUDA_AWARE_FORCE"])
@pytest.mark.parametrize("value", ["2", "maybe", ""])
def test_cuda_aware_variables_reject_other_values(monkeypatch, variable, value):
    monkeypatch.setenv("LUCID_MPI_CUDA_AWARE", "1")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"{variable} must be 1 or 0"):
        detect_cuda_aware(*_real_mpi())


class _Info:
    def __init__(self, value):
        self.value = value

    def Get(self, key):
        assert key == "mpi_memory_alloc_kinds"
        return self.value


class _FakeMPI:
    """Stands for MPI libraries this machine does not have (a CUDA-aware one, one that reports nothing)."""

    def __init__(self, value):
        self.INFO_ENV = _Info(value)

    def Get_library_version(self):
        return "Some MPI 9.9"


class _FakeComm:
    def Get_info(self):
        raise NotImplementedError  # an MPI without communicator info


def test_cuda_aware_detection_reads_memory_alloc_kinds(monkeypatch):
    monkeypatch.delenv("LUCID_MPI_CUDA_AWARE", raising=False)
    monkeypatch.setattr(cuda_aware, "_vendor_query", lambda: None)
    assert detect_cuda_aware(_FakeMPI("mpi,system,cuda:device"), _FakeComm()) is True
    assert detect_cuda_aware(_FakeMPI("mpi,system"), _FakeComm()) is False
    assert detect_cuda_aware(_FakeMPI(None), _FakeComm()) is False
    monkeypatch.setattr(cuda_aware, "_vendor_query", lambda: True)
    assert detect_cuda_aware(_FakeMPI(None), _FakeComm()) is True


def test_cuda_aware_override_where_the_library_says_nothing_or_yes(monkeypatch):
    monkeypatch.setenv("LUCID_MPI_CUDA_AWARE", "1")
    monkeypatch.delenv("LUCID_MPI_CUDA_AWARE_FORCE", raising=False)
    monkeypatch.setattr(cuda_aware, "_vendor_query", lambda: None)
    assert cuda_aware.library_cuda_support(_FakeMPI(None), _FakeComm()) is None
    assert detect_cuda_aware(_FakeMPI(None), _FakeComm()) is True   # nothing to check it against
    assert detect_cuda_aware(_FakeMPI("mpi,cuda"), _FakeComm()) is True
    with pytest.raises(RuntimeError, match="Some MPI 9.9.*mpi_memory_alloc_kinds='mpi,system'"):
        detect_cuda_aware(_FakeMPI("mpi,system"), _FakeComm())


# ---------------------------------------------------------------------------- launched by another MPI's mpiexec

@pytest.mark.parametrize("variables, named", [({"PMI_SIZE": "2", "PMI_RANK": "0"}, "PMI_SIZE=2"),
                                              ({"OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "2"},
                                               "OMPI_COMM_WORLD_SIZE=3, OMPI_COMM_WORLD_RANK=2")])
def test_a_launcher_that_mpi_does_not_see_is_an_error_naming_both(variables, named):
    """Each process of such a launch is an MPI singleton: it would train alone, silently."""
    code = "import distributed\ndistributed.init()\nprint('trained alone')\n"
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=job_env(**variables),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "trained alone" not in result.stdout, result.stdout + result.stderr
    assert f"one of several ranks ({named}), but MPI (MPICH" in result.stderr, result.stderr
    assert "reports a world of 1 rank" in result.stderr


def test_a_slurm_batch_script_is_not_a_launch(monkeypatch):
    """sbatch --ntasks=4 sets SLURM_NTASKS and SLURM_PROCID for the batch script itself; srun adds a step."""
    from distributed import launcher
    for var in list(os.environ):
        if var.startswith(LAUNCHER_PREFIXES):
            monkeypatch.delenv(var)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert not launcher.launched_by_mpi() and launcher.several_ranks_evidence() == []
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert launcher.launched_by_mpi() and launcher.launcher_size() == 4
    assert launcher.several_ranks_evidence() == ["SLURM_STEP_NUM_TASKS=4", "SLURM_PROCID=3"]
    launcher.check_world(4, "MPICH")  # MPI sees them all: fine
    with pytest.raises(RuntimeError, match="one of several ranks .* but MPI \\(MPICH\\) reports a world of 1"):
        launcher.check_world(1, "MPICH")


# ---------------------------------------------------------------------------- the runtime pieces on one process

@pytest.mark.parametrize("timeout, abort, expected", [(None, None, (60.0, None)), ("5", None, (5.0, None)),
                                                      ("0", "2.5", (0.0, 2.5)), (" 1 ", "0", (1.0, None))])
def test_stall_settings(monkeypatch, timeout, abort, expected):
    from distributed import stall
    for name, value in (("LUCID_STALL_TIMEOUT", timeout), ("LUCID_STALL_ABORT", abort)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert stall.settings() == expected


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
def test_stall_settings_reject(monkeypatch, value):
    from distributed import stall
    monkeypatch.setenv("LUCID_STALL_ABORT", value)
    with pytest.raises(ValueError, match="LUCID_STALL_ABORT must be a number of seconds >= 0"):
        stall.settings()


def test_the_exception_hook_marks_every_line_with_the_rank_and_aborts(monkeypatch, capsys):
    from distributed import excepthook

    class World:
        rank, size, aborted = 3, 4, []

        def abort(self, code):
            self.aborted.append(code)
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    world = World()
    excepthook.install(world)
    excepthook.install(world)  # once is enough
    try:
        raise KeyError("missing")
    except KeyError:
        sys.excepthook(*sys.exc_info())
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "[rank 3] uncaught KeyError on rank 3 of 4: aborting the MPI job"
    assert err[-1] == "[rank 3] KeyError: 'missing'" and all(line.startswith("[rank 3] ") for line in err)
    assert world.aborted == [1]
