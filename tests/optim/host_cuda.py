"""Compile CUDA kernel sources as C++ on the host (g++), so the GPU translation is checked without a GPU.

A `CudaKernelSource` (lucid.optim.elementwise.cuda_kernel_source) becomes an `extern "C"` loop whose
parameters are the kernel's inputs and outputs in kernel order: array inputs as const pointers, scalar
inputs as doubles (CuPy broadcasts them), outputs as pointers read and written in place. Called with
`kernel_arguments(...)`, it exercises the same binding by name the CuPy backend uses.
"""

import ctypes
import shutil
import subprocess
import textwrap

import numpy as np
import pytest

from lucid.optim import _translate

HAVE_GXX = shutil.which("g++") is not None
needs_gxx = pytest.mark.skipif(not HAVE_GXX, reason="no host C++ compiler")

PRELUDE = """
#include <cmath>
#define __device__
#define __forceinline__ inline
using std::sqrt; using std::fabs;
{preamble}
typedef {ctype} T;
"""


def kernel_function(name: str, source, arrays: set) -> str:
    """One source as a C function `name`; `arrays` names the inputs that are arrays (the rest are scalars)."""
    params, loads = ["long n"], []
    for inp in source.inputs:
        if inp in arrays:
            params.append(f"const T* {inp}_")
            loads.append(f"const T {inp} = {inp}_[i];")
        else:
            params.append(f"T {inp}")
    for out in source.outputs:
        params.append(f"T* {out}_")
        loads.append(f"T& {out} = {out}_[i];")
    body = textwrap.indent("\n".join(loads + [source.operation]), "        ")
    return f'extern "C" void {name}({", ".join(params)}) {{\n    for (long i = 0; i < n; ++i) {{\n{body}\n    }}\n}}\n'


def compile_functions(functions: list, tmp_path, ctype: str = "double", preamble=None):
    """Compile C function definitions into one library; return it (ctypes.CDLL)."""
    source = PRELUDE.format(preamble=_translate.CUDA_PREAMBLE if preamble is None else preamble,
                            ctype=ctype) + "\n".join(functions)
    src, lib = tmp_path / "kernels.cpp", tmp_path / "kernels.so"
    src.write_text(source)
    subprocess.run(["g++", "-O1", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC", str(src),
                    "-o", str(lib)], check=True, capture_output=True, timeout=300)
    return ctypes.CDLL(str(lib))


def call(function, n: int, arguments: list, dtype=np.float64) -> None:
    """Call a compiled kernel with arrays (by pointer) and scalars (as the element type), in order."""
    scalar = ctypes.c_double if np.dtype(dtype) == np.float64 else ctypes.c_float
    converted = [ctypes.c_long(n)]
    for arg in arguments:
        if isinstance(arg, np.ndarray):
            assert arg.dtype == dtype and arg.flags.c_contiguous
            converted.append(arg.ctypes.data_as(ctypes.c_void_p))
        else:
            converted.append(scalar(float(arg)))
    function.argtypes = None
    function(*converted)
