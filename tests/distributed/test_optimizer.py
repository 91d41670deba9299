"""DistributedOptimizer in one process: argument checks, exact equality with the bare optimizer on SelfComm,
synchronize / skip_synchronize / clip_grad_norm_ semantics, and (on a mirror world of identical ranks)
launch order, op=Sum and the zero_grad guard."""

import warnings

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.optim import lr_scheduler

import distributed
from distributed import Compression, DistributedOptimizer, SelfComm
from distributed.comm import Communicator, Request

OPTIMIZERS = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.01)),
    ("AdamW", dict(lr=0.01, amsgrad=True)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("Adagrad", dict(lr=0.1)),
    ("Rprop", dict(lr=0.01)),
    ("SparseAdam", dict(lr=0.01)),
    ("Adafactor", dict(lr=0.01, weight_decay=0.1)),  # a plain step: sharded by whole parameters
]


def model(seed=0):
    lucid.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def batch(step, n=8):
    rng = np.random.default_rng(100 + step)
    return lucid.Tensor(rng.standard_normal((n, 5)).astype(np.float32)), lucid.Tensor(rng.integers(0, 3, n))


def backward(m, step):
    x, y = batch(step)
    loss = nn.functional.cross_entropy(m(x), y)
    loss.backward()
    return loss


def params_of(m):
    return [p.data.copy() for p in m.parameters()]


class MirrorComm(Communicator):
    """A pretend world of `size` ranks that all hold exactly what this one holds.

    Reductions complete only when waited on (like MPI's non-blocking ones), so requests stay pending
    from backward until step/synchronize. Sum multiplies by the size; Average leaves values as they are.
    """

    def __init__(self, size=2):
        self.size = size
        self.launched = []  # the buffers reductions were started on, in order

    def iallreduce(self, buf, op=distributed.Sum, **options):
        self.launched.append(buf)

        def finish():
            if op is distributed.Sum:
                np.multiply(buf, buf.dtype.type(self.size), out=buf)
        return Request(None, finish)

    def allgather_object(self, obj, **options):
        return [obj] * self.size

    def allreduce_max(self, values, **options):
        return np.array(values, copy=True)

    def broadcast_object(self, obj, root=0, **options):
        return obj

    def barrier(self, **options):
        pass


# ---------------------------------------------------------------------------- construction errors

def test_rejects_what_is_not_a_lucid_optimizer():
    m = model()
    with pytest.raises(TypeError, match="wraps a lucid.optim.Optimizer, not list"):
        DistributedOptimizer(list(m.parameters()), comm=SelfComm())
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="not SGD"):
        DistributedOptimizer(torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1), comm=SelfComm())


def test_rejects_wrapping_twice():
    m = model()
    dist = DistributedOptimizer(optim.SGD(m.parameters(), lr=0.1), comm=SelfComm())
    with pytest.raises(TypeError, match="already a DistributedOptimizer"):
        DistributedOptimizer(dist, comm=SelfComm())


def test_named_parameters_must_cover_the_optimizer_and_be_unique():
    m = model()
    opt = optim.SGD(m.parameters(), lr=0.1)
    named = list(m.named_parameters())
    with pytest.raises(ValueError, match=r"not named \(optimizer parameters at positions \[3\]\)"):
        DistributedOptimizer(opt, named[:3], comm=SelfComm())
    with pytest.raises(ValueError, match="must be unique. Found duplicates: 0.weight"):
        DistributedOptimizer(opt, named + [("0.weight", nn.Parameter([1.0]))], comm=SelfComm())
    with pytest.raises(ValueError, match=r"sequence of \(name, parameter\) tuples"):
        DistributedOptimizer(opt, list(m.parameters()), comm=SelfComm())
    # extra names for parameters the optimizer does not train are fine
    extra = nn.Parameter([1.0])
    DistributedOptimizer(opt, named + [("extra", extra)], comm=SelfComm())


@pytest.mark.parametrize("passes", [0, -1, 1.5, "2", True, None])
def test_backward_passes_per_step_must_be_a_positive_int(passes):
    with pytest.raises(ValueError, match="backward_passes_per_step must be an integer >= 1"):
        DistributedOptimizer(optim.SGD(model().parameters(), lr=0.1), backward_passes_per_step=passes,
                             comm=SelfComm())


