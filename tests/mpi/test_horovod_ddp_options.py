"""What Horovod, DDP and torch ZeRO users reach for: no_sync() (equal to backward_passes_per_step and to
one process accumulating the micro-batches), gradient_predivide_factor (Horovod's validation; the
plain average's result), and consolidate_state_dict(to) (then state_dict() on that rank alone)."""

import numpy as np
import pytest

from lucid import optim

import distributed
from distributed import Compression, DistributedOptimizer
from mpi_helpers import (assert_identical_everywhere, everywhere, full_batch, loss_on, make_model, max_difference,
                         my_share, state_difference, train, worst)

pytestmark = pytest.mark.timeout(60, method="thread")

TOLERANCE = 2e-5
SHARDING = pytest.mark.parametrize("shard_state", [False, True], ids=["replicated", "sharded"])
PASSES = 3


def wrapped(comm, model, **options):
    return DistributedOptimizer(optim.Adam(model.parameters(), lr=0.01), model.named_parameters(),
                                bucket_cap_mb=1e-4, comm=comm, **options)


def train_with_no_sync(model, dist, steps, comm):
    for step in range(steps):
        dist.zero_grad()
        for micro in range(PASSES):
            x, y = full_batch(step, micro)
            loss = loss_on(model, my_share(x, comm), my_share(y, comm)) * (1.0 / PASSES)
            if micro < PASSES - 1:
                with dist.no_sync():
                    loss.backward()
                    assert not dist._requests  # nothing launched inside no_sync()
            else:
                loss.backward()
        dist.step()


@SHARDING
def test_no_sync_equals_backward_passes_per_step_and_one_process(comm, shard_state):
    ref_model, counted_model, model = make_model(), make_model(), make_model()
    ref = optim.Adam(ref_model.parameters(), lr=0.01)
    train(ref_model, ref, 3, passes=PASSES)
    train(counted_model, wrapped(comm, counted_model, backward_passes_per_step=PASSES, shard_state=shard_state), 3,
          comm, passes=PASSES)
    dist = wrapped(comm, model, shard_state=shard_state)
    train_with_no_sync(model, dist, 3, comm)
    assert worst(comm, max_difference(model, ref_model)) < TOLERANCE
    assert worst(comm, max_difference(model, counted_model)) < TOLERANCE
    assert worst(comm, state_difference(dist.state_dict(), ref.state_dict())) < TOLERANCE
    assert_identical_everywhere(comm, model)


@SHARDING
@pytest.mark.parametrize("compression", [Compression.none, Compression.fp16], ids=["none", "fp16"])
def test_gradient_predivide_factor_gives_the_average(comm, shard_state, compression):
    ref_model, model = make_model(), make_model()
    ref = optim.Adam(ref_model.parameters(), lr=0.01)
    train(ref_model, ref, 3)
    dist = wrapped(comm, model, shard_state=shard_state, compression=compression,
                   gradient_predivide_factor=float(comm.size) * 1.5)
    train(model, dist, 3, comm)
    tolerance = 2e-3 if compression is Compression.fp16 else TOLERANCE
    assert worst(comm, max_difference(model, ref_model)) < tolerance
    assert_identical_everywhere(comm, model)


def test_gradient_predivide_factor_divides_before_the_sum(comm):
    """Horovod's split: gradients * (1 / f) summed, then * (f / size) (seen with op=Average on equal data)."""
    model, twin = make_model(), make_model()
    dist = wrapped(comm, model, gradient_predivide_factor=4.0)
    assert dist.scale_factors() == (0.25, 4.0)
    x, y = full_batch(0)
    loss_on(twin, x, y).backward()
    expected = [p.grad.copy() for p in twin.parameters()]
    loss_on(model, x, y).backward()  # every rank the same gradient: the average is that gradient
    dist.synchronize()
    for p, e in zip(model.parameters(), expected):
        np.testing.assert_allclose(p.grad, e, rtol=1e-6)


@pytest.mark.parametrize("factor, op, message", [
    (2.0, distributed.Sum, "gradient_predivide_factor not supported with op != Average"),
    (0.0, distributed.Average, "must be a positive number"),
    (-1.0, distributed.Average, "must be a positive number"),
    (float("nan"), distributed.Average, "must be a positive number"),
    ("2", distributed.Average, "must be a positive number")])
def test_gradient_predivide_factor_validation(factor, op, message):
    model = make_model()
    with pytest.raises(ValueError, match=message):
        DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), op=op, gradient_predivide_factor=factor,
                             comm=distributed.SelfComm())
    DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), op=distributed.Sum,  # 1.0 is always fine
                         gradient_predivide_factor=1.0, comm=distributed.SelfComm())


@SHARDING
def test_consolidate_state_dict_then_state_dict_on_that_rank_alone(comm, shard_state):
    ref_model, model = make_model(), make_model()
    ref = optim.Adam(ref_model.parameters(), lr=0.01)
    dist = wrapped(comm, model, shard_state=shard_state)
    train(ref_model, ref, 2)
    train(model, dist, 2, comm)
    to = comm.size - 1
    dist.consolidate_state_dict(to=to)
    if comm.rank == to:  # no other rank takes part: a collective here would be a mismatch or a stall
        saved = dist.state_dict()
        assert state_difference(saved, ref.state_dict()) < TOLERANCE
        assert saved["param_groups"] == ref.state_dict()["param_groups"]
    comm.barrier()
    train(model, dist, 1, comm, start=2)  # a step: the consolidated copy is stale and dropped
    train(ref_model, ref, 1, start=2)
    assert worst(comm, state_difference(dist.state_dict(), ref.state_dict())) < TOLERANCE  # every rank again
    with pytest.raises(ValueError, match=f"rank {comm.size} is out of range"):
        dist.consolidate_state_dict(to=comm.size)
    assert everywhere(comm, "done") == ["done"] * comm.size
