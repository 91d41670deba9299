"""lucid.nn.utils: gradient clipping (by norm and by value) and parameters <-> one vector."""

import math

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.nn.utils import clip_grad_norm_, clip_grad_value_, get_total_norm, parameters_to_vector, vector_to_parameters


def _params_with_grads(*grads):
    params = []
    for g in grads:
        p = nn.Parameter(np.zeros(np.shape(g)))
        p.grad = np.array(g, dtype=np.float64)
        params.append(p)
    return params


def test_clip_grad_norm_scales_in_place_and_returns_the_total_norm():
    params = _params_with_grads([3.0, 0.0], [[4.0]])
    arrays = [p.grad for p in params]
    total = clip_grad_norm_(params, max_norm=1.0)
    assert isinstance(total, lucid.Tensor) and total.item() == pytest.approx(5.0)
    for p, a in zip(params, arrays):
        assert p.grad is a
    np.testing.assert_allclose(params[0].grad, [3 / (5 + 1e-6), 0.0])
    np.testing.assert_allclose(params[1].grad, [[4 / (5 + 1e-6)]])


def test_clip_grad_norm_leaves_small_gradients_and_skips_missing_ones():
    params = _params_with_grads([0.3, 0.4]) + [nn.Parameter([1.0])]
    assert clip_grad_norm_(iter(params), max_norm=1.0).item() == pytest.approx(0.5)
    np.testing.assert_allclose(params[0].grad, [0.3, 0.4])
    assert params[1].grad is None
    assert clip_grad_norm_([nn.Parameter([1.0])], 1.0).item() == 0.0


def test_other_norm_types():
    params = _params_with_grads([3.0, -4.0], [1.0])
    assert get_total_norm([p.grad for p in params], 1.0).item() == pytest.approx(8.0)
    assert get_total_norm([p.grad for p in params], float("inf")).item() == pytest.approx(4.0)
    assert clip_grad_norm_(params[0], 2.0, norm_type="inf").item() == pytest.approx(4.0)
    np.testing.assert_allclose(params[0].grad, [1.5, -2.0], rtol=1e-6)


def test_nonfinite_norm():
    params = _params_with_grads([np.nan, 1.0])
    assert math.isnan(clip_grad_norm_(params, 1.0).item())
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(_params_with_grads([np.inf]), 1.0, error_if_nonfinite=True)


def test_clip_grad_value_in_place():
    params = _params_with_grads([-3.0, 0.5, 2.0])
    array = params[0].grad
    clip_grad_value_(params, 1.0)
    assert params[0].grad is array
    np.testing.assert_array_equal(array, [-1.0, 0.5, 1.0])


def test_parameters_to_vector_and_back_in_place():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    arrays = [p.data for p in model.parameters()]
    vec = parameters_to_vector(model.parameters())
    assert vec.shape == (11,)
    np.testing.assert_array_equal(vec.data, np.concatenate([a.ravel() for a in arrays]))
    vector_to_parameters(vec * 2.0, model.parameters())
    for p, a in zip(model.parameters(), arrays):
        assert p.data is a
    np.testing.assert_allclose(parameters_to_vector(model.parameters()).data, 2 * vec.data)
    parameters_to_vector(model.parameters()).sum().backward()   # differentiable, like torch's
    assert all(np.all(p.grad == 1) for p in model.parameters())


def test_vector_to_parameters_errors():
    params = list(nn.Linear(2, 2).parameters())
    with pytest.raises(TypeError, match="expected torch.Tensor, but got: ndarray"):
        vector_to_parameters(np.zeros(6), params)
    with pytest.raises(ValueError, match="1-D vector of 6 elements"):
        vector_to_parameters(lucid.zeros(5), params)


@pytest.mark.torch
def test_clip_grad_norm_matches_torch(torch):
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((3, 4)) * 5, rng.standard_normal(7)]
    for norm_type in (2.0, 1.0, 3.0, float("inf")):
        ours = _params_with_grads(*grads)
        theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
        for t, g in zip(theirs, grads):
            t.grad = torch.tensor(g)
        total = clip_grad_norm_(ours, 1.5, norm_type)
        expected = torch.nn.utils.clip_grad_norm_(theirs, 1.5, norm_type)
        assert total.item() == pytest.approx(expected.item(), rel=1e-12)
        for p, t in zip(ours, theirs):
            np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 0.0, float("inf"), -float("inf")])
def test_clip_grad_norm_makes_no_temporary_of_the_whole_gradient(norm_type):
    import tracemalloc
    grad = np.random.default_rng(0).standard_normal(1 << 22).astype(np.float32)  # 16 MB
    p = nn.Parameter(np.zeros(grad.shape, np.float32))
    p.grad = grad
    # the norm of the per-tensor norms, as torch (for norm_type 0: how many tensors have a nonzero norm)
    expected = np.linalg.norm([np.linalg.norm(grad.astype(np.float64), ord=norm_type)], ord=norm_type)
    tracemalloc.start()
    try:
        total = clip_grad_norm_([p], max_norm=1e30, norm_type=norm_type)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < grad.nbytes / 8, f"{peak} bytes allocated for a {grad.nbytes}-byte gradient"
    assert total.dtype == np.float32
    assert total.item() == pytest.approx(expected, rel=1e-6)  # partial sums in float64


def test_norms_of_empty_gradients_are_zero():
    p = nn.Parameter(np.zeros(0, np.float32))
    p.grad = np.zeros(0, np.float32)
    for norm_type in (2.0, 1.0, float("inf")):
        assert clip_grad_norm_([p], 1.0, norm_type=norm_type).item() == 0.0
