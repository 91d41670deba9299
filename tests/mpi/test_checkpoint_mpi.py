"""distributed.checkpoint across ranks: save at one world size, load at every other (sub-communicators of
this job), a plain single-process save into a sharded optimizer, LBFGS saved whole by rank 0, and
damaged or mismatched checkpoints raising the same CheckpointError on every rank with nothing loaded.

Run with `mpiexec -n 2|3 python -m mpi4py -m pytest tests/mpi --with-mpi`. Every value check is
gathered to all ranks before asserting, so a failure on one rank fails the test everywhere instead
of leaving the others waiting in a collective.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import sys

import numpy as np
import pytest

import lucid
from lucid import nn, optim

import distributed
from distributed import checkpoint
from distributed import comm as comm_module
from distributed.checkpoint import CheckpointError
from distributed.comm import MPIComm, SelfComm

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: the shared workload
from checkpoint_workload import (HIDDEN, IN, OUT, batch, flat_params, flip_byte, make_model,  # noqa: E402
                                 edit_manifest, make_optimizer, rewrite_shard_header, shard, train,
                                 uninterrupted)

pytestmark = pytest.mark.mpi(min_size=2)
TIMEOUT = {"timeout": 90, "method": "thread"}  # thread: also ends a rank stuck inside an MPI call



def wrap(opt, model, sharded: bool, comm):
    return distributed.DistributedOptimizer(opt, model.named_parameters(), shard_state=sharded, comm=comm)


def groups_of(world) -> dict:
    """size -> an MPIComm of world ranks [0, size), or None on the ranks outside it (a collective)."""
    from mpi4py import MPI
    groups = {world.size: world}
    for size in range(1, world.size):
        sub = world.comm.Split(0 if world.rank < size else MPI.UNDEFINED, world.rank)
        groups[size] = None if sub == MPI.COMM_NULL else MPIComm(sub)
    return groups


@contextlib.contextmanager
def one_process():
    """This rank alone, as `python train.py` would be: the process-wide communicator is a SelfComm."""
    saved = comm_module._world
    comm_module._world = SelfComm()
    try:
        yield
    finally:
        comm_module._world = saved


def problems_everywhere(world, problems: list) -> list:
    """Every rank's problems, on every rank."""
    return [p for rank_problems in world.allgather_object(problems) for p in rank_problems]


def differs(actual, expected, what: str, atol: float = 1e-5):
    error = float(np.max(np.abs(actual - expected)))
    return [f"{what}: max difference {error:.3g}"] if not error <= atol else []


# ---------------------------------------------------------------------------------------- round trips


@pytest.mark.timeout(**TIMEOUT)
@pytest.mark.parametrize("load_sharded", [False, True], ids=["load-replicated", "load-sharded"])
@pytest.mark.parametrize("save_sharded", [False, True], ids=["save-replicated", "save-sharded"])
@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_saved_at_one_world_size_continues_like_the_uninterrupted_run_at_others(world, mpi_tmp_path, name,
                                                                               save_sharded, load_sharded):
    """Saved at N ranks, loaded at N - 1, at N and by one process into a plain optimizer; saved at
    N - 1, loaded at N (at 3 ranks: 3 -> 2, 3 -> 3, 3 -> 1 plain, 2 -> 3)."""
    expected = uninterrupted(name)
    groups, n = groups_of(world), world.size
    problems = []
    for save_size, load_sizes in ((n, (n - 1, n, "plain")), (n - 1, (n,))):
        path = mpi_tmp_path / f"{name}-saved-at-{save_size}"
        comm = groups[save_size]
        if comm is not None:
            model = make_model(0)
            opt = wrap(make_optimizer(name, model), model, save_sharded, comm)
            train(model, opt, range(3), comm.rank, comm.size)
            checkpoint.save(path, model=model, optimizer=opt, extra={"step": 3, "saved_at": save_size})
        world.barrier()
        for load_size in load_sizes:
            what = f"rank {world.rank}: saved at {save_size}, loaded at {load_size}"
            model = make_model(1)
            if load_size == "plain":  # one process, as `python train.py` is: the last rank, alone
                if world.rank != n - 1 or load_sharded:
                    continue
                with one_process():
                    opt = make_optimizer(name, model)
                    extra = checkpoint.load(path, model=model, optimizer=opt)
                    train(model, opt, range(3, 6))
            else:
                comm = groups[load_size]
                if comm is None:
                    continue
                opt = wrap(make_optimizer(name, model), model, load_sharded, comm)
                extra = checkpoint.load(path, model=model, optimizer=opt)
                train(model, opt, range(3, 6), comm.rank, comm.size)
            if extra != {"step": 3, "saved_at": save_size}:
                problems.append(f"{what}: extra {extra}")
            problems += differs(flat_params(model), expected, what)
        world.barrier()
    assert problems_everywhere(world, problems) == []


