"""The one entry point that makes a plain `python -m pytest` run the multi-rank tests: it launches them
under `mpiexec -n 2` and `mpiexec -n 3` (an odd world size catches uneven sharding) and fails on a
failure or a hang, showing every rank's output. Each run's counts per rank go to the `launched_runs`
fixture (tests/conftest.py), which the session's summary shows."""

import json
import sys
from pathlib import Path

import pytest

import mpi_helpers
from mpi_helpers import child_env, launch_skip_reason, mpiexec, run_job

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS_FILE = "pytest-results.json"  # written by tests/conftest.py on rank 0 of the launched run
TIMEOUT_S = 300  # far above a normal run (~10 s per world size): only a hang gets there


def _report(command, output, log_dir):
    logs = "".join(f"\n----- {log.name} -----\n{log.read_text(errors='replace')}"
                   for log in sorted(log_dir.glob("pytest-rank*.log")))
    return f"$ {' '.join(command)}\n----- rank 0 (console) -----\n{output}{logs}"


@pytest.mark.timeout(TIMEOUT_S + 60)  # the job's own timeout fires first, with the report
@pytest.mark.parametrize("size", [2, 3])
def test_multi_rank_suite(request, tmp_path, size, launched_runs):
    reason = launch_skip_reason(request.config)
    if reason:
        pytest.skip(reason)
    # python -m mpi4py: an exception that escapes on one rank aborts the job instead of hanging it
    command = [mpiexec(), "-n", str(size), sys.executable, "-m", "mpi4py", "-m", "pytest", str(HERE),
               "--with-mpi", "-q", "--color=no", "-p", "no:cacheprovider"]
    status, output, elapsed = run_job(command, ROOT, child_env(tmp_path, size), TIMEOUT_S)
    if status is None:
        pytest.fail(f"the {size}-rank run hung for {TIMEOUT_S} s and was killed\n"
                    + _report(command, output, tmp_path), pytrace=False)
    if status != 0:
        pytest.fail(f"the {size}-rank run failed (exit status {status}, {elapsed:.1f} s)\n"
                    + _report(command, output, tmp_path), pytrace=False)
    results = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert results["world_size"] == size and len(results["ranks"]) == size, results
    for rank in results["ranks"]:
        counts = rank["counts"]
        assert counts.get("passed", 0) > 0 and not counts.get("failed") and not counts.get("error"), \
            _report(command, output, tmp_path)
    launched_runs.append({**results, "seconds": elapsed})


def test_launching_is_skipped_with_a_reason(request, monkeypatch):
    if launch_skip_reason(request.config):
        pytest.skip("this session does not launch")
    monkeypatch.setenv("PMI_RANK", "0")
    assert "running under MPI" in launch_skip_reason(request.config)
    monkeypatch.delenv("PMI_RANK")
    monkeypatch.setattr(mpi_helpers, "mpiexec", lambda: None)
    assert "no mpiexec" in launch_skip_reason(request.config)
    monkeypatch.undo()
    real_find_spec = mpi_helpers.importlib.util.find_spec
    monkeypatch.setattr(mpi_helpers.importlib.util, "find_spec",
                        lambda name: None if name == "mpi4py" else real_find_spec(name))
    assert launch_skip_reason(request.config).startswith("mpi4py is not installed")


@pytest.mark.timeout(TIMEOUT_S + 60)
def test_the_pytest_mpi_way_from_the_project_root(request, tmp_path):
    """`mpiexec -n 2 python -m pytest tests --with-mpi`: this folder's conftest loads late (the rank-0
    output is set up before the session starts all the same), single-process tests that use the
    default communicator run as one process on each rank, and rank 0 shows every rank's counts."""
    reason = launch_skip_reason(request.config)
    if reason:
        pytest.skip(reason)
    selection = ("test_defaults_come_from_the_world or test_the_default_sampler_uses_the_world "
                 "or test_use_world")
    command = [mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py", "-m", "pytest", "tests", "--with-mpi", "-q",
               "--color=no", "-p", "no:cacheprovider", "-k", selection]
    status, output, elapsed = run_job(command, ROOT, child_env(tmp_path, 2), TIMEOUT_S)
    assert status == 0, _report(command, output, tmp_path)
    assert "INTERNALERROR" not in output + (tmp_path / "pytest-rank1.log").read_text()
    ranks = json.loads((tmp_path / RESULTS_FILE).read_text())["ranks"]
    assert [r["counts"] for r in ranks] == [ranks[0]["counts"]] * 2 and ranks[0]["counts"]["passed"] >= 6, ranks
    assert "results on each of the 2 MPI ranks" in output and "rank 1: " in output, output
