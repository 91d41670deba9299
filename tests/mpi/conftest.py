"""pytest setup for the multi-rank tests: pytest-mpi's marks as marks, the launched runs' results, and the
`comm` / `world` fixtures.

Run them with `mpiexec -n 3 python -m mpi4py -m pytest tests/mpi --with-mpi -q --color=no`, or the whole
suite with `mpiexec -n 2 python -m pytest --with-mpi` (tests/conftest.py keeps the output to rank 0 and
combines the ranks' results), or let the plain `python -m pytest` launch them: test_launch.py runs this
folder under `mpiexec -n 2` and `-n 3`, and this process then leaves the `mpi`-marked tests to those
runs (deselected here), and tests/conftest.py shows their counts per world size in the summary. Without --with-mpi and
without launching, pytest-mpi skips the multi-rank variants, and the single-process (`SelfComm`)
variants of the same bodies still run.
"""

import os
import sys

import pytest

import distributed

sys.path.insert(0, os.path.dirname(__file__))  # for mpi_helpers (tests are imported with importlib)

from mpi_helpers import launch_skip_reason  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCHER_TEST = "test_multi_rank_suite"  # in test_launch.py
_NEED_WITH_MPI = "need --with-mpi option to run"


def _testing_mpi(config) -> bool:
    return bool(config.getoption("--with-mpi", default=False) or config.getoption("--only-mpi", default=False))


def _in_this_folder(item) -> bool:
    return str(item.path).startswith(HERE + os.sep)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """Make pytest-mpi's skips follow real marks, and leave the multi-rank tests to test_launch.py's runs.

    pytest-mpi looks for "mpi" in `item.keywords`, and pytest puts every parent node's name there, so
    the folder `tests/mpi` makes every test in it look marked: only a real `mpi` mark counts here. Runs
    after -k / -m selection: when this session is about to launch this folder under mpiexec, its
    `mpi`-marked tests are deselected here (they run, and are counted, in the launched runs).
    """
    result = yield
    if _testing_mpi(config):
        return result
    for item in items:
        if item.get_closest_marker("mpi") is None and _in_this_folder(item):
            item.own_markers[:] = [m for m in item.own_markers
                                   if not (m.name == "skip" and m.kwargs.get("reason") == _NEED_WITH_MPI)]
    launching = any(item.name.startswith(LAUNCHER_TEST) and _in_this_folder(item) for item in items)
    if launching and launch_skip_reason(config) is None:
        left = [item for item in items if item.get_closest_marker("mpi") is not None and _in_this_folder(item)]
        if left:
            config.hook.pytest_deselected(items=left)
            items[:] = [item for item in items if not (item.get_closest_marker("mpi") is not None
                                                       and _in_this_folder(item))]
    return result


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
