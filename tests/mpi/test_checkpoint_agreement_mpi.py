"""distributed.checkpoint across ranks that disagree: at save (another model, no optimizer, another
directory, diverged values, other hyperparameters, scalar state or extra on one rank) every rank raises
the same CheckpointError and the directory is left exactly as it was; at load, a problem only one rank
can see (in its own shard of a sharded checkpoint) raises the same error on every rank and changes
nothing anywhere.

Run with `mpiexec -n 2|3 python -m mpi4py -m pytest tests/mpi --with-mpi` (test_launch.py does it).
The last rank is the one that differs, so at 3 ranks two agree and one does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pathlib
import re
import struct
import sys

import numpy as np
import pytest

import distributed
from distributed import checkpoint
from distributed import comm as comm_module
from distributed.checkpoint import CheckpointError

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: the shared workload
from checkpoint_workload import (HIDDEN, edit_manifest, flat_params, make_model, make_optimizer,  # noqa: E402
                                 refresh_shard_checksum, shard, train)

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


def _lie_about_dtype(path: pathlib.Path) -> None:
    """Rewrite every tensor of a shard as int8-typed in its header (checksums fixed)."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    for key, info in header.items():
        if key != "__metadata__":
            info["dtype"] = "I8"
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + length:])
    refresh_shard_checksum(path)


def local_state(model, opt) -> dict:
    values = {"params": flat_params(model).copy()}
    for k, p in enumerate(model.parameters()):
        for name, value in (opt.optimizer.state.get(p) or {}).items():
            values[f"{k}/{name}"] = np.array(value, copy=True)
    values["groups"] = repr([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])
    return values


CRAFTED = {
    # damage rank 0 does to a sharded checkpoint; the error every rank must raise
    "the last shard's header lies about dtypes": (
        lambda d, n: _lie_about_dtype(shard(d, n - 1)),
        lambda n: rf"shard-{n - 1:05d}-of-{n:05d}\.safetensors: '[\w/.]+' is stored as I8; the manifest says "
                  r"float32"),
    "a step of null": (lambda d, n: edit_manifest(d, lambda m: m["optimizer"]["scalars"]["3"].update(step=None)),
                       lambda n: r"field optimizer\.scalars\.3\.step: expected a number, found null"),
    "an unknown dtype": (lambda d, n: edit_manifest(d, lambda m: m["optimizer"]["state"][-1].update(dtype="bf16")),
                         lambda n: r"'bf16' is not one of"),
}


@pytest.mark.timeout(**TIMEOUT)
@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_sharded_load_that_fails_on_one_rank_fails_on_every_rank_and_changes_nothing(world, mpi_tmp_path, case):
    how, message = CRAFTED[case]
    path = pathlib.Path(mpi_tmp_path) / "ck"
    model = make_model(0)
    opt = wrap(make_optimizer("adam", model), model, world, sharded=True)
    train(model, opt, range(2), world.rank, world.size)
    checkpoint.save(path, model=model, optimizer=opt)
    if world.rank == 0:
        how(path, world.size)
    world.barrier()
    live = make_model(1)
    lopt = wrap(make_optimizer("adam", live), live, world, sharded=True)
    train(live, lopt, range(1), world.rank, world.size)
    lopt.param_groups[1]["lr"] = 0.125  # live hyperparameters that must survive too
    before = local_state(live, lopt)
    try:
        checkpoint.load(path, model=live, optimizer=lopt)
        outcome = "loaded"
    except CheckpointError as exc:
        outcome = str(exc)
    problems = [] if re.search(message(world.size), outcome) else [f"rank {world.rank}: {outcome}"]
    after = local_state(live, lopt)
    if after.keys() != before.keys() or any(not np.array_equal(after[k], before[k]) for k in before):
        problems.append(f"rank {world.rank}: the failed load changed something")
    outcomes = everywhere(world, outcome)
    if len(set(outcomes)) != 1:
        problems.append(f"ranks raised different errors: {outcomes}")
    assert [p for rank_problems in everywhere(world, problems) for p in rank_problems] == []