@pytest.mark.parametrize("op", ["max", None, 3])
def test_rejects_an_unknown_op(op):
    with pytest.raises(ValueError, match="unknown reduction op"):
        DistributedOptimizer(optim.SGD(model().parameters(), lr=0.1), op=op, comm=SelfComm())


@pytest.mark.parametrize("compression", ["gzip", None, np.float16])
def test_rejects_an_unknown_compression(compression):
    with pytest.raises(ValueError, match="unknown compression"):
        DistributedOptimizer(optim.SGD(model().parameters(), lr=0.1), compression=compression, comm=SelfComm())


@pytest.mark.parametrize("cap", [0, -1.0, float("nan")])
def test_bucket_cap_must_be_positive(cap):
    with pytest.raises(ValueError, match="bucket_cap_mb must be positive"):
        DistributedOptimizer(optim.SGD(model().parameters(), lr=0.1), bucket_cap_mb=cap, comm=SelfComm())


def test_sharding_refuses_lbfgs_and_says_why():
    with pytest.raises(ValueError, match="shard_state=True cannot shard LBFGS: its step is one direction over all "
                                         "parameters"):
        DistributedOptimizer(optim.LBFGS(model().parameters()), shard_state=True, comm=SelfComm())


def test_options_and_repr():
    m = model()
    dist = DistributedOptimizer(optim.Adam(m.parameters()), m.named_parameters(), op="sum",
                                compression=Compression.fp16, backward_passes_per_step=2, comm=SelfComm())
    assert dist.op is distributed.Sum and dist.compression is Compression.fp16
    assert repr(dist).startswith("DistributedOptimizer(Adam, ranks=1, op=SUM, compression=Compression.fp16")
    assert dist.param_groups is dist.optimizer.param_groups
    assert dist.state is dist.optimizer.state and dist.defaults is dist.optimizer.defaults


# ---------------------------------------------------------------------------- SelfComm == the bare optimizer

@pytest.mark.parametrize("shard_state", [False, True])
@pytest.mark.parametrize("name, kwargs", OPTIMIZERS, ids=[name for name, _ in OPTIMIZERS])
def test_on_self_comm_the_wrapper_is_the_bare_optimizer(name, kwargs, shard_state):
    bare_model, dist_model = model(), model()
    bare = getattr(optim, name)(bare_model.parameters(), **kwargs)
    dist = DistributedOptimizer(getattr(optim, name)(dist_model.parameters(), **kwargs),
                                dist_model.named_parameters(), bucket_cap_mb=0.0001,
                                shard_state=shard_state, comm=SelfComm())
    schedulers = [lr_scheduler.StepLR(bare, step_size=2, gamma=0.5),
                  lr_scheduler.StepLR(dist, step_size=2, gamma=0.5)]
    for step in range(5):
        for m, opt in ((bare_model, bare), (dist_model, dist)):
            opt.zero_grad()
            backward(m, step)
            opt.step()
        for s in schedulers:
            s.step()
    assert dist.param_groups[0]["lr"] == bare.param_groups[0]["lr"] == kwargs["lr"] * 0.25
    for a, b in zip(params_of(bare_model), params_of(dist_model)):
        np.testing.assert_array_equal(a, b)
    _assert_state_dicts_equal(dist.state_dict(), bare.state_dict())


def _assert_state_dicts_equal(a, b):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in b["state"]:
        assert a["state"][k].keys() == b["state"][k].keys()
        for name in b["state"][k]:
            np.testing.assert_array_equal(a["state"][k][name], b["state"][k][name], err_msg=f"{k}.{name}")


def test_step_returns_the_closures_loss_and_hooks_run():
    m = model()
    dist = DistributedOptimizer(optim.SGD(m.parameters(), lr=0.1), comm=SelfComm())
    calls = []
    dist.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    dist.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))

    def closure():
        dist.zero_grad()
        return backward(m, 0)
    loss = dist.step(closure)
    assert isinstance(loss, lucid.Tensor) and calls == ["pre", "post"]
    assert dist._step_count == 1


