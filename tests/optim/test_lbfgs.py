"""LBFGS: convergence, trajectories equal to torch.optim.LBFGS, budgets and tolerances, state dicts, errors."""

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.optim.lbfgs import _away_from_ends, _cubic_minimum, _Point

SEARCHES = [None, "strong_wolfe"]
STATE_KEYS = {"func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad",
              "prev_loss", "al"}


def rosenbrock(x):
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def make_closure(opt, loss_fn, calls=None):
    """A closure that zeroes the gradients, evaluates `loss_fn()`, back-propagates and counts its calls."""
    def closure():
        if calls is not None:
            calls.append(1)
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss
    return closure


def rosenbrock_run(x0, steps, **kwargs):
    """(the parameter, the optimizer, the closure calls) after `steps` steps on Rosenbrock from x0."""
    x = nn.Parameter(np.array(x0, dtype=np.float64))
    opt = optim.LBFGS([x], **kwargs)
    calls = []
    closure = make_closure(opt, lambda: rosenbrock(x), calls)
    for _ in range(steps):
        opt.step(closure)
    return x, opt, calls


def quadratic(dim=6, seed=0):
    """(A, b, the minimizer) of f(x) = x'Ax/2 - b'x with A symmetric positive definite."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((dim, dim))
    a = m @ m.T + dim * np.eye(dim)
    b = rng.standard_normal(dim)
    return a, b, np.linalg.solve(a, b)


# ---------------------------------------------------------------------------------------- convergence

@pytest.mark.parametrize("line_search_fn", SEARCHES)
def test_converges_on_rosenbrock(line_search_fn):
    x, _, _ = rosenbrock_run([-1.5, 2.0], 10, line_search_fn=line_search_fn)
    np.testing.assert_allclose(x.data, [1.0, 1.0], atol=1e-4)


@pytest.mark.parametrize("line_search_fn", SEARCHES)
def test_converges_on_a_quadratic(line_search_fn):
    a, b, solution = quadratic()
    at, bt = lucid.Tensor(a), lucid.Tensor(b)
    x = nn.Parameter(np.zeros(len(b)))
    opt = optim.LBFGS([x], line_search_fn=line_search_fn, tolerance_grad=1e-12, tolerance_change=0)
    closure = make_closure(opt, lambda: 0.5 * (x * (at @ x)).sum() - (bt * x).sum())
    for _ in range(3):
        opt.step(closure)
    np.testing.assert_allclose(x.data, solution, atol=1e-9)


def test_step_returns_the_first_closure_loss():
    x = nn.Parameter(np.array([-1.5, 2.0]))
    opt = optim.LBFGS([x])
    losses = []

    def closure():
        opt.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        losses.append(loss)
        return loss

    assert opt.step(closure) is losses[0]
    assert len(losses) == 20


def test_float32_parameters_stay_float32():
    x = nn.Parameter(np.array([-1.5, 2.0], dtype=np.float32))
    opt = optim.LBFGS([x], line_search_fn="strong_wolfe")
    closure = make_closure(opt, lambda: rosenbrock(x))
    for _ in range(5):
        opt.step(closure)
    state = opt.state[x]
    assert x.data.dtype == np.float32
    assert state["d"].dtype == np.float32 and state["prev_flat_grad"].dtype == np.float32
    assert all(s.dtype == np.float32 for s in state["old_stps"])
    np.testing.assert_allclose(x.data, [1.0, 1.0], atol=1e-2)


# ------------------------------------------------------------------------------ equal to torch's LBFGS

def model_problem(lib, **kwargs):
    """A float64 least-squares problem over (W, u, b); u never gets a gradient (counts as zeros)."""
    rng = np.random.default_rng(3)
    a, target = rng.standard_normal((12, 4)), rng.standard_normal((12, 3))
    values = [rng.standard_normal((4, 3)), rng.standard_normal(2), rng.standard_normal(3)]
    if lib == "torch":
        torch = pytest.importorskip("torch")
        params = [torch.nn.Parameter(torch.tensor(v)) for v in values]
        a, target = torch.tensor(a), torch.tensor(target)
        opt = torch.optim.LBFGS(params, **kwargs)
    else:
        params = [nn.Parameter(v) for v in values]
        a, target = lucid.Tensor(a), lucid.Tensor(target)
        opt = optim.LBFGS(params, **kwargs)
    w, _, b = params
    calls = []

    def loss_fn():
        r = a @ w + b - target
        return (r * r).mean() + 0.05 * (w * w * w * w).sum()

    return params, opt, make_closure(opt, loss_fn, calls), calls


def as_numpy(value):
    return value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(line_search_fn="strong_wolfe"),
    dict(max_iter=6, history_size=2),
    dict(lr=0.7, max_iter=8, max_eval=11, history_size=3, line_search_fn="strong_wolfe"),
], ids=["fixed", "strong_wolfe", "fixed-short-history", "strong_wolfe-budget"])
def test_trajectory_equals_torch(kwargs):
    pytest.importorskip("torch")
    mine, opt, closure, calls = model_problem("lucid", **kwargs)
    theirs, ref, ref_closure, ref_calls = model_problem("torch", **kwargs)
    for _ in range(4):
        loss, ref_loss = float(opt.step(closure)), float(ref.step(ref_closure).detach())
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        assert len(calls) == len(ref_calls)
        for p, q in zip(mine, theirs):
            np.testing.assert_allclose(p.data, as_numpy(q), rtol=1e-9, atol=1e-12)
        state, ref_state = opt.state[mine[0]], ref.state[theirs[0]]
        assert set(state) == set(ref_state) <= STATE_KEYS
        assert (state["func_evals"], state["n_iter"]) == (ref_state["func_evals"], ref_state["n_iter"])
        assert float(state["t"]) == pytest.approx(float(ref_state["t"]), rel=1e-9)
        assert len(state["old_dirs"]) == len(ref_state["old_dirs"])
        for name in ("d", "prev_flat_grad"):
            np.testing.assert_allclose(state[name], as_numpy(ref_state[name]), rtol=1e-8, atol=1e-12)
        # y'y / y's is sensitive to cancellation in y = g_k - g_{k-1} once the steps get small
        np.testing.assert_allclose(state["H_diag"], as_numpy(ref_state["H_diag"]), rtol=1e-6)
    np.testing.assert_array_equal(mine[1].data, theirs[1].detach().numpy())  # no gradient: untouched


@pytest.mark.parametrize("x0, kwargs", [
    ([-1.2, 1.0, -0.5, 2.0], dict(max_iter=15)),
    ([-1.7, -1.4], dict(lr=10)),  # overshoots: brackets, then zooms
    # a zoom whose cubic trial lands near an end twice in a row (moved 10% inside the bracket)
    ([-1.666722859540681, -1.397475019137854], dict(lr=20, history_size=2)),
], ids=["4d", "zoom", "zoom-near-ends"])
def test_line_search_trajectory_equals_torch_on_rosenbrock(x0, kwargs):
    torch = pytest.importorskip("torch")
    x, opt, calls = rosenbrock_run(x0, 3, line_search_fn="strong_wolfe", **kwargs)
    y = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    ref = torch.optim.LBFGS([y], line_search_fn="strong_wolfe", **kwargs)
    ref_calls = []
    for _ in range(3):
        ref.step(make_closure(ref, lambda: rosenbrock(y), ref_calls))
    assert len(calls) == len(ref_calls)
    assert opt.state[x]["n_iter"] == ref.state[y]["n_iter"]
    np.testing.assert_allclose(x.data, y.detach().numpy(), rtol=1e-9, atol=1e-11)


# ------------------------------------------------------------------------------ line-search helpers

def test_cubic_minimum_of_a_cubic():
    # f(x) = x^3 - 3x has its local minimum at x = 1: from (0, 0, -3) and (2, 2, 9), in either order
    assert _cubic_minimum(0.0, 0.0, -3.0, 2.0, 2.0, 9.0) == pytest.approx(1.0)
    assert _cubic_minimum(2.0, 2.0, 9.0, 0.0, 0.0, -3.0) == pytest.approx(1.0)
    assert _cubic_minimum(0.0, 0.0, -3.0, 2.0, 2.0, 9.0, bounds=(1.5, 3.0)) == 1.5  # clipped
    # f(x) = 2x^3 - 3x^2 + 3x is increasing (f(0) = 0, f(1) = 2, f'(0) = f'(1) = 3): no minimum, so
    # the middle of the bounds
    assert _cubic_minimum(0.0, 0.0, 3.0, 1.0, 2.0, 3.0, bounds=(0.0, 4.0)) == 2.0


def test_cubic_minimum_matches_torch():
    torch = pytest.importorskip("torch")
    from torch.optim.lbfgs import _cubic_interpolate
    rng = np.random.default_rng(5)
    for _ in range(50):
        x1, f1, g1, x2, f2, g2 = rng.standard_normal(6)
        bounds = tuple(sorted(rng.standard_normal(2))) if rng.random() < 0.5 else None
        mine = _cubic_minimum(x1, f1, np.float64(g1), x2, f2, np.float64(g2), bounds)
        theirs = _cubic_interpolate(x1, f1, torch.tensor(g1), x2, f2, torch.tensor(g2), bounds)
        assert float(mine) == pytest.approx(float(theirs), rel=1e-12, abs=1e-15)


def point(t):
    return _Point(t, 0.0, None, 0.0)


def test_trials_are_kept_away_from_the_bracket_ends():
    bracket = [point(0.0), point(1.0)]
    assert _away_from_ends(0.5, bracket, False) == (0.5, False)  # well inside
    assert _away_from_ends(0.95, bracket, False) == (0.95, True)  # near an end: tolerated once
    t, insufficient = _away_from_ends(0.95, bracket, True)  # twice in a row: moved to the margin
    assert (t, insufficient) == (pytest.approx(0.9), False)
    t, insufficient = _away_from_ends(-0.2, bracket, False)  # past an end: moved at once
    assert (t, insufficient) == (pytest.approx(0.1), False)
    assert _away_from_ends(1.0, [point(1.0), point(0.0)], False)[0] == pytest.approx(0.9)  # any order


# ---------------------------------------------------------------------------- budgets and tolerances

def test_max_iter_bounds_the_closure_calls_without_line_search():
    # the last iteration is not re-evaluated: max_iter iterations cost max_iter calls
    x, opt, calls = rosenbrock_run([-1.5, 2.0], 1, max_iter=4)
    assert len(calls) == 4
    assert opt.state[x]["n_iter"] == 4 and opt.state[x]["func_evals"] == 4
    _, _, calls = rosenbrock_run([-1.5, 2.0], 2, max_iter=4)
    assert len(calls) == 8


def test_max_eval_defaults_to_five_quarters_of_max_iter():
    x, opt, calls = rosenbrock_run([-1.5, 2.0], 1, max_iter=3)  # max_eval 3 stops after 2 iterations
    assert len(calls) == 3 and opt.state[x]["n_iter"] == 2
    x = nn.Parameter([1.0])
    assert optim.LBFGS([x], max_iter=9).param_groups[0]["max_eval"] == 11
    assert optim.LBFGS([x]).defaults == dict(lr=1, max_iter=20, max_eval=25, tolerance_grad=1e-7,
                                             tolerance_change=1e-9, history_size=100, line_search_fn=None)


@pytest.mark.parametrize("max_eval", [2, 3, 5, 8])
def test_max_eval_bounds_the_line_search(max_eval):
    x, opt, calls = rosenbrock_run([-1.5, 2.0], 1, max_iter=100, max_eval=max_eval,
                                   line_search_fn="strong_wolfe")
    # like torch, the last line search may use one evaluation past the budget
    assert max_eval <= len(calls) <= max_eval + 1
    assert opt.state[x]["func_evals"] == len(calls)


def test_max_eval_bounds_fixed_steps():
    x, opt, calls = rosenbrock_run([-1.5, 2.0], 1, max_iter=100, max_eval=6)
    assert len(calls) == 6 and opt.state[x]["n_iter"] == 5


def test_tolerance_grad_returns_at_a_stationary_point():
    x, opt, calls = rosenbrock_run([1.0, 1.0], 1)
    assert len(calls) == 1
    np.testing.assert_array_equal(x.data, [1.0, 1.0])
    assert opt.state[x] == {"func_evals": 1, "n_iter": 0}


def test_tolerance_grad_stops_the_iterations():
    loose, _, loose_calls = rosenbrock_run([-1.5, 2.0], 1, tolerance_grad=1.0, max_iter=200, max_eval=400)
    tight, _, tight_calls = rosenbrock_run([-1.5, 2.0], 1, max_iter=200, max_eval=400)
    assert len(loose_calls) < len(tight_calls)
    x = nn.Parameter(loose.data.copy())
    rosenbrock(x).backward()
    assert np.abs(x.grad).max() <= 1.0


@pytest.mark.parametrize("line_search_fn", SEARCHES)
def test_tolerance_change_stops_after_one_iteration(line_search_fn):
    # every loss change is below a huge tolerance_change: one iteration, then stop
    x, opt, calls = rosenbrock_run([-1.5, 2.0], 1, tolerance_change=1e6, line_search_fn=line_search_fn)
    assert opt.state[x]["n_iter"] == 1
    assert opt.state[x]["func_evals"] == len(calls) <= 3


def test_state_persists_between_steps():
    x, opt, calls = rosenbrock_run([-1.5, 2.0], 3, max_iter=3, max_eval=10, history_size=2)
    state = opt.state[x]
    assert state["n_iter"] == 9 and state["func_evals"] == len(calls) == 9
    assert len(state["old_dirs"]) == len(state["old_stps"]) == len(state["ro"]) == 2
    assert len(state["al"]) == 2


# ---------------------------------------------------------------------------------------- state dicts

@pytest.mark.parametrize("line_search_fn", SEARCHES)
def test_state_dict_round_trip_continues_identically(tmp_path, line_search_fn):
    kwargs = dict(max_iter=4, history_size=3, line_search_fn=line_search_fn)
    x, opt, _ = rosenbrock_run([-1.5, 2.0, 0.3], 2, **kwargs)
    saved = opt.state_dict()
    assert set(saved["state"][0]) == STATE_KEYS
    assert saved["param_groups"][0]["params"] == [0]
    lucid.save(saved, tmp_path / "lbfgs.safetensors")

    y = nn.Parameter(x.data.copy())
    resumed = optim.LBFGS([y], **kwargs)
    resumed.load_state_dict(lucid.load(tmp_path / "lbfgs.safetensors"))
    first, second = make_closure(opt, lambda: rosenbrock(x)), make_closure(resumed, lambda: rosenbrock(y))
    for _ in range(3):
        assert float(opt.step(first)) == float(resumed.step(second))
        np.testing.assert_array_equal(x.data, y.data)
    assert resumed.state[y]["n_iter"] == opt.state[x]["n_iter"]


def test_state_dict_round_trip_with_several_parameters():
    params, opt, closure, _ = model_problem("lucid")
    opt.step(closure)
    opt.load_state_dict(opt.state_dict())


# --------------------------------------------------------------------------------------------- errors

def test_step_requires_a_closure():
    opt = optim.LBFGS([nn.Parameter([1.0])])
    with pytest.raises(TypeError, match=r"LBFGS.step\(\) missing 1 required positional argument: 'closure'"):
        opt.step()


def test_one_parameter_group_only():
    groups = [{"params": [nn.Parameter([1.0])]}, {"params": [nn.Parameter([2.0])]}]
    with pytest.raises(ValueError, match=r"LBFGS doesn't support per-parameter options \(parameter groups\)"):
        optim.LBFGS(groups)
    x = nn.Parameter([1.0])
    opt = optim.LBFGS([x])
    opt.add_param_group({"params": [nn.Parameter([2.0])]})
    with pytest.raises(AssertionError, match="Expected exactly one param_group, but got 2"):
        opt.step(make_closure(opt, lambda: (x * x).sum()))


def test_unknown_line_search_is_rejected():
    with pytest.raises(ValueError, match="only 'strong_wolfe' is supported"):
        optim.LBFGS([nn.Parameter([1.0])], line_search_fn="backtracking")


def test_not_elementwise_and_no_fused_option():
    assert optim.LBFGS.rule is None
    with pytest.raises(TypeError):
        optim.LBFGS([nn.Parameter([1.0])], fused=True)
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.LBFGS([nn.Parameter([1.0])], lr=-1)


def test_step_hooks_run_once_per_step():
    x = nn.Parameter(np.array([-1.5, 2.0]))
    opt = optim.LBFGS([x], max_iter=5)
    seen = []
    opt.register_step_pre_hook(lambda *args: seen.append("pre"))
    opt.register_step_post_hook(lambda *args: seen.append("post"))
    opt.step(make_closure(opt, lambda: rosenbrock(x)))
    assert seen == ["pre", "post"]
