"""N ranks, each training on its share of every batch, equal one process training on the full batches."""

import warnings

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.optim import lr_scheduler

import distributed
from distributed import Compression, DistributedOptimizer
from mpi_helpers import (assert_identical_everywhere, full_batch, loss_on, make_model, max_difference, my_share,
                         train, worst)

pytestmark = pytest.mark.timeout(60, method="thread")  # a hang kills the rank, and mpiexec ends the job

TOLERANCE = 2e-5  # float32 sums in another order, over a few steps

CASES = {
    "sgd-momentum": (optim.SGD, dict(lr=0.1, momentum=0.9)),
    "adam": (optim.Adam, dict(lr=0.01)),
    "sparse-adam": (optim.SparseAdam, dict(lr=0.01)),  # not elementwise: the wrapper's own flat buffers
}
SHARDING = pytest.mark.parametrize("shard_state", [False, True], ids=["replicated", "sharded"])


def parity(comm, opt_class, kwargs, steps=4, dist_kwargs=None, scheduler=None, **train_kwargs):
    """(max |distributed - single process| over the parameters, the distributed model, its optimizer)."""
    ref_model, model = make_model(), make_model()
    ref = opt_class(ref_model.parameters(), **kwargs)
    dist = DistributedOptimizer(opt_class(model.parameters(), **kwargs), model.named_parameters(),
                                bucket_cap_mb=1e-4, comm=comm, **(dist_kwargs or {}))
    schedulers = (scheduler(ref), scheduler(dist)) if scheduler else (None, None)
    train(ref_model, ref, steps, scheduler=schedulers[0], **train_kwargs)
    train(model, dist, steps, comm, scheduler=schedulers[1], **train_kwargs)
    return max_difference(model, ref_model), model, dist


@pytest.mark.parametrize("case", CASES)
def test_equals_full_batch_training(comm, case):
    opt_class, kwargs = CASES[case]
    error, model, dist = parity(comm, opt_class, kwargs)
    assert len(dist._buckets) > 1
    assert worst(comm, error) < TOLERANCE
    assert_identical_everywhere(comm, model)


@SHARDING
@pytest.mark.parametrize("case", ["sgd-momentum", "adam"])
def test_accumulating_backward_passes_equals_full_batch_training(comm, case, shard_state):
    opt_class, kwargs = CASES[case]
    error, model, _ = parity(comm, opt_class, kwargs, passes=3,
                             dist_kwargs=dict(backward_passes_per_step=3, shard_state=shard_state))
    assert worst(comm, error) < TOLERANCE
    assert_identical_everywhere(comm, model)


@SHARDING
def test_a_scheduler_drives_the_wrapped_groups(comm, shard_state):
    def scheduler(opt):
        return lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=5)
    error, model, dist = parity(comm, optim.SGD, dict(lr=0.01, momentum=0.9), steps=5, scheduler=scheduler,
                                dist_kwargs=dict(shard_state=shard_state))
    assert worst(comm, error) < TOLERANCE
    assert dist.param_groups[0]["lr"] < 0.01  # the schedule annealed it
    assert_identical_everywhere(comm, model)


@SHARDING
def test_fp16_compression_within_its_tolerance(comm, shard_state):
    error, model, dist = parity(comm, optim.SGD, dict(lr=0.1, momentum=0.9),
                                dist_kwargs=dict(compression=Compression.fp16, shard_state=shard_state))
    assert worst(comm, error) < 2e-3
    assert_identical_everywhere(comm, model)
    if comm.size > 1:  # one process sends nothing, so nothing is rounded
        assert worst(comm, error) > 0
        # after a reduction the gradients are exactly float16 values
        dist.zero_grad()
        x, y = full_batch(9)
        loss_on(model, my_share(x, comm), my_share(y, comm)).backward()
        dist.synchronize()
        for flat in dist._flats:  # (sharded: this rank's slice is the reduced part)
            low, high = (flat.storage.span if shard_state else (0, flat.numel))
            grad = flat.grad[low:min(high, flat.numel)]
            np.testing.assert_array_equal(grad.astype(np.float16).astype(grad.dtype), grad)


@SHARDING
@pytest.mark.parametrize("op, reduction", [(distributed.Sum, "sum"), (distributed.Average, "mean")],
                         ids=["sum", "average"])
def test_op_sum_and_average(comm, op, reduction, shard_state):
    # local sum-losses summed across ranks are the full batch's sum-loss; local means averaged, its mean
    error, model, _ = parity(comm, optim.SGD, dict(lr=0.01), dist_kwargs=dict(op=op, shard_state=shard_state),
                             reduction=reduction)
    assert worst(comm, error) < TOLERANCE * (10 if reduction == "sum" else 1)
    assert_identical_everywhere(comm, model)


def test_sum_is_size_times_average(comm):
    grads = {}
    for op in (distributed.Sum, distributed.Average):
        model = make_model()
        dist = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), op=op, comm=comm)
        x, y = full_batch(0)
        loss_on(model, my_share(x, comm), my_share(y, comm)).backward()
        dist.synchronize()
        grads[op] = [p.grad.copy() for p in model.parameters()]
    error = max(float(np.abs(s - comm.size * a).max()) for s, a in zip(grads[distributed.Sum],
                                                                       grads[distributed.Average]))
    assert worst(comm, error) < 1e-6


