"""lucid.set_num_threads / get_num_threads and the per-rank share that distributed.init() applies."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import lucid
from lucid import _threads, optim
from lucid.optim import set_kernel_threads


@pytest.fixture
def restored(monkeypatch):
    """Thread counts as they were before the test (they are process-wide)."""
    for variable in {v for names in _threads.POOL_VARIABLES.values() for v in names}:
        monkeypatch.delenv(variable, raising=False)
    before = {pool["user_api"]: pool["num_threads"] for pool in threadpool_info()}
    monkeypatch.setattr(_threads, "_explicit", None)
    monkeypatch.setattr(_threads, "_shared", None)
    yield
    for api, threads in before.items():
        threadpool_limits(limits=threads, user_api=api)
    set_kernel_threads(None)


def blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def kernel_threads_used():
    """The threads numba ran a large compiled Adam step with."""
    import numba
    p = lucid.nn.Parameter(np.zeros(600_000, dtype=np.float32))
    p.grad = np.ones_like(p.data)
    optim.Adam([p], fused=True).step()
    return numba.get_num_threads()


def test_set_num_threads_sets_blas_openmp_and_the_compiled_step(restored):
    lucid.set_num_threads(1)
    assert lucid.get_num_threads() == 1
    assert blas_threads() and set(blas_threads()) == {1}
    assert kernel_threads_used() == 1
    assert _threads.user_choices() == {pool: "lucid.set_num_threads(1)" for pool in _threads.POOL_VARIABLES}


def test_get_num_threads_defaults_to_the_blas_pool(restored):
    threadpool_limits(limits=1, user_api="blas")
    assert lucid.get_num_threads() == 1


@pytest.mark.parametrize("bad, error, message", [(0, RuntimeError, "expects a positive integer"),
                                                 (-2, RuntimeError, "expects a positive integer"),
                                                 ("2", TypeError, "must be int, not str"),
                                                 (True, TypeError, "must be int, not bool")])
def test_set_num_threads_rejects(restored, bad, error, message):
    with pytest.raises(error, match=message):
        lucid.set_num_threads(bad)


def test_share_cores_limits_only_the_pools_the_user_left_alone(restored, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    chosen = _threads.share_cores(1)
    assert chosen == {"blas": "kept (OMP_NUM_THREADS=2)", "openmp": "kept (OMP_NUM_THREADS=2)",
                      "kernels": "1 threads"}
    assert kernel_threads_used() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "2")
    chosen = _threads.share_cores(1)
    assert chosen["blas"] == "1 threads" and chosen["kernels"] == "kept (NUMBA_NUM_THREADS=2)"
    assert set(blas_threads()) == {1} and lucid.get_num_threads() == 1


def test_an_explicit_call_wins_over_the_share(restored):
    lucid.set_num_threads(2)
    assert set(_threads.share_cores(1).values()) == {"kept (lucid.set_num_threads(2))"}
    assert set(blas_threads()) == {2} and lucid.get_num_threads() == 2
