"""Every optimizer on PyTorch's own test configurations, against torch.optim (skipped without torch).

The configurations come from the installed torch at run time (`torch_oracle.py`). Each one runs on
lucid and on torch with the same parameters (0-d to 3-d; Muon's must be 2-D) and gradients (some
missing on some steps), in float32 and float64 under both default dtypes, on lucid's fused and
per-parameter paths: three steps, then a state-dict round trip in both directions (torch's dict into
a fresh lucid optimizer, lucid's into a fresh torch one), then three more steps on all four. The error
cases are PyTorch's too: the same exception type and message (or warning) at construction or at step.
"""

import numpy as np
import pytest

import lucid
from lucid import optim

from . import torch_oracle
from .torch_oracle import PLAIN, as_number, state_dict_to_lucid, state_dict_to_torch, to_lucid

ORACLE = torch_oracle.load()
pytestmark = [pytest.mark.torch,
              pytest.mark.skipif(ORACLE is None, reason="needs torch (and expecttest) as the oracle")]

SHAPES = [(), (3,), (2, 3), (2, 2, 3)]
MATRIX_SHAPES = [(3, 4), (5, 2)]  # Muon: 2-D only, one wide and one tall
STEPS_BEFORE, STEPS_AFTER = 3, 3
TOLERANCE = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}
# LBFGS in float32: 20 inner iterations and a line search a step amplify the order in which the two
# libraries' BLAS sum dot products, and can change how many evaluations a line search takes
LBFGS_FLOAT32 = dict(rtol=2e-3, atol=2e-4)


def runs():
    rows = []
    for name, k, desc in torch_oracle.table(ORACLE, "configs"):
        for fused in ((None,) if name in PLAIN else (None, False)):
            for param_dtype in (np.float32, np.float64):
                for default in (np.float32, np.float64):
                    rows.append(pytest.param(name, k, fused, param_dtype, default,
                                             id=f"{name}-{k}-{desc}-fused={fused}-{np.dtype(param_dtype).name}"
                                                f"-default={np.dtype(default).name}"))
    return rows


@pytest.fixture
def defaults(request):
    """Set both libraries' default dtype for one run."""
    torch = ORACLE[0]

    def use(dtype):
        torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
        lucid.set_default_dtype(np.dtype(dtype).name)
    old_torch, old_lucid = ORACLE[0].get_default_dtype(), lucid.get_default_dtype()
    yield use
    torch.set_default_dtype(old_torch)
    lucid.set_default_dtype(np.dtype(old_lucid).name)


@pytest.fixture
def muon_in_param_dtype(monkeypatch):
    """torch's Muon with its Newton-Schulz iteration in the parameter's dtype instead of bfloat16."""
    torch = ORACLE[0]
    import torch.optim._muon as muon

    def iterate(grad, coefficients, steps, eps):
        a, b, c = coefficients
        tall = grad.size(0) > grad.size(1)
        x = grad.T.clone() if tall else grad.clone()
        x = x / x.norm().clamp(min=eps)
        for _ in range(steps):
            gram = x @ x.T
            x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
        return x.T if tall else x
    monkeypatch.setattr(muon, "_zeropower_via_newtonschulz", iterate)


def config(name, k):
    """(torch kwargs, lucid kwargs) of input k, built under the current default dtype."""
    torch, common = ORACLE
    inp = torch_oracle.inputs(torch_oracle.infos(common)[name], "configs", torch)[k]
    return dict(inp.kwargs), to_lucid(dict(inp.kwargs), torch, {})


def make_params(name, dtype, seed=0):
    torch = ORACLE[0]
    rng = np.random.default_rng(seed)
    shapes = MATRIX_SHAPES if name == "Muon" else SHAPES
    arrays = [np.array(rng.standard_normal(s), dtype=dtype) for s in shapes]
    return ([lucid.nn.Parameter(a.copy()) for a in arrays],
            [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays])


def gradient(step, i, shape, dtype):
    rng = np.random.default_rng([7, step, i])
    return np.array(rng.standard_normal(shape) * (rng.random(shape) > 0.2), dtype=dtype)


