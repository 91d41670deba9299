"""shard_state=True for optimizers with a plain step (Adafactor, Muon, a user's subclass): whole parameters per
rank. The same training as unsharded and as one process on the full batch, at most 1/N of the state plus
one parameter's per rank, full state dicts in and out, the global gradient norm, checkpoints written by
the owners that resume at another world size, sharded or not, and in one process."""

import pathlib
import sys

import numpy as np
import pytest

import lucid
from lucid import nn, optim

from distributed import Compression, DistributedOptimizer, checkpoint
from mpi_helpers import (assert_continues_like, assert_identical_everywhere, assert_same_state_types,
                         clip_alongside, everywhere, interrupted, make_model, max_difference,
                         state_difference, train, worst)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: the checkpoint helpers
from checkpoint_workload import shard  # noqa: E402
from test_checkpoint_mpi import groups_of, one_process  # noqa: E402

pytestmark = pytest.mark.timeout(60, method="thread")

TOLERANCE = 2e-5


class NormalizedMomentum(optim.Optimizer):
    """A user's optimizer with its own plain step, as a PyTorch user writes one: momentum over each gradient
    divided by its own norm (which needs the whole tensor, so it is not elementwise)."""

    def __init__(self, params, lr=0.05, momentum=0.9):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["momentum_buffer"] = np.zeros_like(p.data)
                buf = state["momentum_buffer"]
                buf *= group["momentum"]
                buf += p.grad / (np.linalg.norm(p.grad) + 1e-12)
                p.data -= group["lr"] * buf
                state["step"] += 1


def matrices(seed=0):
    """Muon takes 2-D parameters only: three bias-free layers."""
    lucid.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7, bias=False), nn.Tanh(), nn.Linear(7, 6, bias=False), nn.Tanh(),
                         nn.Linear(6, 3, bias=False))


def one_matrix(seed=0):
    """One parameter: at 2 and 3 ranks some ranks own nothing."""
    lucid.manual_seed(seed)
    return nn.Linear(5, 3, bias=False)


CASES = {  # name: (model builder, optimizer class, options)
    "adafactor": (make_model, optim.Adafactor, dict(lr=0.05, weight_decay=0.1)),
    "muon": (matrices, optim.Muon, dict(lr=0.05)),
    "user-subclass": (make_model, NormalizedMomentum, dict(lr=0.05)),
    "one-parameter": (one_matrix, optim.Adafactor, dict(lr=0.05)),
}


def build(case, comm=None, shard_state=True, seed=0, **options):
    """(model, optimizer): wrapped on `comm` (with DistributedOptimizer `options`), or the bare optimizer for
    comm=None."""
    make, opt_class, kwargs = CASES[case]
    model = make(seed)
    opt = opt_class(model.parameters(), **kwargs)
    if comm is not None:
        opt = DistributedOptimizer(opt, model.named_parameters(), bucket_cap_mb=1e-4, shard_state=shard_state,
                                   comm=comm, **options)
    return model, opt


def owned(dist) -> list:
    """Which parameters this rank's state strategy owns, in registration order."""
    return [dist.strategy.owns(p) for g in dist.param_groups for p in g["params"]]


@pytest.mark.parametrize("case", CASES)
def test_sharded_training_equals_unsharded_and_one_process(comm, case):
    (sharded_model, sharded), (plain_model, plain), (ref_model, ref) = (
        build(case, comm), build(case, comm, shard_state=False), build(case))
    assert type(sharded.strategy).__name__ == "ParameterShardedState"
    for model, opt, c in ((sharded_model, sharded, comm), (plain_model, plain, comm), (ref_model, ref, None)):
        train(model, opt, 4, c)
    sd = sharded.state_dict()
    errors = (max_difference(sharded_model, ref_model), max_difference(sharded_model, plain_model),
              state_difference(sd, ref.state_dict()), state_difference(sd, plain.state_dict()))
    assert worst(comm, max(errors)) < TOLERANCE, everywhere(comm, errors)
    assert_identical_everywhere(comm, sharded_model)


@pytest.mark.parametrize("case", CASES)
def test_each_rank_holds_its_own_parameters_state_at_most_1_over_n_plus_one_parameter(comm, case):
    model, dist = build(case, comm)
    ref_model, ref = build(case)
    train(model, dist, 1, comm)
    train(ref_model, ref, 1)
    per_param = [sum(np.asarray(v).nbytes for v in ref.state[p].values() if isinstance(v, np.ndarray))
                 for p in ref_model.parameters()]
    total, largest = sum(per_param), max(per_param)
    mine = dist.strategy.state_bytes()
    shares = everywhere(comm, mine)
    assert sum(shares) == total, (shares, total)  # each parameter's state on exactly one rank
    assert max(shares) <= total / comm.size + largest, (shares, total, largest)
    owners = everywhere(comm, owned(dist))
    assert [sum(column) for column in zip(*owners)] == [1] * len(per_param)  # every parameter owned once
    for p, mine_too in zip(model.parameters(), owned(dist)):
        assert bool(dist.state.get(p)) == mine_too  # no state for another rank's parameter


