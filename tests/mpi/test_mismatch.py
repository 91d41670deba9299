"""Calls that meet the wrong call: each collective's control message says what it is, so ranks making
different calls raise the same CollectiveMismatchError everywhere and exchange no data."""

import numpy as np
import pytest

import distributed
from distributed import CollectiveMismatchError, DistributedOptimizer, allreduce
from lucid import optim
from mpi_helpers import full_batch, loss_on, make_model, my_share

pytestmark = [pytest.mark.timeout(60, method="thread"), pytest.mark.mpi(min_size=2)]


def outcome_everywhere(world, action):
    """Run `action` on every rank; every rank's error text (or "ok"), gathered with raw MPI (the
    communicator under test refuses all use once it has seen a mismatch)."""
    try:
        action()
        text = "ok"
    except CollectiveMismatchError as error:
        text = str(error)
    return world.comm.allgather(text)


def test_the_same_sizes_but_different_calls(world):
    """Rank 0 all-reduces a metric named 'loss' where the others all-reduce 'accuracy': one float64 each."""
    value = np.array([float(world.rank)])
    texts = outcome_everywhere(world, lambda: allreduce(value, name="loss" if world.rank == 0 else "accuracy",
                                                        comm=world))
    assert len(set(texts)) == 1 and texts[0] != "ok", texts
    others = "rank 1" if world.size == 2 else f"ranks {list(range(1, world.size))}"
    assert "rank 0 calls allreduce of 1 float64 ('loss')" in texts[0]
    assert f"{others} call{'s' if world.size == 2 else ''} allreduce of 1 float64 ('accuracy')" in texts[0]
    assert value[0] == world.rank  # no data moved


def test_a_step_meeting_clip_grad_norm(world):
    """The last rank clips (sharded: one float64 all-reduce) while the others step (an all-gather)."""
    model = make_model()
    dist = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), model.named_parameters(), comm=world,
                                shard_state=True)
    x, y = full_batch(0)
    loss_on(model, my_share(x, world), my_share(y, world)).backward()

    def act():
        if world.rank == world.size - 1:
            dist.clip_grad_norm_(1.0)
        dist.step()
    texts = outcome_everywhere(world, act)
    assert len(set(texts)) == 1 and "('clip_grad_norm_', step 0)" in texts[0], texts
    assert f"rank {world.size - 1} calls allreduce of 1 float64" in texts[0]
    assert "allgather of" in texts[0] and "('parameters', step 0)" in texts[0]
    with pytest.raises(CollectiveMismatchError):  # the communicator stays unusable
        world.barrier()


@pytest.mark.parametrize("case", ["dtype", "count", "root", "op", "kind"])
def test_arrays_that_do_not_match(world, case):
    last = world.rank == world.size - 1
    buf = np.zeros(4 if case == "count" and last else 3, dtype=np.float32 if case == "dtype" and last else np.float64)

    def act():
        if case == "root":
            distributed.broadcast(buf, root_rank=1 if last else 0, comm=world)
        elif case == "op":
            allreduce(buf, op=distributed.Sum if last else distributed.Average, comm=world)
        elif case == "kind" and last:
            distributed.broadcast(buf, comm=world)
        else:
            allreduce(buf, comm=world)
    texts = outcome_everywhere(world, act)
    assert len(set(texts)) == 1 and texts[0].startswith("collective mismatch on a communicator of"), texts