@pytest.mark.timeout(**TIMEOUT)
def test_a_plain_single_process_save_loads_into_a_sharded_distributed_optimizer(world, mpi_tmp_path):
    path = mpi_tmp_path / "single"
    extra = {"epoch": 2, "note": "from python train.py", "lrs": [0.01, 0.02], "nested": {"best": None}}
    if world.rank == 0:
        with one_process():
            model = make_model(0)
            opt = make_optimizer("adam", model)
            train(model, opt, range(3))
            checkpoint.save(path, model=model, optimizer=opt, extra=extra)
    world.barrier()
    model = make_model(1)
    opt = wrap(make_optimizer("adam", model), model, True, world)
    problems = [] if checkpoint.load(path, model=model, optimizer=opt) == extra else ["extra differs"]
    held = opt.strategy.state_bytes()
    if not 0 < held < 2 * 4 * sum(p.data.size for p in model.parameters()):
        problems.append(f"rank {world.rank} holds {held} bytes of state: not a shard")
    train(model, opt, range(3, 6), world.rank, world.size)
    problems += differs(flat_params(model), uninterrupted("adam"), "single process -> sharded")
    assert problems_everywhere(world, problems) == []


@pytest.mark.timeout(**TIMEOUT)
def test_lbfgs_state_is_saved_whole_by_rank_0_and_round_trips(world, mpi_tmp_path):
    """LBFGS is not elementwise: every rank holds the same whole state; only rank 0's file carries it."""
    x, y = batch(0)
    loss_fn = nn.CrossEntropyLoss()

    def run(model, opt, steps):
        def closure():
            opt.zero_grad()
            loss = loss_fn(model(lucid.Tensor(x)), lucid.Tensor(y))
            loss.backward()
            return loss
        for _ in range(steps):
            opt.step(closure)

    def lbfgs(model):
        return optim.LBFGS(model.parameters(), lr=0.5, max_iter=4, history_size=3)

    path = mpi_tmp_path / "lbfgs"
    model = make_model(0)
    opt = lbfgs(model)
    run(model, opt, 3)
    checkpoint.save(path, model=model, optimizer=opt, extra={"step": 3})
    run(model, opt, 3)
    problems = []
    from safetensors import safe_open
    mine = shard(path, world.rank)
    with safe_open(str(mine), framework="np") as f:
        plain = [k for k in f.keys() if k.startswith("plain/")]  # noqa: SIM118 - a safe_open handle, not a dict
    if bool(plain) != (world.rank == 0):
        problems.append(f"rank {world.rank}'s file holds {len(plain)} LBFGS state tensors")
    restored = make_model(1)
    ropt = lbfgs(restored)
    if checkpoint.load(path, model=restored, optimizer=ropt) != {"step": 3}:
        problems.append("extra differs")
    run(restored, ropt, 3)
    problems += differs(flat_params(restored), flat_params(model), "LBFGS continued", atol=1e-6)
    if world.rank == world.size - 1:
        with one_process():
            alone = make_model(1)
            aopt = lbfgs(alone)
            checkpoint.load(path, model=alone, optimizer=aopt)
            run(alone, aopt, 3)
            problems += differs(flat_params(alone), flat_params(model), "LBFGS in one process", atol=1e-6)
    assert problems_everywhere(world, problems) == []


# ---------------------------------------------------------------------------------------- damaged checkpoints


