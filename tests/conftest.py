"""The suite's pytest setup for running under MPI the pytest-mpi way, loaded at start-up from the root.

    python -m pytest                                   # one process; launches the multi-rank tests itself
    mpiexec -n 2 python -m pytest --with-mpi           # pytest-mpi's way: every rank runs the whole suite

Under an MPI launcher:

- only rank 0 writes pytest's terminal output; rank r > 0 writes it to `pytest-rank{r}.log` in
  $LUCID_PYTEST_LOG_DIR (default: the working directory), so the console shows one closing line
  instead of N merged ones. This must happen before the session starts, which is why it lives in
  this conftest (the one pytest always loads first) and not in tests/mpi/conftest.py;
- with --with-mpi, rank 0's summary gets one line per rank with that rank's counts, and the exit
  status is the worst rank's;
- every test without an `mpi` mark runs as a single process: the process-wide communicator
  (`distributed.init()`) is a SelfComm during it, as it would be under a plain `python -m pytest`.
  Without that, a single-process test on rank r would meet the other ranks in its collectives, each
  with a different tmp_path.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

import distributed
from distributed.comm import use_world

sys.path.insert(0, os.path.dirname(__file__))  # for script_jobs (tests are imported with importlib)

_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
# pytest's order in its closing line
_OUTCOMES = ("failed", "passed", "skipped", "deselected", "xfailed", "xpassed", "warnings", "error")
RESULTS_FILE = "pytest-results.json"  # rank 0 writes every rank's counts here, in $LUCID_PYTEST_LOG_DIR


def _launcher_value(names) -> int | None:
    """An integer the MPI launcher put in the environment (read without importing MPI)."""
    for var in names:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return None


def launcher_rank() -> int:
    """This process's rank as the launcher numbered it (0 without a launcher)."""
    return _launcher_value(_RANK_VARS) or 0


def testing_mpi(config) -> bool:
    """Whether pytest-mpi runs the `mpi`-marked tests in this session (--with-mpi or --only-mpi)."""
    return bool(config.getoption("--with-mpi", default=False) or config.getoption("--only-mpi", default=False))


def log_directory() -> str:
    return os.environ.get("LUCID_PYTEST_LOG_DIR") or os.getcwd()


@pytest.hookimpl(trylast=True)  # after pytest's own terminal reporter is registered
def pytest_configure(config):
    rank = launcher_rank()
    if rank > 0:
        _send_terminal_output_to_a_file(config, os.path.join(log_directory(), f"pytest-rank{rank}.log"))
    if testing_mpi(config) and (_launcher_value(_SIZE_VARS) or 1) > 1:
        from mpi4py import MPI  # the ranks meet at the end of the session to combine their results
        expected = os.environ.get("LUCID_EXPECT_WORLD_SIZE")
        if expected and MPI.COMM_WORLD.Get_size() != int(expected):
            # a launcher from another MPI than mpi4py's starts N singletons: they would all "pass"
            pytest.exit(f"expected an MPI world of {expected} ranks but this rank sees "
                        f"{MPI.COMM_WORLD.Get_size()} (mpiexec does not match mpi4py's MPI)", returncode=3)


def _send_terminal_output_to_a_file(config, path: str) -> None:
    from _pytest.terminal import TerminalReporter  # semi-private; see notes/environment.md section 2
    old = config.pluginmanager.getplugin("terminalreporter")
    if old is None:
        return
    config.pluginmanager.unregister(old)
    log = open(path, "w", encoding="utf-8")
    config.pluginmanager.register(TerminalReporter(config, file=log), "terminalreporter")
    config.stash[_RANK_LOG] = log


_RANK_LOG = pytest.StashKey()
_RANK_RESULTS = pytest.StashKey()
_LAUNCHED = pytest.StashKey()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Tests without an `mpi` mark see a single-process world, whatever launched pytest.

    Around the whole protocol (not in a fixture), so that the module- and session-scoped fixtures a
    single-process test sets up run as one process too.
    """
    if item.get_closest_marker("mpi") is not None:
        return (yield)
    with use_world(distributed.SelfComm()):
        return (yield)


# ---------------------------------------------------------------------------------------- combined result


def outcome_counts(terminalreporter) -> dict:
    """{outcome: count} as pytest's closing line counts them."""
    counts = {}
    for outcome in _OUTCOMES:
        reports = terminalreporter.stats.get(outcome, [])
        n = sum(1 for r in reports if getattr(r, "count_towards_summary", True))
        if n:
            counts[outcome] = n
    return counts


