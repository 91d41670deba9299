"""The rule compiler: the rule language, the on-disk kernel cache, and the CUDA translation.

The CUDA body is checked without a GPU by compiling it as C++ on the host (g++) and comparing with
the NumPy path bit for bit; a real GPU run happens in test_gpu.py where one exists.
"""

import ctypes
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lucid import optim
from lucid.optim import _kernels, _translate
from lucid.optim._kernels import CpuBackend, ElementwiseRule, use_cpu_backend
from lucid.optim._math import where

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
            rule.apply(p, np.linspace(0, 1, 5, dtype=np.float32), {}, (0.1,), {"maximize": False})
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
        (kernel,) = optim.Adam.rule._numba_kernels.values()
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

HOST_HARNESS = """
#include <cmath>
#define __device__
#define __forceinline__ inline
using std::sqrt; using std::fabs;
{preamble}
typedef double T;
extern "C" void run(long n, T* param_, const T* grad_, {state_args}{coefficient_args}) {{
    for (long i = 0; i < n; ++i) {{
        T& param = param_[i];
        const T lucid_grad = grad_[i];  // CuPy passes inputs as const
{state_refs}
{body}
    }}
}}
"""


def compile_on_host(rule, flags, active, tmp_path):
    _, _, body = _kernels.cuda_kernel_parts(rule, flags, active)
    source = HOST_HARNESS.format(
        preamble=_translate.CUDA_PREAMBLE,
        state_args="".join(f"T* {name}_, " for name in rule.state if name in active),
        coefficient_args=", ".join(f"T {c}" for c in rule.coefficients),
        state_refs="\n".join(f"        T& {name} = {name}_[i];" for name in rule.state if name in active),
        body=textwrap.indent(body, "        "))
    src, lib = tmp_path / "rule.cpp", tmp_path / "rule.so"
    src.write_text(source)
    subprocess.run(["g++", "-O1", "-ffp-contract=off", "-shared", "-fPIC", str(src), "-o", str(lib)],
                   check=True, capture_output=True, timeout=120)
    return ctypes.CDLL(str(lib)).run


def flag_settings(rule):
    """All flags off, all on, and each one alone."""
    settings = [dict.fromkeys(rule.flags, False), dict.fromkeys(rule.flags, True)]
    settings += [{f: f == one for f in rule.flags} for one in rule.flags]
    return settings


@pytest.mark.skipif(shutil.which("g++") is None, reason="no host C++ compiler")
@pytest.mark.parametrize("name", sorted(RULES))
def test_cuda_translation_computes_what_numpy_computes(name, tmp_path):
    rule = RULES[name].rule
    rng = np.random.default_rng(0)
    n = 64
    for k, flags in enumerate(flag_settings(rule)):
        active = rule.state
        run = compile_on_host(rule, flags, active, tmp_path / str(k) if os.makedirs(tmp_path / str(k)) is None
                              else tmp_path)
        coefficients = tuple(float(c) for c in rng.uniform(0.05, 0.95, len(rule.coefficients)))
        grad = rng.standard_normal(n) * (rng.random(n) > 0.2)
        arrays = {"param": rng.standard_normal(n), **{s: rng.uniform(0.1, 1.0, n) for s in rule.state}}
        host = {k2: v.copy() for k2, v in arrays.items()}
        ptr = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))  # noqa: E731
        run.argtypes = None
        run(ctypes.c_long(n), ptr(host["param"]), ptr(grad), *(ptr(host[s]) for s in rule.state),
            *(ctypes.c_double(c) for c in coefficients))
        previous = use_cpu_backend(CpuBackend.NUMPY)
        try:
            rule.apply(arrays["param"], grad, {s: arrays[s] for s in rule.state}, coefficients, flags)
        finally:
            use_cpu_backend(previous)
        for key in arrays:
            np.testing.assert_array_equal(host[key], arrays[key], err_msg=f"{name} {flags} {key}")
