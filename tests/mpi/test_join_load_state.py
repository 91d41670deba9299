"""load_state_dict() while a rank is inside join(): the joined rank cannot load the same state, so every rank that
calls it raises the same JoinedError (nothing is loaded anywhere) and training goes on in step."""

import pytest

from lucid import optim

from distributed import DistributedOptimizer, JoinedError, join
from mpi_helpers import assert_identical_everywhere, everywhere, make_model, state_difference, train, worst

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(60, method="thread")]

STRATEGIES = {  # name: (optimizer class, shard_state)
    "replicated": (optim.Adam, False),
    "element-sharded": (optim.Adam, True),
    "parameter-sharded": (optim.Adafactor, True),
}


@pytest.mark.parametrize("when", ["after a step", "at once"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_load_state_dict_while_a_rank_is_joined_raises_the_same_error_on_every_rank_that_calls_it(world, strategy,
                                                                                                  when):
    if strategy == "replicated" and when == "at once":
        pytest.skip("replicated state loads locally (Horovod's load on rank 0 alone): a rank knows of a join only "
                    "from a collective after it")
    opt_class, shard_state = STRATEGIES[strategy]
    model = make_model()
    dist = DistributedOptimizer(opt_class(model.parameters(), lr=0.01), model.named_parameters(),
                                bucket_cap_mb=1e-4, shard_state=shard_state, comm=world)
    train(model, dist, 2, world)
    saved = dist.state_dict()
    train(model, dist, 1, world, start=2)
    last = world.size - 1
    message = None
    if world.rank == last:
        join(comm=world)
    else:
        if when == "after a step":
            train(model, dist, 1, world, start=3)  # the joined rank shadows it
        try:
            dist.load_state_dict(saved)
        except JoinedError as error:
            message = str(error)
        join(comm=world)
    messages = everywhere(world, message)[:last]
    assert len(set(messages)) == 1 and messages[0] is not None, messages
    step = 4 if when == "after a step" else 3
    assert f"DistributedOptimizer.load_state_dict (step {step}) cannot run while ranks [{last}] have joined" \
        in messages[0], messages[0]
    assert_identical_everywhere(world, model)
    state = dist.state_dict()
    digests = everywhere(world, repr(sorted((k, n, str(v)) for k, e in state["state"].items() for n, v in e.items())))
    assert len(set(digests)) == 1  # the same state everywhere: nothing was loaded on any rank
    dist.load_state_dict(saved)  # once every rank has joined, loading is fine again
    assert worst(world, state_difference(dist.state_dict(), saved)) == 0
