"""Every CUDA kernel lucid.optim generates, compiled by NVRTC without a GPU (marked `cuda_compile`).

Each kernel goes through `_backend_cupy.compile_kernel`, the very function the GPU path compiles with
(CuPy's NVRTC binding, lucid's options), for an H100/H200 (sm_90). Its PTX must have no fused
multiply-add (the CPU paths round every product) and no flush-to-zero (`.ftz`: float32 subnormals
would become 0, which NumPy and numba never do), its entry must take the arguments the source names,
and a cubin must come out. The vocabulary's CUDA forms are compiled the same way.

Skipped without CuPy's NVRTC (the README's plain test command installs no `gpu` extra); `.ci/run`
installs the extra and sets LUCID_REQUIRE_NVRTC=1, which turns that skip into a failure.
"""

import os
import re
import time

import numpy as np
import pytest

from lucid.optim import _backend_cupy, _translate
from lucid.optim._vocabulary import WORDS

from .cuda_cases import kernel_cases

ARCH = 90  # H100 / H200


def _nvrtc_missing():
    try:
        _backend_cupy.nvrtc_version()
    except RuntimeError as exc:
        return str(exc)
    return None


MISSING = _nvrtc_missing()
if MISSING and os.environ.get("LUCID_REQUIRE_NVRTC") == "1":
    raise RuntimeError(f"LUCID_REQUIRE_NVRTC=1 but {MISSING}")
pytestmark = [pytest.mark.cuda_compile, pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]

CASES = kernel_cases()
FMA = re.compile(r"\bfma\.")
FTZ = re.compile(r"\.ftz\b")


def check_ptx(ptx: str, name: str, arguments: int) -> None:
    fused = [line.strip() for line in ptx.splitlines() if FMA.search(line)]
    flushed = [line.strip() for line in ptx.splitlines() if FTZ.search(line)]
    assert not fused, f"{name}: fused multiply-adds in the PTX: {fused[:3]}"
    assert not flushed, f"{name}: flush-to-zero instructions in the PTX: {flushed[:3]}"
    entry = re.search(r"\.entry\s+(\w+)\s*\((.*?)\)", ptx, re.S)
    assert entry is not None and entry.group(1) == name, f"{name}: no entry of that name in the PTX"
    assert entry.group(2).count(".param") == arguments, f"{name}: the entry takes {entry.group(2)}"


def test_the_compile_options_keep_ieee_arithmetic():
    assert _backend_cupy.COMPILE_OPTIONS == ("--fmad=false", "--ftz=false", "--prec-div=true", "--prec-sqrt=true")
    assert ARCH in _backend_cupy.supported_architectures()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_generated_kernel_compiles_without_fma_or_ftz(case):
    label, rule, flags, stored, source = case
    cubin, ptx = _backend_cupy.compile_kernel(source, ARCH)
    assert len(cubin) > 0
    # the element count, then the gradient and coefficients, then the arrays written in place
    check_ptx(ptx.decode(), source.name, 1 + len(source.inputs) + len(source.outputs))
    ctype = {"float32": "f32", "float64": "f64"}[source.dtype]
    assert f".param .{ctype} {source.name}_param_2" in ptx.decode()  # the first coefficient, by value


def test_the_kernels_count_and_time(request):
    """How many kernels the CI compiles, and how long one takes (printed with -s or in the report)."""
    start = time.perf_counter()
    _backend_cupy.compile_kernel(CASES[0][4], ARCH)
    each = time.perf_counter() - start
    request.node.user_properties.append(("kernels", len(CASES)))
    print(f"{len(CASES)} distinct kernels; one compiles in {each:.2f}s")
    assert len(CASES) >= 150  # every rule, flag combination and configuration: a drop means cases got lost


@pytest.mark.parametrize("dtype", ["float", "double"])
def test_the_vocabulary_compiles_without_fma_or_ftz(dtype):
    kernels = []
    for word in WORDS:
        params = ", ".join(f"const bool* {a}" if a == "cond" else f"const T* {a}" for a in word.args)
        call = ", ".join(f"{a}[i]" for a in word.args)
        kernels.append(f'extern "C" __global__ void run_{word.name}(long long n, T* out, {params}) {{\n'
                       "    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
                       f"    if (i < n) out[i] = lucid_{word.name}({call});\n}}\n")
    source = _backend_cupy.CudaKernelSource(
        name=f"vocabulary_{dtype}", dtype=dtype, inputs=(), outputs=(), operation="",
        preamble=f"typedef {dtype} T;\n" + _translate.CUDA_PREAMBLE, kernel="\n".join(kernels),
        options=_backend_cupy.COMPILE_OPTIONS)
    _, ptx = _backend_cupy.compile_kernel(source, ARCH)
    text = ptx.decode()
    for word in WORDS:
        body = text.split(f".entry run_{word.name}(", 1)[1].split(".entry", 1)[0]
        assert not FMA.search(body) and not FTZ.search(body), f"{word.name} ({dtype}): {body}"


def test_a_source_that_does_not_compile_names_the_kernel_and_shows_the_log():
    source = _backend_cupy.CudaKernelSource(name="broken", dtype="float32", inputs=(), outputs=(), operation="",
                                            preamble="", kernel='extern "C" __global__ void broken() { x = 1; }',
                                            options=_backend_cupy.COMPILE_OPTIONS)
    with pytest.raises(RuntimeError, match=r"(?s)could not compile the kernel broken.*identifier \"x\""):
        _backend_cupy.compile_kernel(source, ARCH)


def test_compiled_kernels_keep_float32_subnormals_in_the_ptx_even_where_cupy_would_flush():
    """The reason lucid compiles its kernels itself: CuPy's own path appends -ftz=true, which wins."""
    source = next(c[4] for c in CASES if c[4].dtype == "float32")
    nvrtc = __import__("cupy_backends.cuda.libs.nvrtc", fromlist=["nvrtc"])
    program = nvrtc.createProgram(source.code, "probe.cu", [], [])
    try:
        nvrtc.compileProgram(program, [f"--gpu-architecture=sm_{ARCH}", *source.options, "-ftz=true"])
        assert FTZ.search(nvrtc.getPTX(program).decode())  # CuPy's appended option would flush
    finally:
        nvrtc.destroyProgram(program)
    _, ptx = _backend_cupy.compile_kernel(source, ARCH)
    assert not FTZ.search(ptx.decode())
