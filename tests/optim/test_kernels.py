"""The rule compiler: the rule language, the on-disk kernel cache, and the CUDA translation.

The CUDA kernels are checked without a GPU by compiling their source as C++ on the host (g++, see
host_cuda.py), called through the CuPy backend's own argument binding, and compared with the NumPy
path bit for bit; a real GPU run happens in test_gpu.py where one exists.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lucid import nn, optim
from lucid.optim import _backend_cupy, _translate
from lucid.optim.elementwise import CpuBackend, ElementwiseRule, cuda_kernel_source, use_cpu_backend, where

from .conftest import CONFIGS, config_id
from .host_cuda import call, compile_functions, needs_gxx

RULES = {cls.__name__: cls for cls in (optim.SGD, optim.Adam, optim.Adamax, optim.NAdam, optim.RAdam,
                                       optim.RMSprop, optim.Adagrad, optim.Adadelta, optim.ASGD,
                                       optim.Rprop, optim.SparseAdam)}


# ---------------------------------------------------------------------------- the rule language

def data_dependent_if(param, grad, lr):
    if grad > 0:
        param = param - lr
    return (param,)


def unknown_call(param, grad, lr):
    param = np.exp(grad)
    return (param,)


def no_tuple(param, grad, lr):
    return param - lr * grad


def flag_as_value(param, grad, lr, *, maximize):
    param = param - lr * maximize
    return (param,)


@pytest.mark.parametrize("fn, message", [
    (data_dependent_if, "`if` may test flags only"),
    (unknown_call, "unsupported expression"),
    (no_tuple, "must return a tuple"),
    (flag_as_value, "flag 'maximize' used as a value"),
])
def test_rules_outside_the_language_are_refused(fn, message):
    with pytest.raises(_translate.RuleSyntaxError, match=message):
        ElementwiseRule(fn, state=())


def clipped_step(param, grad, lr, *, maximize):
    if maximize:
        grad = -grad
    param = where(grad > 0.5, param - lr * 0.5, param - lr * grad)
    return (param,)


def test_literals_keep_the_array_dtype_on_every_backend():
    rule = ElementwiseRule(clipped_step, state=())
    results = []
    for backend in (CpuBackend.NUMBA, CpuBackend.NUMPY):
        previous = use_cpu_backend(backend)
        try:
            p = np.full(5, 1.0, dtype=np.float32)
            rule.apply(p, np.linspace(0, 1, 5, dtype=np.float32), {}, {"lr": 0.1}, {"maximize": False})
            results.append(p)
        finally:
            use_cpu_backend(previous)
    assert results[0].dtype == np.float32
    np.testing.assert_array_equal(results[0], results[1])


# ---------------------------------------------------------------------------- the disk cache

def test_a_second_process_loads_the_kernel_from_the_disk_cache(tmp_path):
    script = textwrap.dedent("""
        import numpy as np
        from lucid import nn, optim
        w = nn.Parameter(np.ones(8, dtype=np.float32))
        opt = optim.Adam([w], lr=0.1)
        w.grad = np.ones(8, dtype=np.float32)
        opt.step()
        (kernel,) = [k for key, k in optim.Adam.rule.kernels.items() if key[0] == "numba"]
        print(sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values()))
    """)
    env = {**os.environ, "LUCID_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                           timeout=120) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert runs[0].stdout.split() == ["0", "1"]  # compiled
    assert runs[1].stdout.split() == ["1", "0"]  # loaded
    assert any(name.endswith(".py") for name in os.listdir(next(tmp_path.iterdir())))


# ---------------------------------------------------------------------------- the CUDA translation

def flag_settings(rule):
    """All flags off, all on, and each one alone."""
    settings = [dict.fromkeys(rule.flags, False), dict.fromkeys(rule.flags, True)]
    settings += [{f: f == one for f in rule.flags} for one in rule.flags]
    return settings


RULES = {cls.__name__: cls for cls in (optim.SGD, optim.Adam, optim.Adamax, optim.NAdam, optim.RAdam,
                                       optim.RMSprop, optim.Adagrad, optim.Adadelta, optim.ASGD,
                                       optim.Rprop, optim.SparseAdam)}


def rule_cases(name):
    """Every flag setting of a rule, all its state stored, with coefficients in (0.05, 0.95)."""
    rule = RULES[name].rule
    rng = np.random.default_rng(1)
    return rule, [(flags, rule.state, dict(zip(rule.coefficients, rng.uniform(0.05, 0.95, len(rule.coefficients)))))
                  for flags in flag_settings(rule)]


def config_cases(row):
    """A configuration's real flags, state (in the optimizer's order, and reversed) and first coefficients."""
    name, kwargs = row
    opt = getattr(optim, name)([nn.Parameter(np.ones(3))], **kwargs)
    group = opt.param_groups[0]
    order = tuple(opt.state_init(group))
    coefficients, _ = opt.step_coefficients(group, {})
    flags = opt.rule_flags(group)
    return opt.rule, [(flags, order, coefficients), (flags, order[::-1], coefficients)]


CASES = {**{("rule", name): rule_cases(name) for name in sorted(RULES)},
         **{("config", config_id(row)): config_cases(row) for row in CONFIGS}}


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """Every case's kernel, its very CUDA text compiled on the host in one library: {(case, k): (function, source)}."""
    kernels, sources = {}, {}
    for key, (rule, cases) in CASES.items():
        for k, (flags, order, _) in enumerate(cases):
            source = sources[key, k] = cuda_kernel_source(rule, np.float64, flags, order)
            kernels[source.name] = source.kernel
    library = compile_functions(list(kernels.values()), tmp_path_factory.mktemp("host_cuda"))
    return {key: (getattr(library, source.name), source) for key, source in sources.items()}