@pytest.mark.parametrize("case", CASES)
def test_state_dict_is_the_single_process_one_and_loads_back_to_continue(comm, case):
    ref_model, ref = build(case)
    checkpoint_params, saved = interrupted(ref_model, ref)
    model, dist = build(case, comm, seed=5)  # other values: everything comes from the saved state
    for p, value in zip(model.parameters(), checkpoint_params):
        p.data[...] = value
    dist.load_state_dict(saved)
    sd = dist.state_dict()
    assert sd["param_groups"] == saved["param_groups"]
    assert worst(comm, state_difference(sd, saved)) == 0
    assert_same_state_types(sd, saved)
    assert_continues_like(comm, model, dist, ref_model, ref, TOLERANCE)


@pytest.mark.parametrize("options, passes, tolerance", [
    (dict(compression=Compression.fp16), 1, 1e-3),
    (dict(gradient_predivide_factor=2.0), 1, TOLERANCE),
    (dict(backward_passes_per_step=2), 2, TOLERANCE),
], ids=["fp16", "predivide", "accumulation"])
def test_horovods_options_give_what_they_give_replicated(comm, options, passes, tolerance):
    (sharded_model, sharded), (plain_model, plain) = build("adafactor", comm, **options), build(
        "adafactor", comm, shard_state=False, **options)
    for model, opt in ((sharded_model, sharded), (plain_model, plain)):
        train(model, opt, 3, comm, passes=passes)
    assert worst(comm, max_difference(sharded_model, plain_model)) < tolerance
    assert_identical_everywhere(comm, sharded_model)


@pytest.mark.parametrize("norm_type", [2.0, float("inf")], ids=["l2", "inf"])
def test_clip_grad_norm_equals_one_process(comm, norm_type):
    model, dist = build("adafactor", comm)
    ref_model, ref = build("adafactor")
    norms, ref_norms = clip_alongside(comm, model, dist, ref_model, ref, 0.05, norm_type)
    assert len(set(everywhere(comm, tuple(norms)))) == 1
    assert worst(comm, float(np.max(np.abs(np.array(norms) - ref_norms) / np.array(ref_norms)))) < 1e-5
    assert worst(comm, max_difference(model, ref_model)) < TOLERANCE


# ---------------------------------------------------------------------------------------- checkpoints


def _plain_tensors_in_my_shard(path, rank) -> set:
    from safetensors import safe_open
    with safe_open(str(shard(path, rank)), framework="np") as f:
        return {int(k.split("/")[1].split(".")[0]) for k in f.keys() if k.startswith("plain/")}  # noqa: SIM118


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(90, method="thread")
@pytest.mark.parametrize("case", CASES)
def test_a_checkpoint_written_by_the_owners_resumes_at_another_world_size_and_in_one_process(world, mpi_tmp_path,
                                                                                             case):
    """Saved at N ranks (sharded) after 3 steps; resumed at N - 1 sharded and replicated, at N, and in one
    process into the bare optimizer; each continues 3 steps and must end where the uninterrupted run does."""
    ref_model, ref = build(case)
    train(ref_model, ref, 6)
    expected = [p.data.copy() for p in ref_model.parameters()]
    path = mpi_tmp_path / case
    model, dist = build(case, world)
    train(model, dist, 3, world)
    checkpoint.save(path, model=model, optimizer=dist, extra={"step": 3})
    problems = []
    ids = [k for k, mine in enumerate(owned(dist)) if mine and dist.state.get(list(model.parameters())[k])]
    if _plain_tensors_in_my_shard(path, world.rank) != set(ids):
        problems.append(f"rank {world.rank} wrote the state of {sorted(_plain_tensors_in_my_shard(path, world.rank))}"
                        f", owns {ids}")
    groups = groups_of(world)
    for size, sharded in ((world.size - 1, True), (world.size - 1, False), (world.size, True), (None, None)):
        if size is None:  # one process, as `python train.py` is: the last rank alone, the bare optimizer
            if world.rank == world.size - 1:
                with one_process():
                    model, opt = build(case, seed=1)
                    extra = checkpoint.load(path, model=model, optimizer=opt)
                    train(model, opt, 3, start=3)
                    problems += _differs(model, expected, extra, "one process")
            continue
        comm = groups[size]
        if comm is not None:
            model, opt = build(case, comm, shard_state=sharded, seed=1)
            extra = checkpoint.load(path, model=model, optimizer=opt)
            train(model, opt, 3, comm, start=3)
            problems += _differs(model, expected, extra, f"{size} ranks, sharded={sharded}")
        world.barrier()
    assert [p for rank_problems in everywhere(world, problems) for p in rank_problems] == []


def _differs(model, expected, extra, what) -> list:
    error = max_difference(model, expected)
    problems = [] if error < TOLERANCE else [f"{what}: max difference {error:.3g}"]
    return problems + ([] if extra == {"step": 3} else [f"{what}: extra {extra}"])
