"""Fixtures for the nn tests: PyTorch (skipped when absent) and a forward/backward comparison against it."""

import numpy as np
import pytest

import lucid


@pytest.fixture
def torch():
    """The torch module; tests that use it are skipped where torch is not installed."""
    return pytest.importorskip("torch")


@pytest.fixture
def against_torch(torch):
    """check(lucid_fn, torch_fn, *arrays, grad=None): same outputs and input gradients, float64.

    Floating arrays require grad unless `grad` (one bool per array) says otherwise; the output is
    contracted with a fixed random probe so every element's gradient is compared.
    """
    def check(lucid_fn, torch_fn, *arrays, grad=None, atol=1e-10, rtol=1e-8):
        grad = grad or [a.dtype.kind == "f" for a in arrays]
        ours = [lucid.Tensor(a.copy(), requires_grad=bool(g)) for a, g in zip(arrays, grad)]
        theirs = [torch.tensor(a.copy(), requires_grad=bool(g)) for a, g in zip(arrays, grad)]
        out, expected = lucid_fn(*ours), torch_fn(*theirs)
        np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), atol=atol, rtol=rtol)
        if any(grad) and expected.requires_grad:
            probe = np.random.default_rng(0).standard_normal(expected.shape)
            out.backward(probe)
            expected.backward(torch.tensor(probe))
            for i, (a, b) in enumerate(zip(ours, theirs)):
                if b.requires_grad:
                    np.testing.assert_allclose(a.grad, b.grad.numpy(), atol=atol, rtol=rtol,
                                               err_msg=f"gradient of input {i}")
        return out, expected
    return check
