"""The optimizers on CuPy arrays (skipped without a CUDA GPU): same numbers as on the CPU."""

import numpy as np
import pytest

import lucid
from lucid import nn

from .test_optimizers import gradients, make_params

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not lucid.gpu_available(), reason="needs CuPy and a CUDA GPU")]


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 1e-5)])
def test_gpu_step_equals_cpu_step(config, dtype, rtol):
    cls, kwargs = config
    cpu = make_params(dtype)
    gpu = [nn.Parameter(p.data.copy(), device="gpu") for p in cpu]
    cpu_opt, gpu_opt = cls(cpu, **kwargs), cls(gpu, **kwargs)
    for t in range(10):
        for c, g, grad in zip(cpu, gpu, gradients(t, dtype)):
            c.grad = grad
            g.grad = lucid._backend.to_device(grad, "gpu")
        cpu_opt.step()
        gpu_opt.step()
    for c, g in zip(cpu, gpu):
        assert g.device == "gpu"
        np.testing.assert_allclose(lucid._backend.to_host(g.data), c.data, rtol=rtol, atol=rtol)
    state = gpu_opt.state_dict()["state"]
    assert all(isinstance(v, np.ndarray) for values in state.values() for v in values.values())


def test_model_on_gpu_trains():
    lucid.manual_seed(0)
    model = nn.Linear(4, 1).to("gpu")
    opt = lucid.optim.Adam(model.parameters(), lr=0.05)
    x = lucid.randn(32, 4).to("gpu")
    y = (x.sum(axis=1, keepdims=True) * 0.5)
    for _ in range(200):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-2


@pytest.mark.parametrize("name, shapes", [("Adafactor", [(3, 4), (5,), (), (2, 3, 4)]), ("Muon", [(3, 4), (6, 2)])])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_plain_optimizers_on_the_gpu_equal_the_cpu(name, shapes, dtype, rtol):
    rng = np.random.default_rng(0)
    cpu = [nn.Parameter(np.array(rng.standard_normal(s), dtype=dtype)) for s in shapes]
    gpu = [nn.Parameter(p.data.copy(), device="gpu") for p in cpu]
    cpu_opt, gpu_opt = getattr(lucid.optim, name)(cpu), getattr(lucid.optim, name)(gpu)
    for t in range(5):
        for c, g in zip(cpu, gpu):
            grad = np.array(rng.standard_normal(c.shape), dtype=dtype)
            c.grad, g.grad = grad, lucid._backend.to_device(grad, "gpu")
        cpu_opt.step()
        gpu_opt.step()
    for c, g in zip(cpu, gpu):
        np.testing.assert_allclose(lucid._backend.to_host(g.data), c.data, rtol=rtol, atol=rtol)
    state = gpu_opt.state_dict()["state"]
    assert all(isinstance(v, np.ndarray) for values in state.values() for v in values.values())
