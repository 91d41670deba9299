"""The optimizers on CuPy arrays (marked `gpu`, skipped without a CUDA GPU): the same bits as on the CPU.

Every generated kernel (cuda_cases.py) is run on the device and compared with the NumPy path of its
rule bit for bit, subnormals included; the vocabulary likewise; every optimizer configuration is
stepped 20 times on the GPU and on the CPU (parameters and state), also resumed from a CPU state dict,
per parameter (`fused=False`), after `Module.to("gpu")`, and for the plain optimizers (Adafactor,
Muon, LBFGS) and float16 within a tolerance.
"""

import numpy as np
import pytest

import lucid
from lucid import _backend, nn, optim
from lucid.optim import _backend_cupy, _translate
from lucid.optim._vocabulary import WORDS
from lucid.optim.elementwise import CpuBackend, use_cpu_backend

from gpu_helpers import GPU

from .conftest import CONFIGS, config_id
from .cuda_cases import kernel_cases, lbfgs_rosenbrock
from .test_optimizers import gradients, make_params
from .test_vocabulary import arguments, bits, numpy_form

pytestmark = GPU

STEPS = 20
CASES = kernel_cases()


def host(x):
    return _backend.to_host(x)


def same_bits(a, b) -> bool:
    a, b = np.ascontiguousarray(host(a)), np.ascontiguousarray(host(b))
    unsigned = np.uint32 if a.dtype == np.float32 else np.uint64
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a.view(unsigned), b.view(unsigned)))


def numpy_path(rule, param, grad, state, coefficients, flags):
    previous = use_cpu_backend(CpuBackend.NUMPY)
    try:
        rule.apply(param, grad, state, coefficients, flags)
    finally:
        use_cpu_backend(previous)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_kernel_gives_the_numpy_paths_bits(case):
    label, rule, flags, stored, source = case
    dtype, n = np.dtype(source.dtype), 1031  # not a multiple of the block size
    rng = np.random.default_rng(len(label))
    grad = (rng.standard_normal(n) * (rng.random(n) > 0.2)).astype(dtype)
    grad[:8] = np.finfo(dtype).smallest_subnormal * np.arange(1, 9)  # subnormals must survive
    start = {"param": rng.standard_normal(n).astype(dtype),
             **{s: rng.uniform(0.1, 1.0, n).astype(dtype) for s in stored}}
    coefficients = dict(zip(rule.coefficients, rng.uniform(0.05, 0.95, len(rule.coefficients))))
    cpu = {k: v.copy() for k, v in start.items()}
    gpu = {k: _backend.to_device(v.copy(), "gpu") for k, v in start.items()}
    numpy_path(rule, cpu["param"], grad, {s: cpu[s] for s in stored}, coefficients, flags)
    rule.apply(gpu["param"], _backend.to_device(grad, "gpu"), {s: gpu[s] for s in reversed(stored)},
               coefficients, flags)  # the order state is passed in cannot matter
    for key in start:
        assert same_bits(gpu[key], cpu[key]), f"{label}: {key} differs from the NumPy path"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("word", WORDS, ids=[w.name for w in WORDS])
