"""distributed.checkpoint across ranks that disagree: at save (another model, no optimizer, another
directory, diverged values, other hyperparameters, scalar state or extra on one rank) every rank raises
the same CheckpointError and the directory is left exactly as it was. (Loads that fail on one rank only
are in test_checkpoint_mpi.py.)

Run with `mpiexec -n 2|3 python -m mpi4py -m pytest tests/mpi --with-mpi` (test_launch.py does it).
The last rank is the one that differs, so at 3 ranks two agree and one does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import pathlib
import re
import sys

import numpy as np
import pytest

import distributed
from distributed import checkpoint
from distributed import comm as comm_module
from distributed.checkpoint import CheckpointError

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: the shared workload
from checkpoint_workload import HIDDEN, make_model, make_optimizer, train  # noqa: E402

pytestmark = pytest.mark.mpi(min_size=2)
TIMEOUT = {"timeout": 90, "method": "thread"}  # thread: also ends a rank stuck inside an MPI call


@contextlib.contextmanager
def default_world(world):
    """Make `world` the process-wide communicator (what a save without a DistributedOptimizer uses)."""
    saved = comm_module._world
    comm_module._world = world
    try:
        yield
    finally:
        comm_module._world = saved


def wrap(opt, model, world, sharded=False):
    return distributed.DistributedOptimizer(opt, model.named_parameters(), shard_state=sharded, comm=world)


def tree(directory: pathlib.Path) -> dict:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(directory.rglob("*"))}


def everywhere(world, value) -> list:
    return world.allgather_object(value)


def _trained(world, seed=0, hidden=HIDDEN, wrapped=True):
    model = make_model(seed, hidden=hidden)
    opt = make_optimizer("adam", model)
    if wrapped:
        opt = wrap(opt, model, world)
        train(model, opt, range(1), world.rank, world.size)
    return model, opt


def _perturbed_state(model, opt):
    first = next(iter(model.parameters()))
    opt.optimizer.state[first]["exp_avg"][0, 0] += 1.0
    return model, opt


def _next_step(model, opt):
    for p in model.parameters():
        opt.optimizer.state[p]["step"] += 1
    return model, opt


def _lr(model, opt):
    opt.param_groups[0]["lr"] = 0.5
    return model, opt


# what the last rank does differently: (model, optimizer, path suffix, extra) from the agreeing ones' and
# the error every rank must raise
DISAGREE = {
    "model=None": (lambda w, m, o: (None, o, "ck", {"version": 2}), r"model"),
    "optimizer=None": (lambda w, m, o: (m, None, "ck", {"version": 2}), r"optimizer"),
    "another directory": (lambda w, m, o: (m, o, "elsewhere", {"version": 2}),
                          r"directory: '.*/ck' on ranks \[0(, 1)?\]; '.*/elsewhere' on ranks \[\d\]"),
    # (model-only saves, as with a plain optimizer that is not part of the checkpoint)
    "a model of another shape": (lambda w, m, o: (_trained(w, hidden=HIDDEN + 1, wrapped=False)[0], None, "ck",
                                                  {"version": 2}),
                                 r"model entries \(name, shape, dtype\), item 0: \('0\.weight', \(10, 7\)"),
    "diverged parameters": (lambda w, m, o: (_trained(w, seed=5, wrapped=False)[0], None, "ck", {"version": 2}),
                            r"ranks hold different values of model entry '0\.weight' \(ranks \[0(, 1)?\] vs "
                            r"ranks \[\d\]\)"),
    "diverged optimizer state": (lambda w, m, o: (*_perturbed_state(m, o), "ck", {"version": 2}),
                                 r"ranks hold different values of optimizer state 'exp_avg' of parameter 0"),
    "another step": (lambda w, m, o: (*_next_step(m, o), "ck", {"version": 2}), r"scalar state"),
    "another learning rate": (lambda w, m, o: (*_lr(m, o), "ck", {"version": 2}), r"hyperparameters"),
    "another extra": (lambda w, m, o: (m, o, "ck", {"version": 2, "rank": w.rank}), r"extra"),
    "a rank that cannot prepare": (lambda w, m, o: (m, o, "ck", {"array": np.zeros(2)}),
                                   r"checkpoint save failed; nothing was written: rank \d: TypeError: checkpoint "
                                   r"extra must be JSON-able"),
}


MODEL_ONLY = {"a model of another shape", "diverged parameters"}


@pytest.mark.timeout(**TIMEOUT)
@pytest.mark.parametrize("case", list(DISAGREE))
def test_ranks_that_disagree_at_save_all_raise_the_same_error_and_the_directory_stays_as_it_was(world, mpi_tmp_path,
                                                                                              case):
    change, message = DISAGREE[case]
    directory = pathlib.Path(mpi_tmp_path)
    model, opt = _trained(world)
    with default_world(world):
        checkpoint.save(directory / "ck", model=model, optimizer=opt, extra={"version": 1})
        world.barrier()
        before = tree(directory)
        last = world.rank == world.size - 1
        agreeing = (model, None if case in MODEL_ONLY else opt, "ck", {"version": 2})
        model2, opt2, where, extra = change(world, model, opt) if last else agreeing
        try:
            checkpoint.save(directory / where, model=model2, optimizer=opt2, extra=extra)
            outcome = "saved"
        except CheckpointError as exc:
            outcome = str(exc)
        world.barrier()
        problems = [] if re.search(message, outcome) else [f"rank {world.rank}: {outcome}"]
        if tree(directory) != before:
            problems.append(f"rank {world.rank}: the directory changed")
        live = make_model(1)
        if checkpoint.load(directory / "ck", model=live) != {"version": 1}:
            problems.append(f"rank {world.rank}: the previous checkpoint is gone")
    outcomes = everywhere(world, outcome)
    if len(set(outcomes)) != 1:
        problems.append(f"ranks raised different errors: {outcomes}")
    assert [p for rank_problems in everywhere(world, problems) for p in rank_problems] == []
