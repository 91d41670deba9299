"""lucid._backend and lucid.gpu: device names, the NumPy side of the array-module switch, the clear error
when there is no GPU (naming what is missing), lazy imports of the optional packages; and (marked `gpu`,
skipped without a CUDA GPU) tensors, devices, copies across devices and an MLP on the GPU."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lucid
from lucid import _backend, nn
from lucid.nn import functional as F

from gpu_helpers import needs_gpu
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
def test_the_error_names_the_distribution_and_what_is_missing():
    with pytest.raises(RuntimeError) as info:
        lucid.zeros(2, device="gpu")
    message = str(info.value)
    assert "pip install 'lucid-distributed[gpu]'" in message
    reason = lucid.gpu.unavailable_reason()
    assert reason in message
    assert reason == "CuPy is not installed" or reason.startswith("CuPy finds no CUDA driver or GPU"), reason


def test_without_nvrtc_the_kernel_compiler_names_the_distribution_to_install(monkeypatch):
    from lucid.optim import _backend_cupy
    for name in ("cupy_backends", "cupy_backends.cuda.libs", "cupy_backends.cuda.libs.nvrtc"):
        monkeypatch.setitem(sys.modules, name, None)  # as if CuPy (and its NVRTC binding) were absent
    with pytest.raises(RuntimeError, match=r"NVRTC is not available .*pip install 'lucid-distributed\[gpu\]'"):
        _backend_cupy.nvrtc_version()


@no_gpu
def test_without_a_gpu_there_are_no_devices_to_select():
    assert lucid.gpu.device_count() == 0 and not lucid.gpu.is_available()
    with pytest.raises(ValueError, match=r"invalid GPU index 0: this process sees 0 GPU\(s\)"):
        lucid.gpu.set_device(0)
    assert lucid.gpu.chosen_device() is None
    with pytest.raises(RuntimeError, match="not available"):
        lucid.gpu.current_device()


@pytest.mark.parametrize("bad", [-1, 1.0, "0", True, None])
def test_set_device_refuses_what_is_not_a_gpu_index(bad):
    with pytest.raises(ValueError, match="invalid GPU index"):
        lucid.gpu.set_device(bad)


def test_synchronize_is_a_no_op_when_nothing_imported_cupy():
    code = ("import sys\nfrom lucid import _backend\n_backend.synchronize()\n"
            "print('cupy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]


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


@needs_gpu
@pytest.mark.gpu
def test_the_gpu_probe_ran_a_kernel_and_devices_are_selectable():
    assert lucid.gpu.unavailable_reason() is None and lucid.gpu.is_available()
    count, current = lucid.gpu.device_count(), lucid.gpu.current_device()
    assert count >= 1 and 0 <= current < count
    with pytest.raises(ValueError, match=f"this process sees {count} GPU"):
        lucid.gpu.set_device(count)
    try:
        lucid.gpu.set_device(count - 1)
        assert lucid.gpu.current_device() == count - 1 and lucid.gpu.chosen_device() == count - 1
        assert lucid.zeros(2, device="gpu").data.device.id == count - 1
    finally:
        lucid.gpu.set_device(current)


@needs_gpu
@pytest.mark.gpu
def test_gpu_n_places_the_tensor_on_gpu_n():
    last = lucid.gpu.device_count() - 1
    x = lucid.Tensor([1.0, 2.0], device=f"gpu:{last}")
    assert x.data.device.id == last
    assert x.device == ("gpu" if last == lucid.gpu.current_device() else f"gpu:{last}")
    assert lucid.Tensor([1.0], device="cuda:0").data.device.id == 0
    assert x.to(f"cuda:{last}") is x
    np.testing.assert_array_equal(x.to("cpu").numpy(), [1.0, 2.0])
    with pytest.raises(ValueError, match="does not exist"):
        lucid.Tensor([1.0], device=f"gpu:{last + 1}")


@needs_gpu
@pytest.mark.gpu
def test_copies_between_devices_in_place():
    cpu = lucid.zeros(3)
    gpu = lucid.Tensor([1.0, 2.0, 3.0], device="gpu")
    cpu.copy_(gpu)                                       # a GPU source into a CPU tensor
    np.testing.assert_array_equal(cpu.data, [1.0, 2.0, 3.0])
    gpu.copy_(np.array([4.0, 5.0, 6.0], dtype=np.float32))
    np.testing.assert_array_equal(gpu.numpy(), [4.0, 5.0, 6.0])
    matrix = lucid.zeros(2, 3, device="gpu")
    matrix[1] = np.array([7.0, 8.0, 9.0], dtype=np.float32)   # a NumPy value into a GPU tensor
    matrix[0, np.array([0, 2])] = 1.0                          # a NumPy index array
    np.testing.assert_array_equal(matrix.numpy(), [[1.0, 0.0, 1.0], [7.0, 8.0, 9.0]])
    cpu_matrix = lucid.zeros(2, 3)
    cpu_matrix[0] = gpu.data                                   # a CuPy value into a CPU tensor
    np.testing.assert_array_equal(cpu_matrix.data[0], [4.0, 5.0, 6.0])
    picked = matrix[np.array([1, 0])]
    assert picked.device == "gpu"
    np.testing.assert_array_equal(picked.numpy()[0], [7.0, 8.0, 9.0])


@needs_gpu
@pytest.mark.gpu
def test_transpose_and_permute_backward_on_the_gpu():
    a = np.arange(24.0).reshape(2, 3, 4)
    x = lucid.Tensor(a, requires_grad=True, device="gpu")
    y = x.permute(2, 0, -2)
    assert y.shape == (4, 2, 3)
    (y * lucid.Tensor(np.arange(24.0).reshape(4, 2, 3), device="gpu")).sum().backward()
    np.testing.assert_array_equal(_backend.to_host(x.grad), np.arange(24.0).reshape(4, 2, 3).transpose(1, 2, 0))
    m = lucid.Tensor(a[0], requires_grad=True, device="gpu")
    (m.T * 2).sum().backward()
    np.testing.assert_array_equal(_backend.to_host(m.grad), np.full((3, 4), 2.0))


@needs_gpu
@pytest.mark.gpu
def test_synchronize_waits_for_raw_cupy_work_before_lucid_loaded_cupy():
    code = textwrap.dedent("""
        import cupy
        from gpu_spin import busy_gpu
        from lucid import _backend
        busy_gpu()
        stream = cupy.cuda.get_current_stream()
        assert _backend._cupy is None and not stream.done
        _backend.synchronize(cupy.zeros(1))
        print(stream.done)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                         cwd=os.path.dirname(__file__))
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr[-2000:]
