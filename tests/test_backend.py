"""lucid._backend: device names, the NumPy side of the array-module switch, the clear error when there is no
GPU, lazy imports of the optional packages; and (skipped without a CUDA GPU) tensors and an MLP on the GPU."""

import subprocess
import sys

import numpy as np
import pytest

import lucid
from lucid import _backend, nn
from lucid.nn import functional as F

needs_gpu = pytest.mark.skipif(not lucid.gpu_available(), reason="needs CuPy and a CUDA GPU")
no_gpu = pytest.mark.skipif(lucid.gpu_available(), reason="checks the error raised without a GPU")


# ---------------------------------------------------------------------------- device names

@pytest.mark.parametrize("spelling, device", [
    ("cpu", "cpu"), ("CPU", "cpu"), ("cpu:0", "cpu"), ("gpu", "gpu"), ("cuda", "gpu"), ("GPU", "gpu"),
    ("cuda:0", "gpu:0"), ("gpu:1", "gpu:1"), ("CUDA:12", "gpu:12"),
])
def test_normalize_device(spelling, device):
    assert _backend.normalize_device(spelling) == device


@pytest.mark.parametrize("bad", ["tpu", "mps", "", "cuda0", "gpu:", "gpu:-1", "gpu:x", "cpu:1", "gpu:\u0661",
                                 None, 0, ["cpu"]])
def test_normalize_device_rejects_unknown_devices_by_name(bad):
    with pytest.raises(ValueError) as info:
        _backend.normalize_device(bad)
    assert repr(bad) in str(info.value) and "unknown device" in str(info.value)


# ---------------------------------------------------------------------------- the NumPy side

def test_numpy_arrays_live_on_the_cpu():
    a = np.ones(3)
    assert _backend.array_module(a) is np
    assert _backend.array_module(np.float32(1.0)) is np
    assert _backend.device_of(a) == "cpu" and _backend.device_of(2.0) == "cpu"
    assert not _backend.is_gpu_array(a)
    assert _backend.to_host(a) is a
    assert _backend.to_device(a, "cpu") is a
    host = _backend.to_host([1.0, 2.0])
    assert isinstance(host, np.ndarray)
    assert _backend.module_for("cpu") is np
    _backend.synchronize(a)          # no-ops on the CPU
    _backend.synchronize()


def test_gpu_available_is_a_bool():
    assert isinstance(lucid.gpu_available(), bool)
    assert lucid.gpu_available() is _backend.gpu_available()


def test_tensor_device_is_cpu():
    x = lucid.Tensor([1.0], device="cpu")
    assert x.device == "cpu" and isinstance(x.data, np.ndarray)
    assert lucid.zeros(2, device="cpu").device == "cpu"
    m = nn.Linear(2, 2).to("cpu")
    assert all(isinstance(p.data, np.ndarray) for p in m.parameters())


# ---------------------------------------------------------------------------- no GPU: a clear error

GPU_REQUESTS = [
    ("Tensor", lambda d: lucid.Tensor([1.0], device=d)),
    ("tensor", lambda d: lucid.tensor([1.0], device=d)),
    ("zeros", lambda d: lucid.zeros(2, device=d)),
    ("ones", lambda d: lucid.ones(2, device=d)),
    ("full", lambda d: lucid.full((2,), 1.0, device=d)),
    ("arange", lambda d: lucid.arange(3, device=d)),
    ("eye", lambda d: lucid.eye(2, device=d)),
    ("randn", lambda d: lucid.randn(2, device=d)),
    ("rand", lambda d: lucid.rand(2, device=d)),
    ("randint", lambda d: lucid.randint(0, 3, (2,), device=d)),
    ("Tensor.to", lambda d: lucid.Tensor([1.0]).to(d)),
    ("Parameter", lambda d: nn.Parameter([1.0], device=d)),
    ("Module.to", lambda d: nn.Linear(2, 2).to(d)),
    ("to_device", lambda d: _backend.to_device(np.ones(2), d)),
]


@no_gpu
@pytest.mark.parametrize("device", ["gpu", "cuda", "cuda:0"])
@pytest.mark.parametrize("name, request_gpu", GPU_REQUESTS, ids=[n for n, _ in GPU_REQUESTS])
def test_asking_for_the_gpu_without_one_is_a_clear_runtime_error(name, request_gpu, device):
    with pytest.raises(RuntimeError, match="device 'gpu' is not available"):
        request_gpu(device)


@no_gpu
def test_module_to_gpu_failure_leaves_the_module_on_the_cpu():
    m = nn.Linear(2, 2)
    before = [p.data for p in m.parameters()]
    with pytest.raises(RuntimeError, match="not available"):
        m.to("gpu")
    assert all(p.data is b and p.device == "cpu" for p, b in zip(m.parameters(), before))


# ---------------------------------------------------------------------------- lazy imports

def test_import_lucid_imports_no_optional_package():
    code = ("import sys, lucid, lucid.nn, lucid.optim, lucid.data, lucid.datasets\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('cupy', 'numba', 'mpi4py', 'torch',"
            " 'distributed'))\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout


# ---------------------------------------------------------------------------- on the GPU

@needs_gpu
@pytest.mark.gpu
def test_tensor_round_trip_to_the_gpu():
    a = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    x = lucid.Tensor(a)
    g = x.to("gpu")
    assert g.device == "gpu" and _backend.is_gpu_array(g.data)
    assert g.dtype == np.float32 and g.shape == (2, 3)
    assert x.to("cuda").device == "gpu" and g.to("gpu") is g
    back = g.to("cpu")
    assert back.device == "cpu" and isinstance(back.data, np.ndarray)
    np.testing.assert_array_equal(back.numpy(), a)
    np.testing.assert_array_equal(g.numpy(), a)                  # numpy() copies to the host
    np.testing.assert_array_equal(np.asarray(g), a)
    assert lucid.zeros(2, device="gpu").device == "gpu"
    assert lucid.Tensor([1.0], device="cuda:0").device == "gpu"
    with pytest.raises(RuntimeError, match="same device"):
        x + g


@needs_gpu
@pytest.mark.gpu
def test_gradient_flows_back_across_devices():
    x = lucid.Tensor([1.0, 2.0], requires_grad=True)
    (x.to("gpu") * 3).sum().backward()
    assert isinstance(x.grad, np.ndarray)
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_mlp_forward_backward_on_the_gpu_equals_the_cpu(dtype, rtol):
    lucid.manual_seed(0)
    cpu = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).to(dtype)
    gpu = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).to(dtype)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("gpu")
    assert all(p.device == "gpu" for p in gpu.parameters())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 8)).astype(dtype)
    y = rng.integers(0, 4, 5)
    losses = []
    for model, device in ((cpu, "cpu"), (gpu, "gpu")):
        out = model(lucid.Tensor(x, device=device))
        loss = F.cross_entropy(out, lucid.Tensor(y, device=device))
        loss.backward()
        losses.append((out.numpy(), loss.item()))
    np.testing.assert_allclose(losses[1][0], losses[0][0], rtol=rtol, atol=rtol)
    assert losses[1][1] == pytest.approx(losses[0][1], rel=rtol)
    for (name, pc), pg in zip(cpu.named_parameters(), gpu.parameters()):
        assert pg.grad is not None and _backend.is_gpu_array(pg.grad), name
        np.testing.assert_allclose(_backend.to_host(pg.grad), pc.grad, rtol=rtol, atol=rtol, err_msg=name)