class Renamed(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder, self.head = nn.Linear(IN, HIDDEN), nn.Linear(HIDDEN, OUT)

    def forward(self, x):
        return self.head(self.encoder(x).relu())


def other_checkpoint(world, path, which: str) -> None:
    """A checkpoint at this world size of another model (shapes or names) or of another optimizer class."""
    model = {"shapes": lambda: make_model(0, hidden=HIDDEN + 1), "names": Renamed}.get(which, make_model)()
    opt = wrap(make_optimizer("sgd" if which == "class" else "adam", model), model, False, world)
    train(model, opt, range(1), world.rank, world.size)
    checkpoint.save(path, model=model, optimizer=opt)


def replace_with(directory, other) -> None:
    shutil.rmtree(directory)
    shutil.copytree(other, directory)


# (damage done by rank 0, the error every rank must raise); the last rank's shard is checked and, when
# sharded, read only by the last rank: the others learn of the damage only by agreeing on errors
DAMAGE = {
    "flipped byte": (lambda d, n, o: flip_byte(shard(d, n - 1), -3),
                     lambda n: rf"shard-{n - 1:05d}-of-{n:05d}\.safetensors: SHA-256 does not match"),
    "truncated shard": (lambda d, n, o: os.truncate(shard(d, n - 1), 100),
                        lambda n: rf"shard-{n - 1:05d}-of-{n:05d}\.safetensors: shard file has 100 bytes"),
    "missing shard": (lambda d, n, o: shard(d, 1).unlink(),
                      lambda n: rf"shard-00001-of-{n:05d}\.safetensors: shard file is missing"),
    "another model (shapes)": (lambda d, n, o: replace_with(d, o),
                               lambda n: r"model entry '0\.weight' has shape \(11, 7\) in the checkpoint"),
    "another model (names)": (lambda d, n, o: replace_with(d, o),
                              lambda n: r"another model: missing \['0\.bias'.*unexpected \['encoder\.bias'"),
    "another optimizer class": (lambda d, n, o: replace_with(d, o),
                                lambda n: r"holds SGD state; the optimizer is a Adam"),
    # crafted, checksums fixed: found while validating the manifest (on every rank), or, for the header,
    # only by the rank that opens the last shard (reading it when sharded, checking it when not)
    "a header lying about dtypes": (lambda d, n, o: _lie_about_dtype(shard(d, n - 1)),
                                    lambda n: rf"shard-{n - 1:05d}-of-{n:05d}\.safetensors: '[\w/.]+' is stored as "
                                              r"I8; the manifest says float32"),
    "a step of null": (lambda d, n, o: edit_manifest(d, lambda m: m["optimizer"]["scalars"]["3"].update(step=None)),
                       lambda n: r"field optimizer\.scalars\.3\.step: expected a number, found null"),
    "an unknown dtype": (lambda d, n, o: edit_manifest(d, lambda m: m["optimizer"]["state"][-1].update(dtype="bf16")),
                         lambda n: r"'bf16' is not one of"),
}


def _lie_about_dtype(path: pathlib.Path) -> None:
    """Mark every tensor of a shard int8 in its header (checksums fixed)."""
    rewrite_shard_header(path, lambda header: [info.update(dtype="I8") for key, info in header.items()
                                               if key != "__metadata__"])


OTHER = {"another model (shapes)": "shapes", "another model (names)": "names", "another optimizer class": "class"}


def local_snapshot(model, opt) -> dict:
    """This rank's parameters and its own state arrays (its shard when sharded): no collective."""
    values = {"params": flat_params(model).copy(),
              "groups": np.array(repr([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]))}
    for k, p in enumerate(model.parameters()):
        for name, value in (opt.optimizer.state.get(p) or {}).items():
            values[f"{k}/{name}"] = np.array(value, copy=True)
    return values


@pytest.mark.timeout(**TIMEOUT)
@pytest.mark.parametrize("sharded", [False, True], ids=["replicated", "sharded"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_raises_the_same_clear_error_on_every_rank_and_loads_nothing(world, mpi_tmp_path,
                                                                                         damage, sharded):
    import re
    how, message = DAMAGE[damage]
    path, other = mpi_tmp_path / "ck", mpi_tmp_path / "other"
    model = make_model(0)
    opt = wrap(make_optimizer("adam", model), model, sharded, world)
    train(model, opt, range(2), world.rank, world.size)
    checkpoint.save(path, model=model, optimizer=opt)
    if damage in OTHER:
        other_checkpoint(world, other, OTHER[damage])
    if world.rank == 0:
        how(path, world.size, other)
    world.barrier()

    live = make_model(1)
    lopt = wrap(make_optimizer("adam", live), live, sharded, world)
    train(live, lopt, range(1), world.rank, world.size)  # live state that must survive
    lopt.param_groups[1]["lr"] = 0.125  # and live hyperparameters
    before = local_snapshot(live, lopt)
    try:
        checkpoint.load(path, model=live, optimizer=lopt)
        outcome = "loaded"
    except CheckpointError as exc:
        outcome = str(exc)
    except Exception as exc:  # noqa: BLE001 - reported below, on every rank
        outcome = f"{type(exc).__name__} instead of CheckpointError: {exc}"
    problems = [] if re.search(message(world.size), outcome) else [f"rank {world.rank}: {outcome}"]
    outcomes = world.allgather_object(outcome)
    if len(set(outcomes)) != 1:
        problems.append(f"ranks raised different errors: {outcomes}")
    after = local_snapshot(live, lopt)
    if after.keys() != before.keys() or any(not np.array_equal(after[k], before[k]) for k in before):
        problems.append(f"rank {world.rank}: the failed load changed the parameters or the state")
    assert problems_everywhere(world, problems) == []
    # and the live optimizer still trains in step on every rank
    train(live, lopt, range(1, 2), world.rank, world.size)
    params = world.allgather_object(flat_params(live))
    assert all(np.array_equal(p, params[0]) for p in params)


@pytest.mark.timeout(**TIMEOUT)
def test_a_crafted_manifest_fails_on_every_rank_before_anything_is_loaded(world, mpi_tmp_path):
    """A manifest whose `extra` names a pickle: every rank raises; no rank has loaded the model."""
    path = mpi_tmp_path / "ck"
    model = make_model(0)
    opt = wrap(make_optimizer("adam", model), model, True, world)
    train(model, opt, range(2), world.rank, world.size)
    checkpoint.save(path, model=model, optimizer=opt, extra={"v": 1})
    if world.rank == 0:
        pickled = "gASVKAAAAAAAAACMBXBvc2l4lIwGc3lzdGVtlJOUjAR0cnVllIWUUpQu"
        edit_manifest(path, lambda m: m.update(extra={"pickle": pickled}))
    world.barrier()
    live = make_model(1)
    lopt = wrap(make_optimizer("adam", live), live, True, world)
    before = flat_params(live).copy()
    try:
        checkpoint.load(path, model=live, optimizer=lopt)
        outcome = "loaded"
    except CheckpointError as exc:
        outcome = "CheckpointError" if "unknown structure entry" in str(exc) else str(exc)
    problems = [] if outcome == "CheckpointError" else [f"rank {world.rank}: {outcome}"]
    if not np.array_equal(flat_params(live), before):
        problems.append(f"rank {world.rank}: parameters changed")
    assert problems_everywhere(world, problems) == []


# ---------------------------------------------------------------------------------------- failed saves


def failing(*args, **kwargs):
    raise OSError(28, "No space left on device (simulated)")


SAVE_FAILURES = {
    # where it fails: (which rank fails, what to break there)
    "directory on rank 0": (0, None),
    "shard on the last rank": (-1, "write_shard"),
    "manifest on rank 0": (0, "write_json"),
    "pointer on rank 0": (0, "publish"),
}


@pytest.mark.timeout(**TIMEOUT)
@pytest.mark.parametrize("failure", list(SAVE_FAILURES))
def test_a_save_failing_on_one_rank_raises_on_every_rank_and_keeps_the_previous_checkpoint(world, mpi_tmp_path,
                                                                                          monkeypatch, failure):
    from distributed.checkpoint import _directory, _save
    who, what = SAVE_FAILURES[failure]
    path = mpi_tmp_path / "ck"
    model = make_model(0)
    opt = wrap(make_optimizer("adam", model), model, True, world)
    train(model, opt, range(1), world.rank, world.size)
    checkpoint.save(path, model=model, optimizer=opt, extra={"version": 1})
    if what is None:
        path = mpi_tmp_path / "a-file" / "ck"
        if world.rank == 0:
            (mpi_tmp_path / "a-file").write_text("not a directory")
        world.barrier()
    elif world.rank == who % world.size:
        monkeypatch.setattr(_save if what == "write_shard" else _directory, what, failing)
    train(model, opt, range(1, 2), world.rank, world.size)
    try:
        checkpoint.save(path, model=model, optimizer=opt, extra={"version": 2})
        outcome = "saved"
    except CheckpointError as exc:
        outcome = str(exc)
    problems = [] if outcome.startswith("checkpoint save failed") else [f"rank {world.rank}: {outcome}"]
    monkeypatch.undo()
    live = make_model(1)
    lopt = wrap(make_optimizer("adam", live), live, True, world)
    if checkpoint.load(mpi_tmp_path / "ck", model=live, optimizer=lopt) != {"version": 1}:
        problems.append(f"rank {world.rank}: the previous checkpoint did not survive")
    assert problems_everywhere(world, problems) == []


@pytest.mark.timeout(**TIMEOUT)
def test_a_checkpoint_one_rank_cannot_see_raises_on_every_rank(world, mpi_tmp_path):
    """As on nodes without a shared file system: the last rank finds no manifest; nobody waits forever."""
    model = make_model(0)
    opt = wrap(make_optimizer("adam", model), model, False, world)
    checkpoint.save(mpi_tmp_path / "ck", model=model, optimizer=opt)
    path = mpi_tmp_path / ("elsewhere" if world.rank == world.size - 1 else "ck")
    try:
        checkpoint.load(path, model=model, optimizer=opt)
        outcome = "loaded"
    except CheckpointError as exc:
        outcome = str(exc)
    problems = [] if "elsewhere: no such checkpoint directory" in outcome else [f"rank {world.rank}: {outcome}"]
    assert problems_everywhere(world, problems) == []