def test_the_vocabulary_gives_numpys_bits_on_the_gpu(word, dtype):
    cupy = _backend.cupy_module()
    ctype = {np.float32: "float", np.float64: "double"}[dtype]
    params = ", ".join(f"const bool* {a}" if a == "cond" else f"const T* {a}" for a in word.args)
    call = ", ".join(f"{a}[i]" for a in word.args)
    kernel = (f'extern "C" __global__ void run_{word.name}(long long n, T* out, {params}) {{\n'
              "    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
              f"    if (i < n) out[i] = lucid_{word.name}({call});\n}}\n")
    source = _backend_cupy.CudaKernelSource(
        name=f"run_{word.name}", dtype=np.dtype(dtype).name, inputs=(), outputs=(), operation="",
        preamble=f"typedef {ctype} T;\n" + _translate.CUDA_PREAMBLE, kernel=kernel,
        options=_backend_cupy.COMPILE_OPTIONS)
    function = _backend_cupy.load_kernel(source)
    args = arguments(word, dtype)
    expected = numpy_form(word, args)
    out = cupy.empty(expected.shape, dtype)
    device_args = [cupy.asarray(a) for a in args]
    function(((out.size + 127) // 128,), (128,), (np.int64(out.size), out, *device_args))
    got = host(out)
    several_nans = sum(np.isnan(a) for a in args if a.dtype != bool) >= 2
    differ = (bits(got) != bits(expected)) & ~(several_nans & np.isnan(expected) & np.isnan(got))
    assert not differ.any(), f"{word.name}: {np.flatnonzero(differ).size} results differ, first at " \
                             f"{[a[np.flatnonzero(differ)[0]] for a in args]}"


def run(cls, kwargs, dtype, device, steps=STEPS, start=0, opt=None, params=None, nan_at=None):
    params = params if params is not None else [nn.Parameter(p.data, device=device) for p in make_params(dtype)]
    opt = opt if opt is not None else cls(params, **kwargs)
    for t in range(start, start + steps):
        for i, (p, g) in enumerate(zip(params, gradients(t, dtype))):
            if nan_at == (t, i):
                g = g.copy()
                g.flat[0] = np.nan
            p.grad = _backend.to_device(g, device)
        opt.step()
    return params, opt


def assert_same(gpu_params, gpu_opt, cpu_params, cpu_opt, what, tol=None):
    """Parameters and every state entry: the same bits (or within `tol`); state dicts hold host arrays."""
    for i, (g, c) in enumerate(zip(gpu_params, cpu_params)):
        assert g.device == "gpu", f"{what}: param {i} left the GPU"
        if tol is None:
            assert same_bits(g.data, c.data), f"{what}: param {i} differs"
        else:
            np.testing.assert_allclose(host(g.data), c.data, rtol=tol, atol=tol, err_msg=f"{what}: param {i}")
    gs, cs = gpu_opt.state_dict()["state"], cpu_opt.state_dict()["state"]
    assert gs.keys() == cs.keys(), what
    for k in cs:
        assert gs[k].keys() == cs[k].keys(), (what, k)
        for name, value in cs[k].items():
            mine = gs[k][name]
            assert not _backend.is_gpu_array(mine), f"{what}: state {k}.{name} is a device array in state_dict()"
            if tol is None and isinstance(value, np.ndarray) and value.dtype.kind == "f":
                assert same_bits(mine, value), f"{what}: state {k}.{name} differs"
            else:
                np.testing.assert_allclose(np.asarray(mine, np.float64), np.asarray(value, np.float64),
                                           rtol=tol or 0, atol=tol or 0, err_msg=f"{what}: state {k}.{name}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("row", CONFIGS, ids=[config_id(c) for c in CONFIGS])
def test_every_configuration_steps_to_the_cpus_bits_and_resumes_from_a_cpu_state_dict(row, dtype):
    name, kwargs = row
    cls = getattr(optim, name)
    cpu_params, cpu_opt = run(cls, kwargs, dtype, "cpu")
    gpu_params, gpu_opt = run(cls, kwargs, dtype, "gpu")
    assert_same(gpu_params, gpu_opt, cpu_params, cpu_opt, f"{name}{kwargs}")
    half_params, half_opt = run(cls, kwargs, dtype, "cpu", steps=STEPS // 2)
    moved = [nn.Parameter(p.data.copy(), device="gpu") for p in half_params]
    resumed = cls(moved, **kwargs)
    resumed.load_state_dict(half_opt.state_dict())
    run(cls, kwargs, dtype, "gpu", steps=STEPS - STEPS // 2, start=STEPS // 2, opt=resumed, params=moved)
    assert_same(moved, resumed, cpu_params, cpu_opt, f"{name}{kwargs} resumed on the GPU")


@pytest.mark.parametrize("name, kwargs", [("Adam", dict(lr=0.05, amsgrad=True)),
                                          ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True))])
def test_the_per_parameter_path_on_the_gpu(name, kwargs):
    cls = getattr(optim, name)
    cpu_params, cpu_opt = run(cls, kwargs, np.float64, "cpu")
    gpu_params, gpu_opt = run(cls, dict(kwargs, fused=False), np.float64, "gpu")
    assert_same(gpu_params, gpu_opt, cpu_params, cpu_opt, f"{name} fused=False")


def test_module_to_gpu_after_the_optimizer_was_built():
    def model():
        lucid.manual_seed(0)
        return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    rng = np.random.default_rng(5)
    ref, moved = model(), model()
    ref_opt, moved_opt = optim.Adam(ref.parameters(), lr=0.05), optim.Adam(moved.parameters(), lr=0.05)
    for t in range(4):
        if t == 2:
            moved.to("gpu")
        x = rng.standard_normal((12, 5))
        for m, o in ((ref, ref_opt), (moved, moved_opt)):
            o.zero_grad()
            device = next(m.parameters()).device
            (m(lucid.Tensor(x, device=device)) ** 2).mean().backward()
            o.step()
    assert_same(list(moved.parameters()), moved_opt, list(ref.parameters()), ref_opt, "Module.to(gpu)", tol=1e-10)


def test_lbfgs_with_a_line_search_on_the_gpu():
    assert_same(*lbfgs_rosenbrock("gpu"), *lbfgs_rosenbrock("cpu"), "LBFGS", tol=1e-9)


@pytest.mark.parametrize("name", ["Adam", "Rprop"])
def test_float16_runs_the_numpy_path_on_cupy_arrays(name):
    kwargs = dict(lr=0.01, eps=1e-4) if name == "Adam" else dict(lr=0.01)
    cls = getattr(optim, name)
    cpu_params, cpu_opt = run(cls, kwargs, np.float16, "cpu", steps=5)
    gpu_params, gpu_opt = run(cls, kwargs, np.float16, "gpu", steps=5)
    assert_same(gpu_params, gpu_opt, cpu_params, cpu_opt, f"{name} float16", tol=1e-2)


def test_a_nan_gradient_in_rprop_is_zero_on_both_devices():
    """sign(NaN) is 0 in every form of the vocabulary: the parameter keeps its value on both."""
    cpu_params, cpu_opt = run(optim.Rprop, dict(lr=0.05), np.float64, "cpu", steps=6, nan_at=(3, 2))
    gpu_params, gpu_opt = run(optim.Rprop, dict(lr=0.05), np.float64, "gpu", steps=6, nan_at=(3, 2))
    assert_same(gpu_params, gpu_opt, cpu_params, cpu_opt, "Rprop with a NaN gradient")
    assert not np.isnan(host(gpu_params[2].data)).any()


def test_float32_subnormals_are_kept_on_the_gpu():
    """Adam's exp_avg_sq of 1e-20 gradients is subnormal in float32 (about 1e-41): not flushed to 0."""
    def tiny(device):
        p = nn.Parameter(np.ones(1000, dtype=np.float32), device=device)
        opt = optim.Adam([p], lr=1e-3)
        for _ in range(3):
            p.grad = _backend.to_device(np.full(1000, 1e-20, dtype=np.float32), device)
            opt.step()
        return host(opt.state[p]["exp_avg_sq"]), host(p.data)
    (cpu_sq, cpu_p), (gpu_sq, gpu_p) = tiny("cpu"), tiny("gpu")
    assert 0 < cpu_sq[0] < np.finfo(np.float32).tiny  # subnormal on the CPU
    assert same_bits(gpu_sq, cpu_sq) and same_bits(gpu_p, cpu_p)


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
    assert_same(gpu, gpu_opt, cpu, cpu_opt, name, tol=rtol)


def test_kernels_are_compiled_once_and_cached_on_disk(tmp_path, monkeypatch):
    from lucid.optim import _cache
    monkeypatch.setenv("LUCID_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_cache, "_directories", {})
    source = CASES[0][4]
    _backend_cupy.load_kernel(source)
    cubins = list(tmp_path.rglob("*.cubin"))
    assert len(cubins) == 1 and source.name in cubins[0].name
    mtime = cubins[0].stat().st_mtime_ns
    _backend_cupy.load_kernel(source)  # loaded, not compiled again
    assert list(tmp_path.rglob("*.cubin")) == cubins and cubins[0].stat().st_mtime_ns == mtime


def test_a_non_contiguous_parameter_is_refused_rather_than_written_to_a_copy():
    cupy = _backend.cupy_module()
    rule = optim.SGD.rule
    param = cupy.zeros(8)[::2]
    flags = dict.fromkeys(rule.flags, False)
    coefficients = dict.fromkeys(rule.coefficients, 0.5)
    with pytest.raises(ValueError, match="must be contiguous"):
        rule.apply(param, cupy.ones(4), {}, coefficients, flags)
    grad = cupy.ones(8)[::2]  # a non-contiguous input is fine
    param = cupy.zeros(4)
    rule.apply(param, grad, {}, coefficients, flags)
    assert not bool(cupy.all(param == 0))

