"""distributed.join() with uneven inputs: rank r has 2 + r batches; the ranks that run out join and shadow
the others' steps, so every rank ends with the parameters and optimizer state of one process that
applies, at each step, the gradients averaged over the ranks that still had a batch."""

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.optim import lr_scheduler

import distributed
from distributed import DistributedOptimizer, JoinedError, allgather, allreduce, broadcast, join
from mpi_helpers import assert_identical_everywhere, everywhere, make_model, max_difference, state_difference, worst

pytestmark = pytest.mark.timeout(60, method="thread")

TOLERANCE = 2e-5
CASES = {"sgd-momentum": (optim.SGD, dict(lr=0.1, momentum=0.9)), "adam": (optim.Adam, dict(lr=0.01)),
         "adafactor": (optim.Adafactor, dict(lr=0.05))}  # plain step: sharded by whole parameters
SHARDING = pytest.mark.parametrize("shard_state", [False, True], ids=["replicated", "sharded"])


def batches_of(rank):
    return 2 + rank


def local_batch(step, rank):
    rng = np.random.default_rng(1000 * step + 10 * rank + 7)
    return lucid.Tensor(rng.standard_normal((4, 5)).astype(np.float32)), lucid.Tensor(rng.integers(0, 3, 4))


def local_loss(model, step, rank):
    x, y = local_batch(step, rank)
    return nn.functional.cross_entropy(model(x), y)


def reference(opt_class, kwargs, size, clip=None, schedule=False):
    """One process: at each step the mean of the gradients of the ranks that had a batch, then the step."""
    model = make_model()
    opt = opt_class(model.parameters(), **kwargs)
    scheduler = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5) if schedule else None
    for step in range(batches_of(size - 1)):
        ranks = [r for r in range(size) if step < batches_of(r)]
        total = [np.zeros_like(p.data) for p in model.parameters()]
        for rank in ranks:
            opt.zero_grad()
            local_loss(model, step, rank).backward()
            for t, p in zip(total, model.parameters()):
                t += p.grad
        for t, p in zip(total, model.parameters()):
            p.grad[...] = t / len(ranks)
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return model, opt


def train_then_join(comm, opt_class, kwargs, clip=None, schedule=False, **options):
    model = make_model()
    dist = DistributedOptimizer(opt_class(model.parameters(), **kwargs), model.named_parameters(),
                                bucket_cap_mb=1e-4, comm=comm, **options)
    scheduler = lr_scheduler.StepLR(dist, step_size=1, gamma=0.5) if schedule else None
    for step in range(batches_of(comm.rank)):
        dist.zero_grad()
        local_loss(model, step, comm.rank).backward()
        if clip is not None:
            dist.clip_grad_norm_(clip)
        dist.step()
        if scheduler is not None:
            scheduler.step()
    return model, dist, join(comm=comm)


@pytest.mark.parametrize("case", sorted(CASES))
@SHARDING
def test_join_equals_one_process_averaging_the_ranks_that_had_a_batch(comm, case, shard_state):
    opt_class, kwargs = CASES[case]
    model, dist, last = train_then_join(comm, opt_class, kwargs, shard_state=shard_state)
    ref_model, ref = reference(opt_class, kwargs, comm.size)
    assert last == comm.size - 1  # the rank with the most batches joined last
    assert worst(comm, max_difference(model, ref_model)) < TOLERANCE
    assert_identical_everywhere(comm, model)
    assert worst(comm, state_difference(dist.state_dict(), ref.state_dict())) < TOLERANCE
    if case == "adam":
        assert dist.state_dict()["state"][0]["step"] == batches_of(comm.size - 1)


@SHARDING
def test_joined_ranks_follow_clipping_and_the_learning_rate_schedule(comm, shard_state):
    model, dist, _ = train_then_join(comm, optim.SGD, dict(lr=0.2, momentum=0.9), clip=0.05, schedule=True,
                                     shard_state=shard_state)
    ref_model, ref = reference(optim.SGD, dict(lr=0.2, momentum=0.9), comm.size, clip=0.05, schedule=True)
    assert worst(comm, max_difference(model, ref_model)) < TOLERANCE
    assert_identical_everywhere(comm, model)
    # the joined ranks' groups take the last rank's options when all have joined (its scheduler stepped last)
    assert everywhere(comm, dist.param_groups[0]["lr"]) == [0.2 * 0.5 ** batches_of(comm.size - 1)] * comm.size


def test_joined_ranks_add_zeros_to_metrics_and_no_rows_to_gathers(comm):
    last_rank = comm.size - 1
    if comm.rank == last_rank:
        assert join(comm=comm) == max(last_rank - 1, 0)
        return
    active = comm.size - 1
    assert allreduce(float(comm.rank + 1), comm=comm) == pytest.approx(sum(range(1, active + 1)) / active)
    assert allreduce(2.0, op=distributed.Sum, name="count", comm=comm) == 2.0 * active
    rows = allgather(np.full((comm.rank + 1, 2), comm.rank, dtype=np.int32), comm=comm)
    assert rows[:, 0].tolist() == [r for r in range(active) for _ in range(r + 1)]
    comm.barrier()
    with pytest.raises(JoinedError, match=f"cannot run while ranks \\[{last_rank}\\] have joined"):
        broadcast(np.zeros(3), root_rank=0, comm=comm)
    assert allreduce(1.0, comm=comm) == 1.0  # the communicator goes on after a refusal
    assert join(comm=comm) == last_rank - 1  # the ranks that joined together: the highest counts as last


@pytest.mark.mpi(min_size=2)
def test_a_sync_batchnorm_forward_and_backward_under_join(world):
    """A joined rank contributes an empty batch to SyncBatchNorm's statistics and gradient sums."""
    lucid.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), distributed.SyncBatchNorm(4, process_group=world), nn.Linear(4, 2))
    dist = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), model.named_parameters(), comm=world)
    x = lucid.Tensor(np.random.default_rng(world.rank).standard_normal((6, 3)).astype(np.float32))
    for _ in range(2 if world.rank == 0 else 1):
        dist.zero_grad()
        model(x).sum().backward()
        dist.step()
    join(comm=world)
    assert_identical_everywhere(world, model)
    means = world.allgather_object(model[1].running_mean.data.tolist())
    assert all(m == means[0] for m in means)


@pytest.mark.mpi(min_size=2)
def test_join_with_gradients_not_yet_stepped_is_an_error(world):
    comm = world
    model = make_model()
    dist = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), model.named_parameters(), comm=comm)
    local_loss(model, 0, comm.rank).backward()
    with pytest.raises(RuntimeError, match="call step\\(\\) \\(or zero_grad\\(\\)\\) first"):
        join(comm=comm)
    dist.step()
    assert join(comm=comm) == comm.size - 1
