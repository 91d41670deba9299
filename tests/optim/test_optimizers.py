"""Generic checks that every optimizer configuration in the table (conftest.CONFIGS) must pass."""

import numpy as np

import lucid
from lucid import nn, optim
from lucid.optim.elementwise import CpuBackend, use_cpu_backend

SHAPES = [(3, 4), (5,), (2, 3, 2), (1,)]


def make_params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]


def gradients(step, dtype=np.float64, seed=1):
    """A deterministic gradient per parameter for `step`, with some exact zeros (for SparseAdam)."""
    rng = np.random.default_rng([seed, step])
    grads = []
    for s in SHAPES:
        g = rng.standard_normal(s) * (rng.random(s) > 0.2)
        grads.append(g.astype(dtype))
    return grads


def run(cls, kwargs, steps, dtype=np.float64, skip=None, params=None, start=0, opt=None):
    """Step an optimizer with the deterministic gradients; `skip(step, i)` leaves grad i unset."""
    params = params if params is not None else make_params(dtype)
    opt = opt if opt is not None else cls(params, **kwargs)
    for t in range(start, start + steps):
        opt.zero_grad()
        for i, (p, g) in enumerate(zip(params, gradients(t, dtype))):
            if skip is None or not skip(t, i):
                p.grad = g
        opt.step()
    return params, opt


def every_other(t, i):
    return i == 1 and t % 2 == 0


def test_fused_equals_per_parameter_float64(config):
    cls, kwargs = config
    fused, _ = run(cls, {**kwargs, "fused": None}, 20)
    loop, _ = run(cls, {**kwargs, "fused": False}, 20)
    for a, b in zip(fused, loop):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-14)


def test_fused_equals_per_parameter_float32_over_100_steps(config):
    cls, kwargs = config
    fused, _ = run(cls, {**kwargs, "fused": None}, 100, dtype=np.float32)
    loop, _ = run(cls, {**kwargs, "fused": False}, 100, dtype=np.float32)
    for a, b in zip(fused, loop):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a.data, b.data, rtol=1e-6, atol=1e-6)


def test_numba_and_numpy_backends_agree_exactly(config):
    cls, kwargs = config
    compiled, _ = run(cls, kwargs, 10, skip=every_other)
    previous = use_cpu_backend(CpuBackend.NUMPY)
    try:
        plain, _ = run(cls, kwargs, 10, skip=every_other)
    finally:
        use_cpu_backend(previous)
    for a, b in zip(compiled, plain):
        np.testing.assert_array_equal(a.data, b.data)


def test_parameters_stay_views_of_the_flat_buffer(config):
    cls, kwargs = config
    params, opt = run(cls, kwargs, 2)
    (flat,) = opt._flat[0]
    for i, p in enumerate(params):
        assert np.shares_memory(p.data, flat.data)
        assert np.shares_memory(p.grad, flat.grad)
        for value in opt.state[p].values():
            if isinstance(value, np.ndarray) and value.ndim:
                assert np.shares_memory(value, flat.state_array(next(
                    n for n in flat.state if np.shares_memory(value, flat.state[n]))))


def test_missing_gradient_does_not_advance_that_parameter(config):
    cls, kwargs = config
    params, opt = run(cls, kwargs, 4, skip=lambda t, i: i == 2)
    before = params[2].data.copy()
    if cls is not optim.Adagrad:  # Adagrad creates its state at construction, as PyTorch's does
        assert not opt.state.get(params[2])
    np.testing.assert_array_equal(params[2].data, make_params()[2].data)
    np.testing.assert_array_equal(before, params[2].data)
    steps = [opt.state[p].get("step") for p in params if "step" in opt.state.get(p, {})]
    assert all(s == 4 for s in steps if s is not None) or cls is optim.Adagrad


