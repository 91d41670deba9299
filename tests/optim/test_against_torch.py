"""Every configuration in the table against torch.optim (skipped where PyTorch is not installed)."""

import numpy as np
import pytest

import lucid

torch = pytest.importorskip("torch")

from .test_optimizers import gradients, make_params  # noqa: E402


@pytest.fixture(autouse=True)
def float64_defaults():
    """PyTorch keeps scalar state (step, mu_product, eta) in the default dtype: use float64 on both sides."""
    old_torch, old_lucid = torch.get_default_dtype(), lucid.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    lucid.set_default_dtype("float64")
    yield
    torch.set_default_dtype(old_torch)
    lucid.set_default_dtype(old_lucid)


def torch_pair(cls, kwargs):
    lucid_params = make_params()
    torch_params = [torch.nn.Parameter(torch.tensor(p.data.copy())) for p in lucid_params]
    torch_kwargs = {k: v for k, v in kwargs.items() if k != "fused"}
    return lucid_params, cls(lucid_params, **kwargs), torch_params, getattr(torch.optim, cls.__name__)(
        torch_params, **torch_kwargs)


def set_grads(lucid_params, torch_params, grads, sparse, skip=()):
    for i, (a, b, g) in enumerate(zip(lucid_params, torch_params, grads)):
        if i in skip:
            a.grad, b.grad = None, None
            continue
        a.grad = g.copy()
        b.grad = torch.tensor(g).to_sparse() if sparse else torch.tensor(g)


def assert_same(lucid_params, torch_params, rtol=1e-12):
    for a, b in zip(lucid_params, torch_params):
        np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=rtol, atol=1e-14)


def test_trajectory_equals_torch(config):
    cls, kwargs = config
    lp, lo, tp, to = torch_pair(cls, kwargs)
    sparse = cls.__name__ == "SparseAdam"
    for t in range(15):
        set_grads(lp, tp, gradients(t), sparse, skip=(1,) if t % 3 == 0 else ())
        lo.step()
        to.step()
    assert_same(lp, tp)


def test_state_dict_equals_torchs_and_loads_into_torch(config):
    cls, kwargs = config
    lp, lo, tp, to = torch_pair(cls, kwargs)
    sparse = cls.__name__ == "SparseAdam"
    for t in range(4):
        set_grads(lp, tp, gradients(t), sparse, skip=(2,) if t == 0 else ())
        lo.step()
        to.step()
    ours, theirs = lo.state_dict(), to.state_dict()
    assert ours["state"].keys() == theirs["state"].keys()
    for pid, values in theirs["state"].items():
        assert ours["state"][pid].keys() == values.keys()
        for name, value in values.items():
            np.testing.assert_allclose(ours["state"][pid][name], np.asarray(value), rtol=1e-12)
    # our dict, as tensors, continues a fresh torch optimizer exactly like ours continues
    fresh = [torch.nn.Parameter(torch.tensor(p.data.copy())) for p in lp]
    resumed = getattr(torch.optim, cls.__name__)(fresh, **{k: v for k, v in kwargs.items() if k != "fused"})
    resumed.load_state_dict({
        "state": {pid: {k: torch.tensor(v) for k, v in values.items()} for pid, values in ours["state"].items()},
        "param_groups": [{**g, **{k: v for k, v in theirs["param_groups"][0].items() if k not in g}}
                         for g in ours["param_groups"]]})
    for t in range(4, 8):
        set_grads(lp, fresh, gradients(t), sparse)
        lo.step()
        resumed.step()
    assert_same(lp, fresh)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_gradients_propagate_as_in_torch(config, bad):
    cls, kwargs = config
    lp, lo, tp, to = torch_pair(cls, kwargs)
    sparse = cls.__name__ == "SparseAdam"
    for t in range(3):
        grads = gradients(t)
        if t == 1:
            grads[0][0, 0] = bad
            grads[2][1, 1, 1] = bad
        set_grads(lp, tp, grads, sparse)
        lo.step()
        to.step()
    for a, b in zip(lp, tp):
        np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=1e-12, atol=1e-14, equal_nan=True)


def test_float32_close_to_torch(config):
    cls, kwargs = config
    torch.set_default_dtype(torch.float32)
    lucid.set_default_dtype("float32")
    lp = make_params(np.float32)
    tp = [torch.nn.Parameter(torch.tensor(p.data.copy())) for p in lp]
    lo = cls(lp, **kwargs)
    to = getattr(torch.optim, cls.__name__)(tp, **{k: v for k, v in kwargs.items() if k != "fused"})
    sparse = cls.__name__ == "SparseAdam"
    for t in range(20):
        set_grads(lp, tp, gradients(t, np.float32), sparse)
        lo.step()
        to.step()
    assert_same(lp, tp, rtol=2e-5)
