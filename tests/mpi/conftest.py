"""pytest setup for the multi-rank tests: rank-0-only terminal output, and the `comm` / `world` fixtures.

Run them with `mpiexec -n 3 python -m mpi4py -m pytest tests/mpi --with-mpi -q --color=no` (or through
test_launch.py, which the plain `python -m pytest` runs). Without --with-mpi, pytest-mpi skips the
multi-rank variants and the single-process (`SelfComm`) variants of the same bodies still run.

Under an MPI launcher only rank 0 writes pytest's terminal output; rank r > 0 writes it to
`pytest-rank{r}.log` in $LUCID_PYTEST_LOG_DIR (default: the working directory), so the console shows
one clean closing line instead of N merged ones. Rank 0 then adds a line naming any rank that failed.
"""

import os
import sys

import pytest

import distributed

sys.path.insert(0, os.path.dirname(__file__))  # for mpi_helpers (tests are imported with importlib)

_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def _launcher_rank() -> int:
    """This process's rank from the launcher's environment (no MPI import)."""
    for var in _RANK_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def _testing_mpi(config) -> bool:
    return bool(config.getoption("--with-mpi", default=False) or config.getoption("--only-mpi", default=False))


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    rank = _launcher_rank()
    if rank > 0:
        from _pytest.terminal import TerminalReporter  # semi-private; see notes/environment.md section 2
        old = config.pluginmanager.getplugin("terminalreporter")
        if old is not None:
            config.pluginmanager.unregister(old)
            directory = os.environ.get("LUCID_PYTEST_LOG_DIR") or os.getcwd()
            log = open(os.path.join(directory, f"pytest-rank{rank}.log"), "w", encoding="utf-8")
            config.pluginmanager.register(TerminalReporter(config, file=log), "terminalreporter")
            config._lucid_rank_log = log
    expected = os.environ.get("LUCID_EXPECT_WORLD_SIZE")
    if expected and _testing_mpi(config):
        from mpi4py import MPI
        if MPI.COMM_WORLD.Get_size() != int(expected):
            # a launcher from another MPI than mpi4py's starts N singletons: they would all "pass"
            pytest.exit(f"expected an MPI world of {expected} ranks but this rank sees "
                        f"{MPI.COMM_WORLD.Get_size()} (mpiexec does not match mpi4py's MPI)", returncode=3)


_NEED_WITH_MPI = "need --with-mpi option to run"


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """Undo pytest-mpi's skip of unmarked tests that it takes for mpi tests because of this folder's name.

    pytest-mpi looks for "mpi" in `item.keywords`, and pytest puts every parent node's name there, so
    the folder `tests/mpi` makes every test in it look marked. Only a real `mpi` mark should count.
    """
    result = yield
    if not _testing_mpi(config):
        here = os.path.dirname(os.path.abspath(__file__))
        for item in items:
            if item.get_closest_marker("mpi") is None and str(item.path).startswith(here + os.sep):
                item.own_markers[:] = [m for m in item.own_markers
                                       if not (m.name == "skip" and m.kwargs.get("reason") == _NEED_WITH_MPI)]
    return result


def _mpi_world():
    """mpi4py's COMM_WORLD if this run tests MPI with several ranks, else None."""
    MPI = getattr(sys.modules.get("mpi4py"), "MPI", None)
    if MPI is None or not MPI.Is_initialized() or MPI.Is_finalized() or MPI.COMM_WORLD.Get_size() < 2:
        return None
    return MPI.COMM_WORLD


def pytest_sessionfinish(session, exitstatus):
    """Under MPI, tell rank 0 how the other ranks did (their output is in their log files)."""
    if not _testing_mpi(session.config):
        return
    world = _mpi_world()
    if world is None:
        return
    results = world.allgather((int(exitstatus), session.testsfailed))
    session.config._lucid_rank_results = results
    if world.Get_rank() == 0 and any(status != 0 for status, _ in results):
        session.exitstatus = max(status for status, _ in results)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = getattr(config, "_lucid_rank_results", None)
    if not results or _launcher_rank() != 0:
        return
    bad = [f"rank {r}: exit status {status}, {failed} failed" for r, (status, failed) in enumerate(results)
           if status != 0 and r > 0]
    if bad:
        directory = os.environ.get("LUCID_PYTEST_LOG_DIR") or os.getcwd()
        terminalreporter.write_line("other ranks failed (their output is in " +
                                    os.path.join(directory, "pytest-rank*.log") + "): " + "; ".join(bad))


def pytest_unconfigure(config):
    """Flush, then wait for every rank: a rank exiting with a failure makes `python -m mpi4py` abort the
    job, which would cut off rank 0's summary (or another rank's log) if it were still being written."""
    log = getattr(config, "_lucid_rank_log", None)
    if log is not None:
        log.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    if getattr(config, "_lucid_rank_results", None) is not None:
        world = _mpi_world()
        if world is not None:
            world.Barrier()


@pytest.fixture(scope="session")
def _world_comm():
    from mpi4py import MPI
    return MPI.COMM_WORLD


@pytest.fixture
def world(request):
    """All ranks, on a communicator of this test's own (a failed test cannot cross-match the next one)."""
    if request.node.get_closest_marker("mpi") is None:
        pytest.fail("a test that uses the `world` fixture needs @pytest.mark.mpi(min_size=2)")
    own = request.getfixturevalue("_world_comm").Dup()
    yield distributed.MPIComm(own)
    own.Free()  # communicator ids are a finite resource


@pytest.fixture(params=["self", pytest.param("world", marks=pytest.mark.mpi(min_size=2))])
def comm(request):
    """The same test body on one process (SelfComm) and on every rank (MPI), as mpi4py's tests do."""
    if request.param == "self":
        return distributed.SelfComm()
    return request.getfixturevalue("world")
