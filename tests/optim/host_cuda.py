"""Compile CUDA kernel sources as C++ on the host (g++), so the GPU translation is checked without a GPU.

A `CudaKernelSource` (lucid.optim.elementwise.cuda_kernel_source) is compiled as it stands: its
`kernel` is the very text NVRTC compiles on a GPU, with the CUDA keywords defined away and a grid of
one thread, so its grid-stride loop visits every element in order. Called with `kernel_arguments(...)`,
it exercises the same binding by name the CuPy backend uses.
"""

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from lucid.optim import _translate

HAVE_GXX = shutil.which("g++") is not None
needs_gxx = pytest.mark.skipif(not HAVE_GXX, reason="no host C++ compiler")

PRELUDE = """
#include <cmath>
#define __global__
#define __device__
#define __forceinline__ inline
using std::sqrt; using std::fabs;
struct lucid_host_dim {{ long long x; }};
static const lucid_host_dim threadIdx = {{0}}, blockIdx = {{0}}, blockDim = {{1}}, gridDim = {{1}};
typedef {ctype} T;
{preamble}
"""


def compile_functions(functions: list, tmp_path, ctype: str = "double", preamble=None):
    """Compile C function definitions (kernels' `kernel` texts included) into one library; return it."""
    source = PRELUDE.format(preamble=_translate.CUDA_PREAMBLE if preamble is None else preamble,
                            ctype=ctype) + "\n".join(functions)
    src, lib = tmp_path / "kernels.cpp", tmp_path / "kernels.so"
    src.write_text(source)
    subprocess.run(["g++", "-O1", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC", str(src),
                    "-o", str(lib)], check=True, capture_output=True, timeout=300)
    return ctypes.CDLL(str(lib))


def call(function, n: int, arguments: list, dtype=np.float64) -> None:
    """Call a compiled kernel: the element count, then arrays (by pointer) and scalars (as the element
    type), in order."""
    scalar = ctypes.c_double if np.dtype(dtype) == np.float64 else ctypes.c_float
    converted = [ctypes.c_longlong(n)]
    for arg in arguments:
        if isinstance(arg, np.ndarray):
            assert arg.dtype == dtype and arg.flags.c_contiguous
            converted.append(arg.ctypes.data_as(ctypes.c_void_p))
        else:
            converted.append(scalar(float(arg)))
    function.argtypes = None
    function(*converted)