def test_add_param_group_replans():
    m = model()
    extra = nn.Parameter(np.ones(3, dtype=np.float32))
    dist = DistributedOptimizer(optim.SGD(m.parameters(), lr=0.1), m.named_parameters(), comm=SelfComm())
    dist.add_param_group({"params": [extra], "lr": 1.0})
    assert any(extra in b.params for b in dist._buckets)
    dist.zero_grad()
    (m(batch(0)[0]).sum() + (extra * extra).sum()).backward()
    dist.step()
    np.testing.assert_allclose(extra.data, -1.0)


# ---------------------------------------------------------------------------- synchronize and clipping

def test_synchronize_then_step_inside_skip_synchronize():
    bare_model, dist_model = model(), model()
    bare = optim.Adam(bare_model.parameters(), lr=0.01)
    dist = DistributedOptimizer(optim.Adam(dist_model.parameters(), lr=0.01), comm=SelfComm())
    for step in range(3):
        bare.zero_grad(), dist.zero_grad()
        backward(bare_model, step), backward(dist_model, step)
        bare.step()
        dist.synchronize()
        dist.synchronize()  # a second call is a no-op
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with dist.skip_synchronize():
                dist.step()
    for a, b in zip(params_of(bare_model), params_of(dist_model)):
        np.testing.assert_array_equal(a, b)


def test_step_after_synchronize_without_skip_warns_and_does_not_reduce_again():
    m = model()
    comm = MirrorComm()
    dist = DistributedOptimizer(optim.SGD(m.parameters(), lr=0.1), op=distributed.Sum, comm=comm)
    backward(m, 0)
    dist.synchronize()
    reduced = [p.grad.copy() for p in m.parameters()]
    before = params_of(m)
    with pytest.warns(UserWarning, match="without optimizer.skip_synchronize"):
        dist.step()
    for p, b, g in zip(m.parameters(), before, reduced):
        np.testing.assert_allclose(p.data, b - 0.1 * g, rtol=1e-6)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
@pytest.mark.parametrize("shard_state", [False, True])
def test_clip_grad_norm_equals_lucids(norm_type, shard_state):
    bare_model, dist_model = model(), model()
    dist = DistributedOptimizer(optim.SGD(dist_model.parameters(), lr=0.1), shard_state=shard_state,
                                comm=SelfComm())
    backward(bare_model, 0), backward(dist_model, 0)
    expected = nn.utils.clip_grad_norm_(bare_model.parameters(), 0.05, norm_type=norm_type)
    total = dist.clip_grad_norm_(0.05, norm_type=norm_type)
    assert isinstance(total, lucid.Tensor)
    np.testing.assert_allclose(float(total.item()), float(expected.item()), rtol=1e-6)
    for a, b in zip(bare_model.parameters(), dist_model.parameters()):
        np.testing.assert_allclose(b.grad, a.grad, rtol=1e-5, atol=1e-8)
    # a large max_norm leaves gradients alone
    before = [p.grad.copy() for p in dist_model.parameters()]
    dist.clip_grad_norm_(1e6, norm_type=norm_type)
    for p, g in zip(dist_model.parameters(), before):
        np.testing.assert_array_equal(p.grad, g)


# ---------------------------------------------------------------------------- a mirror world of two ranks

def test_buckets_launch_during_backward_last_parameters_first():
    m = model()
    comm = MirrorComm()
    dist = DistributedOptimizer(optim.SGD(m.parameters(), lr=0.1), m.named_parameters(), bucket_cap_mb=1e-5,
                                comm=comm)
    assert len(dist._buckets) == 4  # one parameter per bucket
    backward(m, 0)
    assert len(comm.launched) == 4 and len(dist._requests) == 4
    for buf, bucket in zip(comm.launched, dist._buckets):
        assert buf is not None and np.shares_memory(buf, bucket.flat.grad)
        assert buf.shape == bucket.grad.shape
    assert [b.params[0] for b in dist._buckets] == list(m.parameters())[::-1]
    dist.step()
    assert not dist._requests


