"""Ranks that disagree, or do different things: layout mismatches fail the same way everywhere, missing
gradients count as zeros, a step without backward, and a parameter's `.data` rebound on one rank."""

import numpy as np
import pytest

import lucid
from lucid import nn, optim

from distributed import Compression, DistributedOptimizer, LayoutMismatchError
from mpi_helpers import (assert_identical_everywhere, everywhere, full_batch, loss_on, make_model,
                         max_difference, my_share, state_difference, train, worst)

pytestmark = pytest.mark.timeout(60, method="thread")


def _params(last_rank, kind):
    """(named parameters, DistributedOptimizer options) of a rank; the last rank differs by `kind`."""
    lucid.manual_seed(0)
    shapes = {"a.weight": (4, 3), "a.bias": (4,), "b.weight": (2, 4)}
    dtype = {}
    options = {}
    if last_rank:
        if kind == "count":
            shapes["b.bias"] = (2,)
        elif kind == "shape":
            shapes["b.weight"] = (2, 5)
        elif kind == "dtype":
            dtype["a.bias"] = np.float64
        elif kind == "names":
            shapes = {k.replace("b.", "head."): v for k, v in shapes.items()}
        elif kind == "order":
            shapes = dict(reversed(list(shapes.items())))
        elif kind == "bucket_cap_mb":
            options["bucket_cap_mb"] = 1.0
        elif kind == "op":
            options["op"] = "sum"
        elif kind == "compression":
            options["compression"] = Compression.fp16
        elif kind == "backward_passes_per_step":
            options["backward_passes_per_step"] = 2
        elif kind == "shard_state":
            options["shard_state"] = True
    named = [(k, nn.Parameter(np.zeros(s, dtype=dtype.get(k, np.float32)))) for k, s in shapes.items()]
    return named, options


KINDS = ["count", "shape", "dtype", "names", "order", "bucket_cap_mb", "op", "compression",
         "backward_passes_per_step", "shard_state"]
MENTIONS = {"count": "(2,)", "shape": "(2, 5)", "dtype": "float64", "names": "head.weight", "order": "a.weight",
            "bucket_cap_mb": "bucket_cap_mb=1.0", "op": "op=SUM", "compression": "compression=fp16",
            "backward_passes_per_step": "backward_passes_per_step=2", "shard_state": "shard_state=True"}


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("kind", KINDS)
def test_a_mismatch_raises_the_same_error_on_every_rank(world, kind):
    named, options = _params(world.rank == world.size - 1, kind)
    try:
        DistributedOptimizer(optim.SGD([p for _, p in named], lr=0.1), named, comm=world, **options)
        message = None
    except LayoutMismatchError as error:
        message = str(error)
    messages = everywhere(world, message)
    assert messages[0] is not None, "no rank noticed the mismatch"
    assert len(set(messages)) == 1, messages
    assert f"on ranks [{world.size - 1}]" in messages[0] and MENTIONS[kind] in messages[0], messages[0]
    # and the ranks still work together afterwards: a layout that agrees goes through
    named, options = _params(False, kind)
    DistributedOptimizer(optim.SGD([p for _, p in named], lr=0.1), named, comm=world)


# an elementwise optimizer (its flat buffers, element slices) and one with a plain step (the wrapper's
# buffers, whole parameters when sharded)
OPTIMIZERS = pytest.mark.parametrize("opt_class", [optim.Adam, optim.Adafactor], ids=["adam", "adafactor"])


class TwoBranches(nn.Module):
    """`trunk` always; `branch` only when asked; `unused` never."""

    def __init__(self):
        super().__init__()
        lucid.manual_seed(3)
        self.trunk = nn.Linear(5, 3)
        self.branch = nn.Linear(5, 3)
        self.unused = nn.Linear(5, 3)

    def forward(self, x, use_branch):
        out = self.trunk(x)
        return out + self.branch(x) if use_branch else out


def _uses_branch(rank):
    return rank == 0


@OPTIMIZERS
@pytest.mark.parametrize("shard_state", [False, True], ids=["replicated", "sharded"])
def test_a_gradient_missing_on_some_ranks_counts_as_zero(comm, shard_state, opt_class):
    """Rank 0 uses a branch the others do not (a dynamic graph); `unused` gets no gradient anywhere."""
    model, ref_model = TwoBranches(), TwoBranches()
    kwargs = dict(lr=0.01, weight_decay=0.1)
    dist = DistributedOptimizer(opt_class(model.parameters(), **kwargs), model.named_parameters(),
                                bucket_cap_mb=1e-4, shard_state=shard_state, comm=comm)
    ref = opt_class(ref_model.parameters(), **kwargs)
    unused_before = [p.data.copy() for p in model.unused.parameters()]
    for step in range(3):
        x, y = full_batch(step)
        dist.zero_grad()
        loss_on(lambda t: model(t, _uses_branch(comm.rank)), my_share(x, comm), my_share(y, comm)).backward()
        dist.step()
        # one process: the mean over ranks of each rank's loss, each with its own graph
        ref.zero_grad()
        total = None
        for r in range(comm.size):
            share = (np.array_split(x, comm.size)[r], np.array_split(y, comm.size)[r])
            loss = loss_on(lambda t: ref_model(t, _uses_branch(r)), *share) * (1.0 / comm.size)
            total = loss if total is None else total + loss
        total.backward()
        ref.step()
    assert worst(comm, max_difference(model, ref_model)) < 2e-5
    for p, before in zip(model.unused.parameters(), unused_before):
        np.testing.assert_array_equal(p.data, before)  # weight decay did not touch it: it was not stepped
    assert worst(comm, state_difference(dist.state_dict(), ref.state_dict())) < 2e-5
    assert_identical_everywhere(comm, model)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("shard_state", [False, True], ids=["replicated", "sharded"])