def skipped(step, i):
    """Which parameters get no gradient at a step (optimizers must skip them, as torch does)."""
    return (step == 0 and i == 1) or (step == 4 and i == 0)


def set_gradients(name, step, lucid_params, torch_params, dtype):
    torch = ORACLE[0]
    for i, (a, b) in enumerate(zip(lucid_params, torch_params)):
        if skipped(step, i):
            a.grad, b.grad = None, None
            continue
        g = gradient(step, i, a.shape, dtype)
        a.grad = g.copy()
        b.grad = torch.from_numpy(g.copy())
        if name == "SparseAdam":
            b.grad = b.grad.to_sparse()


def lbfgs_closures(lucid_params, torch_params, dtype):
    """The same smooth loss for both libraries, sum(c p^2 / 2 + d p + p^4 / 20), evaluated once in NumPy
    on each side's parameters, so both optimizers see bit-identical losses and gradients."""
    torch = ORACLE[0]
    rng = np.random.default_rng(3)
    coeffs = [(np.array(rng.uniform(0.5, 2.0, p.shape), dtype=dtype), np.array(rng.standard_normal(p.shape), dtype=dtype))
              for p in lucid_params]

    def evaluate(arrays):
        loss = dtype(0)
        grads = []
        for x, (c, d) in zip(arrays, coeffs):
            loss = loss + np.sum(c * x * x * dtype(0.5) + d * x + x ** 4 * dtype(0.05), dtype=dtype)
            grads.append(np.array(c * x + d + x ** 3 * dtype(0.2), dtype=dtype))
        return loss, grads

    def lucid_closure():
        loss, grads = evaluate([p.data for p in lucid_params])
        for p, g in zip(lucid_params, grads):
            p.grad = g
        return float(loss)

    def torch_closure():
        loss, grads = evaluate([p.detach().numpy() for p in torch_params])
        for p, g in zip(torch_params, grads):
            p.grad = torch.from_numpy(g)
        return torch.tensor(float(loss), dtype=torch_params[0].dtype)
    return lucid_closure, torch_closure


class Pair:
    """One lucid optimizer and one torch optimizer on equal parameters, stepped together."""

    def __init__(self, name, lucid_params, torch_params, lucid_kwargs, torch_kwargs, dtype):
        torch = ORACLE[0]
        self.name, self.dtype = name, dtype
        self.lp, self.tp = lucid_params, torch_params
        self.lo = getattr(optim, name)(lucid_params, **lucid_kwargs)
        self.to = getattr(torch.optim, name)(torch_params, **torch_kwargs)
        self.closures = lbfgs_closures(lucid_params, torch_params, dtype) if name == "LBFGS" else None

    def step(self, t):
        if self.closures is not None:
            self.lo.step(self.closures[0])
            self.to.step(self.closures[1])
            return
        set_gradients(self.name, t, self.lp, self.tp, self.dtype)
        self.lo.step()
        self.to.step()


def tolerance(name, dtype):
    return LBFGS_FLOAT32 if (name, dtype) == ("LBFGS", np.float32) else TOLERANCE[dtype]


def assert_params_close(lucid_params, torch_params, tol, what):
    for i, (a, b) in enumerate(zip(lucid_params, torch_params)):
        np.testing.assert_allclose(a.data, b.detach().numpy(), **tol, err_msg=f"{what}: param {i}")


def assert_state_dicts_close(ours, theirs, tol, exact_counts=True):
    assert ours["state"].keys() == theirs["state"].keys()
    for pid, values in theirs["state"].items():
        assert ours["state"][pid].keys() == values.keys(), pid
        for key, value in values.items():
            mine = ours["state"][pid][key]
            if isinstance(value, int):  # torch keeps a Python number (SparseAdam's step, LBFGS's counters)
                assert type(mine) is int and (mine == value or not exact_counts), (pid, key)
                continue
            if isinstance(value, (list, tuple)):
                assert len(mine) == len(value), (pid, key)
                continue
            if value is None:
                assert mine is None
                continue
            np.testing.assert_allclose(as_number(mine), as_number(value), **tol, err_msg=f"{pid} {key}")
    for mine, group in zip(ours["param_groups"], theirs["param_groups"]):
        assert mine["params"] == group["params"]
        np.testing.assert_allclose(as_number(mine["lr"]), as_number(group["lr"]), rtol=0)


