"""shard_state=True (ZeRO): the same training as unsharded and as one process, 1/N of the state per rank,
full state dicts in and out, and the global gradient norm."""

import numpy as np
import pytest

import lucid
from lucid import nn, optim

from distributed import DistributedOptimizer
from mpi_helpers import (assert_continues_like, assert_identical_everywhere, assert_same_state_types,
                         clip_alongside, everywhere, full_batch, interrupted, make_model, max_difference,
                         my_share, state_difference, train, worst)

pytestmark = pytest.mark.timeout(60, method="thread")

TOLERANCE = 2e-5

CASES = {
    "adam": (optim.Adam, dict(lr=0.01)),
    "adamw": (optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    "sgd-nesterov": (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "rmsprop-centered": (optim.RMSprop, dict(lr=0.01, centered=True)),
    "adagrad": (optim.Adagrad, dict(lr=0.1)),
}


def wrapped(case, comm, shard_state, model=None, **kwargs):
    opt_class, opt_kwargs = CASES[case]
    model = model or make_model()
    dist = DistributedOptimizer(opt_class(model.parameters(), **opt_kwargs), model.named_parameters(),
                                bucket_cap_mb=1e-4, shard_state=shard_state, comm=comm, **kwargs)
    return model, dist


def single(case, model=None):
    opt_class, opt_kwargs = CASES[case]
    model = model or make_model()
    return model, opt_class(model.parameters(), **opt_kwargs)


@pytest.mark.parametrize("case", CASES)
def test_sharded_training_equals_unsharded_and_one_process(comm, case):
    sharded_model, sharded = wrapped(case, comm, True)
    plain_model, plain = wrapped(case, comm, False)
    ref_model, ref = single(case)
    for model, opt, c in ((sharded_model, sharded, comm), (plain_model, plain, comm), (ref_model, ref, None)):
        train(model, opt, 4, c)
    errors = (max_difference(sharded_model, ref_model), max_difference(sharded_model, plain_model),
              state_difference(sharded.state_dict(), ref.state_dict()))
    assert worst(comm, max(errors)) < TOLERANCE, everywhere(comm, errors)
    assert_identical_everywhere(comm, sharded_model)


@pytest.mark.parametrize("case", ["adam", "adagrad"])
def test_each_rank_holds_a_1_over_n_share_of_the_state(comm, case):
    sharded_model, sharded = wrapped(case, comm, True)
    ref_model, ref = single(case)
    train(sharded_model, sharded, 1, comm)
    train(ref_model, ref, 1)
    full = sum(a.nbytes for flats in ref._flat for f in flats for a in f.state.values())
    names = {name for flats in ref._flat for f in flats for name in f.state}
    itemsize = ref._flat[0][0].dtype.itemsize
    padding = len(names) * len(sharded._flats) * (comm.size - 1) * itemsize  # at most per state array
    mine = sharded.strategy.state_bytes()
    shares = everywhere(comm, mine)
    assert len(set(shares)) == 1, shares  # equal slices
    assert full / comm.size <= mine <= full / comm.size + padding, (mine, full, comm.size)
    assert sum(shares) - full <= padding
    assert not any(f.state for f in sharded._flats)  # no full-length state array is left anywhere


@pytest.mark.parametrize("case", ["adam", "sgd-nesterov", "rmsprop-centered"])
def test_state_dict_is_the_single_process_one(comm, case):
    sharded_model, sharded = wrapped(case, comm, True)
    ref_model, ref = single(case)
    train(sharded_model, sharded, 3, comm)
    train(ref_model, ref, 3)
    sd, ref_sd = sharded.state_dict(), ref.state_dict()
    assert sd["param_groups"] == ref_sd["param_groups"]
    assert worst(comm, state_difference(sd, ref_sd)) < TOLERANCE
    assert_same_state_types(sd, ref_sd)
    digests = everywhere(comm, repr(sorted((k, n, np.asarray(v).tobytes()) for k, e in sd["state"].items()
                                            for n, v in e.items())))
    assert len(set(digests)) == 1  # every rank gets the same full dict


@pytest.mark.parametrize("case", ["adam", "adagrad", "rmsprop-centered"])
def test_load_a_single_process_state_dict_and_continue(comm, case):
    ref_model, ref = single(case)
    checkpoint_params, checkpoint = interrupted(ref_model, ref)
    resumed_model = make_model(seed=5)  # different values: everything comes from the checkpoint
    for p, value in zip(resumed_model.parameters(), checkpoint_params):
        p.data[...] = value
    resumed_model, resumed = wrapped(case, comm, True, model=resumed_model)
    resumed.load_state_dict(checkpoint)
    assert worst(comm, state_difference(resumed.state_dict(), checkpoint)) == 0
    assert_continues_like(comm, resumed_model, resumed, ref_model, ref, TOLERANCE)


@pytest.mark.parametrize("shard_state", [True, False], ids=["sharded", "replicated"])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")], ids=["l2", "l1", "inf"])
def test_clip_grad_norm_equals_one_process(comm, shard_state, norm_type):
    model, dist = wrapped("adam", comm, shard_state)
    ref_model, ref = single("adam")
    max_norm = 0.05
    norms, ref_norms = clip_alongside(comm, model, dist, ref_model, ref, max_norm, norm_type)
    assert len(set(everywhere(comm, tuple(norms)))) == 1  # the same global norm on every rank
    assert worst(comm, float(np.max(np.abs(np.array(norms) - ref_norms) / np.array(ref_norms)))) < 1e-5
    assert min(ref_norms) > max_norm  # clipping really happened
    assert worst(comm, max_difference(model, ref_model)) < TOLERANCE
    assert_identical_everywhere(comm, model)


def test_a_buffer_smaller_than_the_world(comm):
    """A one-element group: at 2 or 3 ranks some ranks own nothing but padding of it."""
    def build():
        model = make_model()
        scale = nn.Parameter(np.ones(1, dtype=np.float32))
        return model, scale, [{"params": list(model.parameters())}, {"params": [scale], "lr": 0.1}]

    results = []
    for c, shard_state in ((comm, True), (None, None)):
        model, scale, groups = build()
        opt = optim.Adam(groups, lr=0.01)
        if shard_state:
            opt = DistributedOptimizer(opt, bucket_cap_mb=1e-4, shard_state=True, comm=c)
            assert opt._flats[-1].size == comm.size  # padded to one element per rank
        for step in range(3):
            x, y = full_batch(step)
            opt.zero_grad()
            out = model(lucid.Tensor(my_share(x, c))) * scale
            nn.functional.cross_entropy(out, lucid.Tensor(my_share(y, c))).backward()
            opt.step()
        results.append((model, scale, opt.state_dict()))
    (model, scale, sd), (ref_model, ref_scale, ref_sd) = results
    error = max(max_difference(model, ref_model), float(np.abs(scale.data - ref_scale.data).max()),
                state_difference(sd, ref_sd))
    assert worst(comm, error) < TOLERANCE
    assert_identical_everywhere(comm, model)