def test_a_rank_without_backward_contributes_zeros(world, shard_state):
    model, ref_model = make_model(), make_model()
    dist = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1, momentum=0.9), bucket_cap_mb=1e-4,
                                shard_state=shard_state, comm=world)
    ref = optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9)
    for step in range(3):
        x, y = full_batch(step)
        dist.zero_grad()
        if world.rank != 1:  # rank 1 has no data this step
            loss_on(model, my_share(x, world), my_share(y, world)).backward()
        dist.step()
        ref.zero_grad()
        keep = np.concatenate([np.full(len(s), r != 1) for r, s in enumerate(np.array_split(y, world.size))])
        (loss_on(ref_model, x[keep], y[keep], "sum") * (1.0 / len(y))).backward()
        ref.step()
    assert worst(world, max_difference(model, ref_model)) < 2e-5
    assert_identical_everywhere(world, model)


@pytest.mark.parametrize("shard_state", [False, True], ids=["replicated", "sharded"])
def test_step_without_backward_changes_nothing_and_does_not_hang(comm, shard_state):
    model = make_model()
    dist = DistributedOptimizer(optim.Adam(model.parameters(), lr=0.01), bucket_cap_mb=1e-4,
                                shard_state=shard_state, comm=comm)
    dist.step()  # before any backward at all
    assert dist.state_dict()["state"] == {}
    train(model, dist, 2, comm)
    before = [p.data.copy() for p in model.parameters()]
    state = dist.state_dict()
    for _ in range(2):
        dist.zero_grad()
        dist.step()
    assert max_difference(model, before) == 0
    assert state_difference(dist.state_dict(), state) == 0
    assert [s["step"] for s in dist.state_dict()["state"].values()] == [s["step"] for s in state["state"].values()]
    train(model, dist, 1, comm, start=2)  # and training goes on normally afterwards
    assert_identical_everywhere(comm, model)


def test_step_again_without_zero_grad_reuses_the_reduced_gradients(comm):
    model, ref_model = make_model(), make_model()
    dist = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), comm=comm)
    ref = optim.SGD(ref_model.parameters(), lr=0.1)
    x, y = full_batch(0)
    loss_on(model, my_share(x, comm), my_share(y, comm)).backward()
    loss_on(ref_model, x, y).backward()
    for _ in range(2):
        dist.step()
        ref.step()
    assert worst(comm, max_difference(model, ref_model)) < 2e-5
    assert_identical_everywhere(comm, model)


@OPTIMIZERS
@pytest.mark.parametrize("shard_state", [False, True], ids=["replicated", "sharded"])
def test_rebinding_data_on_one_rank_replans_everywhere(comm, shard_state, opt_class):
    model, ref_model = make_model(), make_model()
    kwargs = dict(lr=0.01)
    dist = DistributedOptimizer(opt_class(model.parameters(), **kwargs), model.named_parameters(),
                                bucket_cap_mb=1e-4, shard_state=shard_state, comm=comm)
    ref = opt_class(ref_model.parameters(), **kwargs)
    train(model, dist, 2, comm)
    train(ref_model, ref, 2)
    flats_before = list(dist._flats)
    if comm.rank == 0:
        weight = model[0].weight
        weight.data = weight.data.copy()  # a fresh array: no longer a view into the flat buffer
    train(model, dist, 2, comm, start=2)
    train(ref_model, ref, 2, start=2)
    assert worst(comm, max_difference(model, ref_model)) < 2e-5
    assert worst(comm, state_difference(dist.state_dict(), ref.state_dict())) < 2e-5
    assert all(f.is_intact() for f in dist._flats)
    if comm.rank == 0:
        assert dist._flats[0] is not flats_before[0]
        assert np.shares_memory(model[0].weight.data, dist._flats[0].data)
    assert_identical_everywhere(comm, model)


@OPTIMIZERS
@pytest.mark.parametrize("shard_state", [False, True], ids=["replicated", "sharded"])
def test_add_param_group_on_every_rank_replans(comm, shard_state, opt_class):
    def run(model, offset, opt, c, steps, start):
        for step in range(start, start + steps):
            x, y = full_batch(step)
            opt.zero_grad()
            out = model(lucid.Tensor(my_share(x, c))) + offset
            nn.functional.cross_entropy(out, lucid.Tensor(my_share(y, c))).backward()
            opt.step()

    model, ref_model = make_model(), make_model()
    offset, ref_offset = (nn.Parameter(np.zeros(3, dtype=np.float32)) for _ in range(2))
    dist = DistributedOptimizer(opt_class(model.parameters(), lr=0.01), model.named_parameters(),
                                bucket_cap_mb=1e-4, shard_state=shard_state, comm=comm)
    ref = opt_class(ref_model.parameters(), lr=0.01)
    run(model, offset, dist, comm, 2, 0)
    run(ref_model, ref_offset, ref, None, 2, 0)
    dist.add_param_group({"params": [offset], "lr": 0.05})
    ref.add_param_group({"params": [ref_offset], "lr": 0.05})
    run(model, offset, dist, comm, 2, 2)
    run(ref_model, ref_offset, ref, None, 2, 2)
    error = max(max_difference(model, ref_model), float(np.abs(offset.data - ref_offset.data).max()))
    assert worst(comm, error) < 2e-5
    assert worst(comm, state_difference(dist.state_dict(), ref.state_dict())) < 2e-5
    assert_identical_everywhere(comm, model)