@pytest.mark.parametrize("name, k, fused, dtype, default", runs())
def test_pytorch_configuration(name, k, fused, dtype, default, defaults, request):
    torch = ORACLE[0]
    defaults(default)
    if name == "Muon":
        request.getfixturevalue("muon_in_param_dtype")
    torch_kwargs, lucid_kwargs = config(name, k)
    if name not in PLAIN:
        lucid_kwargs["fused"] = fused
    pair = Pair(name, *make_params(name, dtype), lucid_kwargs, torch_kwargs, dtype)
    for t in range(STEPS_BEFORE):
        pair.step(t)
    tol = tolerance(name, dtype)
    assert_params_close(pair.lp, pair.tp, tol, "before the round trip")
    ours, theirs = pair.lo.state_dict(), pair.to.state_dict()
    assert_state_dicts_close(ours, theirs, tol, exact_counts=tol is not LBFGS_FLOAT32)
    # torch's dict continues a fresh lucid optimizer, lucid's dict a fresh torch one
    lucid_params, torch_params = make_params(name, dtype, seed=99)
    for a, b, src in zip(lucid_params, torch_params, pair.tp):
        a.data[...] = src.detach().numpy()
        b.data.copy_(src.detach())
    resumed = Pair(name, lucid_params, torch_params, lucid_kwargs, torch_kwargs, dtype)
    resumed.lo.load_state_dict(state_dict_to_lucid(theirs, torch))
    resumed.to.load_state_dict(state_dict_to_torch(ours, torch))
    for t in range(STEPS_BEFORE, STEPS_BEFORE + STEPS_AFTER):
        pair.step(t)
        resumed.step(t)
    assert_params_close(pair.lp, pair.tp, tol, "lucid, straight through")
    assert_params_close(resumed.lp, pair.tp, tol, "lucid resumed from torch's state dict")
    assert_params_close(resumed.tp, pair.tp, tol, "torch resumed from lucid's state dict")


# ---------------------------------------------------------------------------- PyTorch's error cases

# lucid leaves these out by design, so PyTorch's error for them has nothing to match
NOT_OFFERED = {"foreach": "lucid offers no foreach implementation (its fused step is the fast path)",
               "sparse": "lucid has no sparse tensors"}


def error_runs():
    return [pytest.param(name, k, id=f"{name}-{k}-{desc}") for name, k, desc in torch_oracle.table(ORACLE, "errors")]


def not_offered(params, kwargs, torch):
    if "foreach" in kwargs:
        return NOT_OFFERED["foreach"]
    pending = [params]
    while pending:
        item = pending.pop()
        if isinstance(item, torch.Tensor) and item.is_sparse:
            return NOT_OFFERED["sparse"]
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return None


@pytest.mark.parametrize("name, k", error_runs())
def test_pytorch_error_case(name, k):
    torch, common = ORACLE
    err = torch_oracle.inputs(torch_oracle.infos(common)[name], "errors", torch)[k]
    inp = err.optimizer_error_input
    reason = not_offered(inp.params, inp.kwargs, torch)
    if reason:
        pytest.skip(f"not applicable: {reason}")
    memo = {}
    params, kwargs = to_lucid(inp.params, torch, memo), to_lucid(dict(inp.kwargs), torch, memo)
    cls = getattr(optim, name)
    if err.error_on == common.OptimizerErrorEnum.CONSTRUCTION_ERROR:
        if issubclass(err.error_type, Warning):
            with pytest.warns(err.error_type, match=err.error_regex):
                cls(params, **kwargs)
        else:
            with pytest.raises(err.error_type, match=err.error_regex):
                cls(params, **kwargs)
    else:
        opt = cls(params, **kwargs)
        with pytest.raises(err.error_type, match=err.error_regex):
            opt.step()
