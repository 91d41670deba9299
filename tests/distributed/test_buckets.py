"""Bucket plans over flat gradient buffers and the readiness tracking that orders their launches."""

import numpy as np
import pytest

from lucid import nn, optim
from lucid.optim._flat import FlatBuffer

import distributed
from distributed.buckets import Readiness, plan_buckets


def flat(*sizes, dtype=np.float32):
    return FlatBuffer([nn.Parameter(np.ones(n, dtype=dtype)) for n in sizes])


def spans(buckets):
    return [(b.first, b.last) for b in buckets]


def test_buckets_hold_whole_parameters_up_to_the_cap_last_parameters_first():
    f = flat(10, 10, 10, 10, 10)  # 40 bytes each
    buckets = plan_buckets([f], cap_bytes=80)
    assert spans(buckets) == [(3, 5), (1, 3), (0, 1)]
    assert [b.index for b in buckets] == [0, 1, 2]
    assert [b.nbytes for b in buckets] == [80, 80, 40]
    assert all(b.nbytes <= 80 for b in buckets)
    # a cap that is not a multiple of a parameter's size rounds down to whole parameters
    assert spans(plan_buckets([f], cap_bytes=119)) == [(3, 5), (1, 3), (0, 1)]
    assert spans(plan_buckets([f], cap_bytes=10 ** 9)) == [(0, 5)]


def test_a_parameter_bigger_than_the_cap_gets_a_bucket_of_its_own():
    f = flat(5, 100, 5, 5)
    buckets = plan_buckets([f], cap_bytes=40)
    assert spans(buckets) == [(2, 4), (1, 2), (0, 1)]
    assert buckets[1].nbytes == 400
    assert spans(plan_buckets([f], cap_bytes=1)) == [(3, 4), (2, 3), (1, 2), (0, 1)]


def test_buckets_are_views_of_the_flat_gradient_buffer_covering_it_once():
    f = flat(3, 7, 2, 9, 4)
    buckets = plan_buckets([f], cap_bytes=40)
    covered = sorted((b.start, b.stop) for b in buckets)
    assert covered[0][0] == 0 and covered[-1][1] == f.numel
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
    for b in buckets:
        assert np.shares_memory(b.grad, f.grad)
        assert b.grad.size == sum(p.data.size for p in b.params)
        b.grad[...] = b.index + 1
    for b in buckets:  # writing a bucket writes its parameters' gradient views
        for i in range(b.first, b.last):
            assert (f.view(f.grad, i) == b.index + 1).all()


def test_buckets_never_span_flat_buffers():
    f32, f64 = flat(4, 4), flat(4, 4, dtype=np.float64)
    buckets = plan_buckets([f32, f64], cap_bytes=10 ** 6)
    assert [b.flat for b in buckets] == [f64, f32]  # last registered buffer first
    assert spans(buckets) == [(0, 2), (0, 2)]


def test_distributed_optimizer_plans_per_group_and_per_dtype():
    a = nn.Parameter(np.ones(4, dtype=np.float32))
    b = nn.Parameter(np.ones(4, dtype=np.float64))
    c = nn.Parameter(np.ones(4, dtype=np.float32))
    d = nn.Parameter(np.ones(4, dtype=np.float32))
    opt = optim.SGD([{"params": [a, b, c]}, {"params": [d], "lr": 0.5}], lr=0.1)
    dist = distributed.DistributedOptimizer(opt, bucket_cap_mb=1.0, comm=distributed.SelfComm())
    kinds = [(b.flat.dtype, tuple(id(p) for p in b.params)) for b in dist._buckets]
    assert kinds == [(np.float32, (id(d),)), (np.float64, (id(b),)), (np.float32, (id(a), id(c)))]
    for bucket in dist._buckets:
        assert len({p.dtype for p in bucket.params}) == 1


def test_plan_rejects_a_cap_that_is_not_positive():
    with pytest.raises(ValueError, match="positive"):
        plan_buckets([flat(3)], cap_bytes=0)


def test_readiness_launches_in_bucket_order_only():
    f = flat(1, 1, 1, 1)
    buckets = plan_buckets([f], cap_bytes=8)  # [(2, 4), (0, 2)]
    ready = Readiness(buckets, passes=1)
    p = f.params
    assert list(ready.mark(p[0])) == []          # bucket 1 is incomplete
    assert list(ready.mark(p[1])) == []          # bucket 1 complete, but bucket 0 has not launched
    assert list(ready.mark(p[3])) == []
    assert list(ready.mark(p[2])) == [0, 1]      # bucket 0 completes: both launch, in order
    assert list(ready.remaining()) == []
    assert ready.any_gradient
    ready.reset()
    assert not ready.any_gradient
    assert list(ready.mark(p[2])) == [] and list(ready.mark(p[3])) == [0]
    assert list(ready.remaining()) == [1]        # synchronize launches what is left, complete or not


def test_readiness_counts_accumulated_passes_and_refuses_one_too_many():
    f = flat(1, 1)
    buckets = plan_buckets([f], cap_bytes=100)
    ready = Readiness(buckets, passes=2)
    for p in f.params:
        assert list(ready.mark(p)) == []
    assert list(ready.mark(f.params[0])) == []
    assert list(ready.mark(f.params[1])) == [0]
    with pytest.raises(RuntimeError, match="more than backward_passes_per_step"):
        ready.mark(f.params[0])
    once = Readiness(buckets, passes=1)
    once.mark(f.params[0])
    with pytest.raises(RuntimeError, match="Increase backward_passes_per_step"):
        once.mark(f.params[0])