@SHARDING
def test_groups_and_dtypes_each_get_their_own_buffers(comm, shard_state):
    """Two groups with their own lr, and a float64 parameter beside float32 ones: several flat buffers."""
    def build():
        model = make_model()
        lucid.manual_seed(9)
        scale = nn.Parameter(np.ones(3, dtype=np.float64))
        params = list(model.parameters())
        groups = [{"params": params[:2] + [scale]}, {"params": params[2:], "lr": 0.003}]
        return model, scale, groups

    def run(model, scale, opt, c):
        for step in range(3):
            x, y = full_batch(step)
            opt.zero_grad()
            out = model(lucid.Tensor(my_share(x, c))) * scale
            nn.functional.cross_entropy(out, lucid.Tensor(my_share(y, c))).backward()
            opt.step()

    model, scale, groups = build()
    dist = DistributedOptimizer(optim.Adam(groups, lr=0.01), bucket_cap_mb=1e-4, shard_state=shard_state,
                                comm=comm)
    assert len(dist._flats) == 3 and {f.dtype.name for f in dist._flats} == {"float32", "float64"}
    ref_model, ref_scale, ref_groups = build()
    ref = optim.Adam(ref_groups, lr=0.01)
    run(model, scale, dist, comm)
    run(ref_model, ref_scale, ref, None)
    error = max(max_difference(model, ref_model), float(np.abs(scale.data - ref_scale.data).max()))
    assert worst(comm, error) < TOLERANCE
    assert_identical_everywhere(comm, model)


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_lbfgs_evaluates_reduced_closures(comm, line_search):
    """LBFGS calls the closure itself, many times: every evaluation is reduced, the loss averaged."""
    ref_model, model = make_model(), make_model()
    kwargs = dict(lr=0.5, max_iter=5, history_size=4, line_search_fn=line_search)
    ref = optim.LBFGS(ref_model.parameters(), **kwargs)
    dist = DistributedOptimizer(optim.LBFGS(model.parameters(), **kwargs), bucket_cap_mb=1e-4, comm=comm)
    x, y = full_batch(0)
    losses = []
    for m, opt, c in ((ref_model, ref, None), (model, dist, comm)):
        def closure():
            opt.zero_grad()
            loss = loss_on(m, my_share(x, c), my_share(y, c))
            loss.backward()
            return loss
        losses.append([float(opt.step(closure).item()) for _ in range(3)])
    assert worst(comm, float(np.abs(np.subtract(*losses)).max())) < 1e-5
    assert losses[1][-1] < losses[1][0]
    assert worst(comm, max_difference(model, ref_model)) < 1e-4
    assert_identical_everywhere(comm, model)


def test_step_with_a_closure(comm):
    ref_model, model = make_model(), make_model()
    ref = optim.Adam(ref_model.parameters(), lr=0.01)
    dist = DistributedOptimizer(optim.Adam(model.parameters(), lr=0.01), comm=comm)
    x, y = full_batch(0)
    for m, opt, c in ((ref_model, ref, None), (model, dist, comm)):
        def closure():
            opt.zero_grad()
            loss = loss_on(m, my_share(x, c), my_share(y, c))
            loss.backward()
            return loss
        for _ in range(2):
            assert isinstance(opt.step(closure), lucid.Tensor)
    assert worst(comm, max_difference(model, ref_model)) < TOLERANCE
    assert_identical_everywhere(comm, model)


def test_synchronize_clip_then_step_inside_skip_synchronize(comm):
    """Horovod's pattern for working on the reduced gradients before the step."""
    ref_model, model = make_model(), make_model()
    ref = optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9)
    dist = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1, momentum=0.9), bucket_cap_mb=1e-4,
                                comm=comm)
    for step in range(3):
        x, y = full_batch(step)
        ref.zero_grad(), dist.zero_grad()
        loss_on(ref_model, x, y).backward()
        loss_on(model, my_share(x, comm), my_share(y, comm)).backward()
        nn.utils.clip_grad_norm_(ref_model.parameters(), 0.1)
        dist.synchronize()
        nn.utils.clip_grad_norm_(model.parameters(), 0.1)  # on the reduced gradients: the same everywhere
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with dist.skip_synchronize():
                dist.step()
        ref.step()
    assert worst(comm, max_difference(model, ref_model)) < TOLERANCE
    assert_identical_everywhere(comm, model)


@pytest.mark.mpi(min_size=2)
def test_init_under_mpi_is_the_world(world):
    comm = distributed.init()
    from mpi4py import MPI
    assert isinstance(comm, distributed.MPIComm)
    assert (comm.rank, comm.size) == (MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size())
    assert distributed.size() == world.size and distributed.rank() == world.rank
    assert 1 <= distributed.local_size() <= world.size and 0 <= distributed.local_rank() < distributed.local_size()
    distributed.barrier()