def test_zero_grad_is_refused_while_reductions_are_pending():
    m = model()
    dist = DistributedOptimizer(optim.SGD(m.parameters(), lr=0.1), comm=MirrorComm())
    dist.zero_grad()  # nothing pending
    backward(m, 0)
    with pytest.raises(RuntimeError, match="before optimizer.step\\(\\) or optimizer.synchronize\\(\\)"):
        dist.zero_grad()
    dist.synchronize()
    with dist.skip_synchronize():
        dist.step()
    dist.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_backward_more_often_than_declared_is_an_error():
    m = model()
    dist = DistributedOptimizer(optim.SGD(m.parameters(), lr=0.1), comm=MirrorComm())
    backward(m, 0)
    with pytest.raises(RuntimeError, match="more than backward_passes_per_step times"):
        backward(m, 1)


@pytest.mark.parametrize("compression", [Compression.none, Compression.fp16], ids=["none", "fp16"])
def test_sum_multiplies_what_average_keeps(compression):
    avg_model, sum_model, bare_model = model(), model(), model()
    avg = DistributedOptimizer(optim.SGD(avg_model.parameters(), lr=0.1), comm=MirrorComm(3),
                               compression=compression)
    total = DistributedOptimizer(optim.SGD(sum_model.parameters(), lr=0.1), op=distributed.Sum,
                                 comm=MirrorComm(3), compression=compression)
    for m in (avg_model, sum_model, bare_model):
        backward(m, 0)
    avg.synchronize(), total.synchronize()
    tolerance = dict(rtol=1e-3, atol=1e-4) if compression is Compression.fp16 else dict(rtol=1e-6)
    for a, s, b in zip(avg_model.parameters(), sum_model.parameters(), bare_model.parameters()):
        np.testing.assert_allclose(a.grad, b.grad, **tolerance)
        np.testing.assert_allclose(s.grad, 3 * b.grad, **tolerance)


def test_accumulation_reduces_once_after_the_last_pass():
    m, bare_model = model(), model()
    comm = MirrorComm()
    dist = DistributedOptimizer(optim.SGD(m.parameters(), lr=0.1), backward_passes_per_step=2, comm=comm)
    backward(m, 0)
    assert comm.launched == []
    backward(m, 1)
    assert len(comm.launched) == len(dist._buckets)
    dist.step()
    backward(bare_model, 0), backward(bare_model, 1)
    for p, q in zip(m.parameters(), bare_model.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-6)


def test_clip_after_rebinding_data_reads_the_new_buffers():
    """A rebound `.data` makes the optimizer rebuild its flat buffers; the wrapper must follow on SelfComm."""
    bare_model, dist_model = model(), model()
    bare = optim.SGD(bare_model.parameters(), lr=0.1)
    dist = DistributedOptimizer(optim.SGD(dist_model.parameters(), lr=0.1), comm=SelfComm())
    for step in range(3):
        if step == 1:
            dist_model[0].weight.data = dist_model[0].weight.data.copy()
        for m, opt in ((bare_model, bare), (dist_model, dist)):
            opt.zero_grad()
            backward(m, step)
        expected = nn.utils.clip_grad_norm_(bare_model.parameters(), 0.1)
        np.testing.assert_allclose(float(dist.clip_grad_norm_(0.1).item()), float(expected.item()), rtol=1e-6)
        bare.step(), dist.step()
    for a, b in zip(params_of(bare_model), params_of(dist_model)):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    assert all(f.is_intact() for f in dist._flats)


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_lbfgs_gets_the_closure_and_equals_the_bare_optimizer(line_search):
    bare_model, dist_model = model(), model()
    kwargs = dict(lr=0.5, max_iter=4, line_search_fn=line_search)
    bare = optim.LBFGS(bare_model.parameters(), **kwargs)
    dist = DistributedOptimizer(optim.LBFGS(dist_model.parameters(), **kwargs), comm=SelfComm())
    for m, opt in ((bare_model, bare), (dist_model, dist)):
        def closure():
            opt.zero_grad()
            return backward(m, 0)
        for _ in range(2):
            opt.step(closure)
    for a, b in zip(params_of(bare_model), params_of(dist_model)):
        np.testing.assert_array_equal(a, b)