def describe_counts(counts: dict) -> str:
    """'3 passed, 1 skipped' in pytest's order (and 'no tests ran' for none)."""
    parts = [f"{counts[o]} {o}" for o in _OUTCOMES if counts.get(o)]
    return ", ".join(parts) or "no tests ran"


def _mpi_world():
    """mpi4py's COMM_WORLD when this session runs on several MPI ranks, else None."""
    MPI = getattr(sys.modules.get("mpi4py"), "MPI", None)
    if MPI is None or not MPI.Is_initialized() or MPI.Is_finalized() or MPI.COMM_WORLD.Get_size() < 2:
        return None
    return MPI.COMM_WORLD


def pytest_sessionfinish(session, exitstatus):
    """Under MPI, every rank's exit status and counts go to every rank; the exit status is the worst."""
    world = _mpi_world() if testing_mpi(session.config) else None
    if world is None:
        return
    reporter = session.config.pluginmanager.getplugin("terminalreporter")
    mine = {"rank": world.Get_rank(), "exitstatus": int(exitstatus),
            "counts": outcome_counts(reporter) if reporter is not None else {}}
    results = world.allgather(mine)
    session.config.stash[_RANK_RESULTS] = results
    if world.Get_rank() == 0:
        if any(r["exitstatus"] != 0 for r in results):
            session.exitstatus = max(r["exitstatus"] for r in results)
        if os.environ.get("LUCID_PYTEST_LOG_DIR"):
            with open(os.path.join(log_directory(), RESULTS_FILE), "w", encoding="utf-8") as f:
                json.dump({"world_size": world.Get_size(), "ranks": results}, f)


@pytest.fixture(scope="session")
def launched_runs(request):
    """Where tests/mpi/test_launch.py records each multi-rank run it launched: a list of dicts with
    "world_size", "ranks" (as in RESULTS_FILE) and "seconds"; the summary shows them."""
    return request.config.stash.setdefault(_LAUNCHED, [])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    _summarize_launched_runs(terminalreporter, config.stash.get(_LAUNCHED, []))
    results = config.stash.get(_RANK_RESULTS, None)
    if results and launcher_rank() == 0:
        _summarize_ranks(terminalreporter, results)


def _summarize_launched_runs(terminalreporter, runs: list) -> None:
    """The launched runs' counts per world size (per rank where the ranks differ)."""
    if not runs:
        return
    terminalreporter.section("multi-rank tests (tests/mpi), run under mpiexec by test_launch.py")
    for run in sorted(runs, key=lambda r: r["world_size"]):
        ranks = run["ranks"]
        if all(r["counts"] == ranks[0]["counts"] and not r["exitstatus"] for r in ranks):
            result = f"{describe_counts(ranks[0]['counts'])} on each rank"
        else:
            result = "; ".join(f"rank {r['rank']}: {describe_counts(r['counts'])}" for r in ranks)
        terminalreporter.write_line(f"{run['world_size']} ranks: {result} ({run['seconds']:.1f} s)")


def _summarize_ranks(terminalreporter, results: list) -> None:
    """Rank 0 lists every rank's result (the other ranks' output is in their log files)."""
    terminalreporter.section(f"results on each of the {len(results)} MPI ranks")
    for r in results:
        log = os.path.join(log_directory(), f"pytest-rank{r['rank']}.log")
        where = "" if r["rank"] == 0 else f"  (output: {log})"
        status = "" if r["exitstatus"] == 0 else f", exit status {r['exitstatus']}"
        terminalreporter.write_line(f"rank {r['rank']}: {describe_counts(r['counts'])}{status}{where}")


def pytest_unconfigure(config):
    """Close this rank's log, flush, then wait for every rank: a rank exiting with a failure makes `python -m mpi4py` abort the
    job, which would cut off rank 0's summary (or another rank's log) if it were still being written."""
    log = config.stash.get(_RANK_LOG, None)
    if log is not None:
        log.close()
    sys.stdout.flush()
    sys.stderr.flush()
    if config.stash.get(_RANK_RESULTS, None) is not None:
        world = _mpi_world()
        if world is not None:
            world.Barrier()