def host_against_numpy(key, host_kernels, n=64, seed=0):
    """Run each case of CASES[key] through its host-compiled CUDA kernel (arguments bound as the CuPy
    backend binds them) and through the NumPy backend, from the same inputs; return the results."""
    rule, cases = CASES[key]
    results = []
    for k, (flags, order, coefficients) in enumerate(cases):
        function, source = host_kernels[key, k]
        rng = np.random.default_rng(seed)  # every case starts from the same numbers
        grad = rng.standard_normal(n) * (rng.random(n) > 0.2)
        start = {"param": rng.standard_normal(n), **{s: rng.uniform(0.1, 1.0, n) for s in sorted(order)}}
        host = {name: v.copy() for name, v in start.items()}
        values = tuple(float(coefficients[c]) for c in rule.coefficients)
        state = {name: host[name] for name in order}  # the optimizer's order, bound by name
        call(function, n, _backend_cupy.kernel_arguments(source, host["param"], grad, state, values))
        plain = {name: v.copy() for name, v in start.items()}
        previous = use_cpu_backend(CpuBackend.NUMPY)
        try:
            rule.apply(plain["param"], grad, {name: plain[name] for name in order}, coefficients, flags)
        finally:
            use_cpu_backend(previous)
        results.append((f"{flags} {order}", host, plain))
    return results


def assert_host_equals_numpy(results, what):
    for case, host, plain in results:
        for key in plain:
            np.testing.assert_array_equal(host[key], plain[key], err_msg=f"{what} {case} {key}")


@needs_gxx
@pytest.mark.parametrize("name", sorted(RULES))
def test_cuda_translation_computes_what_numpy_computes(name, host_kernels):
    assert_host_equals_numpy(host_against_numpy(("rule", name), host_kernels), name)


@needs_gxx
@pytest.mark.parametrize("row", CONFIGS, ids=[config_id(c) for c in CONFIGS])
def test_gpu_kernels_bind_state_by_name_in_any_order(row, host_kernels):
    results = host_against_numpy(("config", config_id(row)), host_kernels)
    assert_host_equals_numpy(results, row[0])
    for key in results[0][2]:  # the order changes nothing
        np.testing.assert_array_equal(results[0][2][key], results[1][2][key])


def test_kernel_source_needs_no_gpu_and_names_its_arguments():
    rule = optim.RMSprop.rule
    flags = dict(maximize=False, has_weight_decay=True, centered=True, has_momentum=True)
    source = cuda_kernel_source(rule, np.float32, flags, ("momentum_buffer", "square_avg", "grad_avg"))
    assert source.inputs == ("lucid_grad", *rule.coefficients)
    assert source.outputs == ("param", "square_avg", "grad_avg", "momentum_buffer")  # the rule's order
    signature = source.kernel.split("(", 1)[1].split(")", 1)[0]
    assert signature == ", ".join(["const long long lucid_n", "const float* lucid_p_grad",
                                   *(f"const float {c}" for c in rule.coefficients),
                                   *(f"float* lucid_p_{o}" for o in source.outputs)])
    assert "lucid_sqrt" in source.operation and "lucid_sqrt" in source.preamble
    assert source.code == source.preamble + source.kernel and source.name in source.kernel
    arrays = {name: np.full(2, k) for k, name in enumerate(("momentum_buffer", "square_avg", "grad_avg"))}
    args = _backend_cupy.kernel_arguments(source, "P", "G", arrays, tuple(range(len(rule.coefficients))))
    assert args[0] == "G" and args[len(source.inputs)] == "P"
    assert [a[0] for a in args[len(source.inputs) + 1:]] == [1, 2, 0]  # square_avg, grad_avg, momentum_buffer
    with pytest.raises(TypeError, match="float32 and float64"):
        cuda_kernel_source(rule, np.float16, flags, ())