def test_state_dict_round_trip_resumes_identically(config, tmp_path):
    cls, kwargs = config
    straight, _ = run(cls, kwargs, 12, skip=every_other)
    params, opt = run(cls, kwargs, 5, skip=every_other)
    path = tmp_path / "opt.safetensors"
    lucid.save({"model": [p.data for p in params], "optim": opt.state_dict()}, path)
    loaded = lucid.load(path)
    fresh = make_params(seed=99)
    for p, saved in zip(fresh, loaded["model"]):
        p.data[...] = saved
    resumed_opt = cls(fresh, **kwargs)
    resumed_opt.load_state_dict(loaded["optim"])
    run(cls, kwargs, 7, skip=every_other, params=fresh, start=5, opt=resumed_opt)
    for a, b in zip(straight, fresh):
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_layout_is_pytorchs(config):
    cls, kwargs = config
    params, opt = run(cls, kwargs, 3)
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sd["param_groups"][0]["params"] == [0, 1, 2, 3]
    for pid, values in sd["state"].items():
        assert isinstance(pid, int)
        for name, value in values.items():
            if name in opt.number_state:  # kept as a Python number, as PyTorch keeps it
                assert isinstance(value, int)
                continue
            assert isinstance(value, np.ndarray)
            if value.ndim:
                assert value.shape == params[pid].shape
                assert not np.shares_memory(value, params[pid].data)


def test_state_dict_is_the_same_whichever_path_stepped(config):
    cls, kwargs = config
    _, fused = run(cls, {**kwargs, "fused": None}, 4, skip=every_other)
    _, loop = run(cls, {**kwargs, "fused": False}, 4, skip=every_other)
    a, b = fused.state_dict(), loop.state_dict()
    assert a["state"].keys() == b["state"].keys()
    for pid in a["state"]:
        assert a["state"][pid].keys() == b["state"][pid].keys()
        for name in a["state"][pid]:
            np.testing.assert_allclose(a["state"][pid][name], b["state"][pid][name], rtol=1e-12)


def test_converges_on_a_quadratic(config):
    cls, kwargs = config
    kwargs = {k: v for k, v in kwargs.items() if k != "maximize"}
    target = np.array([1.0, -2.0, 0.5])
    w = nn.Parameter(np.zeros(3))
    opt = cls([w], **kwargs)
    start = float(((w.data - target) ** 2).sum())
    for _ in range(1000):
        opt.zero_grad()
        loss = ((w - lucid.Tensor(target)) ** 2).sum()
        loss.backward()
        opt.step()
    assert float(((w.data - target) ** 2).sum()) < 0.05 * start


def test_makes_progress_on_rosenbrock(config):
    cls, kwargs = config
    kwargs = {k: v for k, v in kwargs.items() if k != "maximize"}
    xy = nn.Parameter(np.array([-1.5, 2.0]))
    adaptive_step = cls in (optim.Adadelta, optim.Rprop)  # their lr is not the step length
    opt = cls([xy], **{**kwargs, "lr": kwargs["lr"] if adaptive_step else min(kwargs["lr"], 1e-3)})

    def rosenbrock():
        x, y = xy[0], xy[1]
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2

    start = rosenbrock().item()
    for _ in range(500):
        opt.zero_grad()
        loss = rosenbrock()
        loss.backward()
        opt.step()
    assert rosenbrock().item() < start


def test_maximize_is_minimize_of_the_negation(config):
    cls, kwargs = config
    kwargs = {**kwargs, "maximize": False}
    down, _ = run(cls, kwargs, 5)
    params = make_params()
    opt = cls(params, **{**kwargs, "maximize": True})
    for t in range(5):
        for p, g in zip(params, gradients(t)):
            p.grad = -g
        opt.step()
    for a, b in zip(down, params):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-15)


def test_nan_in_a_gradient_is_never_silently_skipped(config):
    cls, kwargs = config
    params = make_params()
    opt = cls(params, **kwargs)
    grads = gradients(0)
    grads[0][0, 0] = np.nan
    for p, g in zip(params, grads):
        p.grad = g
    opt.step()
    assert np.isnan(params[0].data[0, 0]) or any(
        np.isnan(v).any() for v in opt.state[params[0]].values() if isinstance(v, np.ndarray))
    assert np.isfinite(params[1].data).all()
