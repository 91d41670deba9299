"""The collective helpers (broadcasts, allgather_object, allreduce), the sampler across ranks, and the
zero_grad guard on real non-blocking reductions."""

import numpy as np
import pytest

import lucid
from lucid import optim

import distributed
from distributed import (DistributedOptimizer, DistributedSampler, LayoutMismatchError, allgather_object,
                         allreduce, broadcast_object, broadcast_optimizer_state, broadcast_parameters)
from mpi_helpers import digest, everywhere, full_batch, loss_on, make_model, my_share, state_difference, train

pytestmark = pytest.mark.timeout(60, method="thread")


def _roots(comm):
    return sorted({0, comm.size - 1})


@pytest.mark.parametrize("form", ["named_parameters", "state_dict"])
def test_broadcast_parameters(comm, form):
    for root in _roots(comm):
        model = make_model(seed=comm.rank)  # different values on every rank
        expected = everywhere(comm, digest(model))[root]
        params = model.named_parameters() if form == "named_parameters" else model.state_dict()
        broadcast_parameters(params, root_rank=root, comm=comm)
        assert everywhere(comm, digest(model)) == [expected] * comm.size


def test_broadcast_parameters_checks_the_layout(comm):
    model = make_model(hidden=7 + comm.rank)
    try:
        broadcast_parameters(model.named_parameters(), comm=comm)
        outcome = "ok"
    except LayoutMismatchError as error:
        outcome = str(error)
    outcomes = everywhere(comm, outcome)
    assert len(set(outcomes)) == 1
    assert (outcomes[0] == "ok") == (comm.size == 1)
    with pytest.raises(ValueError, match="out of range"):
        broadcast_object(1, root_rank=comm.size, comm=comm)


def test_broadcast_optimizer_state_before_the_first_step(comm):
    model = make_model()
    opt = optim.Adam(model.parameters(), lr=0.001 * (comm.rank + 1), betas=(0.9, 0.99 - 0.01 * comm.rank))
    broadcast_optimizer_state(opt, root_rank=0, comm=comm)
    assert opt.param_groups[0]["lr"] == 0.001 and opt.param_groups[0]["betas"] == (0.9, 0.99)
    assert opt.state_dict()["state"] == {}
    dist = DistributedOptimizer(opt, model.named_parameters(), comm=comm)
    train(model, dist, 1, comm)  # and the empty state did not get in the way of the first step
    assert len(everywhere(comm, digest(model))[0]) and len(set(everywhere(comm, digest(model)))) == 1


@pytest.mark.parametrize("shard_state", [None, False, True], ids=["plain", "replicated", "sharded"])
def test_broadcast_optimizer_state_after_steps(comm, shard_state):
    root = comm.size - 1
    model = make_model()
    opt = optim.Adam(model.parameters(), lr=0.01)
    for step in range(comm.rank + 1):  # a different history on every rank
        opt.zero_grad()
        x, y = full_batch(step + 10 * comm.rank)
        loss_on(model, x, y).backward()
        opt.step()
    target = opt if shard_state is None else DistributedOptimizer(opt, model.named_parameters(), comm=comm,
                                                                  shard_state=shard_state)
    root_state = broadcast_object(target.state_dict() if comm.rank == root or shard_state else None, root, comm)
    broadcast_optimizer_state(target, root_rank=root, comm=comm)
    mine = target.state_dict()
    assert state_difference(mine, root_state) == 0
    assert [s["step"] for s in mine["state"].values()] == [root + 1] * len(mine["state"])
    assert mine["param_groups"] == root_state["param_groups"]


def test_broadcast_and_allgather_objects(comm):
    value = {"rank": comm.rank, "data": [1.5, "x"]}
    for root in _roots(comm):
        assert broadcast_object(value, root_rank=root, comm=comm) == {"rank": root, "data": [1.5, "x"]}
    assert allgather_object((comm.rank, "r" * comm.rank), comm=comm) == [(r, "r" * r) for r in range(comm.size)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_allreduce(comm, dtype):
    base = np.arange(7, dtype=dtype)
    total = sum(base * (r + 1) for r in range(comm.size))
    a = base * (comm.rank + 1)
    assert allreduce(a, op=distributed.Sum, comm=comm) is a
    np.testing.assert_allclose(a, total)
    b = base * (comm.rank + 1)
    allreduce(b, comm=comm)  # Average is the default
    np.testing.assert_allclose(b, total / comm.size, rtol=1e-6)
    assert b.dtype == dtype
    t = lucid.Tensor(base * (comm.rank + 1))
    assert allreduce(t, op="sum", comm=comm) is t
    np.testing.assert_allclose(t.data, total)
    empty = np.zeros(0, dtype=dtype)
    allreduce(empty, comm=comm)
    ints = np.full(3, comm.rank + 1, dtype=np.int64)
    allreduce(ints, op=distributed.Sum, comm=comm)
    assert ints.tolist() == [comm.size * (comm.size + 1) // 2] * 3


@pytest.mark.parametrize("n, drop_last", [(24, False), (25, False), (25, True)])
def test_the_sampler_covers_the_dataset_once_per_epoch_across_ranks(comm, n, drop_last):
    sampler = DistributedSampler(range(n), num_replicas=comm.size, rank=comm.rank, seed=11, drop_last=drop_last)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        shares = everywhere(comm, list(sampler))
        assert len({len(s) for s in shares}) == 1 and len(shares[0]) == len(sampler)
        seen = [i for share in shares for i in share]
        if n % comm.size == 0:
            assert sorted(seen) == list(range(n))       # exactly once
        elif drop_last:
            assert len(seen) == len(set(seen)) == n - n % comm.size
        else:
            assert set(seen) == set(range(n)) and len(seen) == sampler.total_size  # padded
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # a new shuffle each epoch


def test_the_default_sampler_uses_the_world(comm):
    if comm.size > 1:
        distributed.init()  # the world fixture's ranks are COMM_WORLD's
    sampler = DistributedSampler(range(12))
    assert (sampler.num_replicas, sampler.rank) == (distributed.size(), distributed.rank())


def test_zero_grad_is_refused_while_reductions_are_in_flight(comm):
    model = make_model()
    dist = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), bucket_cap_mb=1e-4, comm=comm)
    x, y = full_batch(0)
    loss_on(model, my_share(x, comm), my_share(y, comm)).backward()
    if comm.size > 1:
        assert len(dist._requests) == len(dist._buckets) > 1  # launched during backward
        with pytest.raises(RuntimeError, match="race condition"):
            dist.zero_grad()
    dist.step()
    dist.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert len(set(everywhere(comm, digest(model)))) == 1
