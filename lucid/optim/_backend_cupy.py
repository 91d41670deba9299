"""The CuPy backend of elementwise rules: a CUDA kernel translated from the rule's source, compiled by NVRTC.

`cuda_kernel_source` gives the whole kernel for (rule, dtype, flags, stored state) without a GPU or
CuPy: one `extern "C"` translation unit (`code`: the vocabulary's CUDA forms, generated from
`_vocabulary.WORDS`, then a grid-stride loop over the elements) plus the NAMES of its inputs and
outputs in kernel order; `kernel_arguments` binds arrays and coefficients to those names.

Why not `cupy.ElementwiseKernel`: CuPy appends `-ftz=true` after the caller's options when it compiles
one (cupy/cuda/compiler.py, `_compile_with_cache_cuda`), and NVRTC takes the last `-ftz` it is given,
so float32 subnormals would be flushed to zero on the GPU while NumPy and numba keep them. lucid
compiles its kernels itself, with CuPy's NVRTC binding and `COMPILE_OPTIONS` (no fused multiply-add,
no flush to zero, IEEE division and square root: the CPU paths' rounding), caches the cubin on disk
and loads it with `cupy.RawModule`. `compile_kernel` needs no GPU (the CI compiles every kernel and
reads its PTX); a host C++ compile of the same `code` (tests/optim/host_cuda.py) checks the
translation and the binding bit for bit against NumPy.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from .. import _backend
from . import _cache, _translate

GRAD = "lucid_grad"  # the gradient is read-only and rules reassign `grad`: the body works on a local copy
COUNT = "lucid_n"    # the kernel's first argument: how many elements
# no fused multiply-add (the CPU paths round every product), subnormals kept (NVRTC's default, said
# explicitly), correctly rounded division and square root (also the default)
COMPILE_OPTIONS = ("--fmad=false", "--ftz=false", "--prec-div=true", "--prec-sqrt=true")
THREADS = 256         # threads per block
MAX_BLOCKS = 1 << 16  # the grid-stride loop covers any length with at most this many blocks
_CTYPES = {"float32": "float", "float64": "double"}


@dataclass(frozen=True)
class CudaKernelSource:
    """One CUDA kernel, with its argument names in kernel order.

    Attributes:
        name: the kernel's `extern "C"` name (unique per source).
        dtype: "float32" or "float64".
        inputs: the read-only arguments after the element count: the gradient (`lucid_grad`, an
            array), then the rule's coefficients (scalars), in rule order.
        outputs: the arrays read and written in place: `param`, then the stored state (rule order).
        operation: the loop body, on one element held in local variables named as the rule names them.
        preamble: the vocabulary as device functions.
        kernel: the kernel's definition (it uses the preamble).
        options: the compile options (`COMPILE_OPTIONS`).
    """

    name: str
    dtype: str
    inputs: tuple
    outputs: tuple
    operation: str
    preamble: str
    kernel: str
    options: tuple

    @property
    def code(self) -> str:
        """The whole translation unit, what NVRTC compiles: the preamble, then the kernel."""
        return self.preamble + self.kernel


def cuda_kernel_source(rule, dtype, flags: dict, active) -> CudaKernelSource:
    """The CUDA kernel of `rule` for `dtype` with `flags` folded in, storing the state named in `active`.

    Needs no GPU. The gradient and coefficients are inputs; the parameter and stored state are outputs;
    state the group does not use becomes a local zero. The flags' branches are resolved here, so each
    flag combination is its own kernel.
    """
    dtype = np.dtype(dtype)
    if dtype.name not in _CTYPES:
        raise TypeError(f"{rule.name}: the GPU kernel supports float32 and float64, not {dtype.name}")
    stored = tuple(name for name in rule.state if name in active)
    inputs = (GRAD, *rule.coefficients)
    outputs = ("param", *stored)
    locals_ = [f"T grad = {GRAD};"] + [f"T {name} = T(0);" for name in rule.state if name not in stored]
    body = _translate.cuda_body(rule.ast, flags, ["param", *(n if n in stored else None for n in rule.state)],
                                declared={"param", "grad", *rule.state, *rule.coefficients})
    operation = "\n".join(locals_ + [body])
    digest = hashlib.sha256(repr((dtype.name, inputs, outputs, operation)).encode()).hexdigest()[:12]
    name = f"lucid_{rule.name}_{dtype.name}_{digest}"
    return CudaKernelSource(name=name, dtype=dtype.name, inputs=inputs, outputs=outputs, operation=operation,
                            preamble=_translate.CUDA_PREAMBLE,
                            kernel=_kernel_code(name, _CTYPES[dtype.name], inputs, outputs, operation),
                            options=COMPILE_OPTIONS)


def _kernel_code(name: str, ctype: str, inputs: tuple, outputs: tuple, operation: str) -> str:
    """A grid-stride loop: element i of every array is loaded into a local named as the rule names it,
    the body runs, and the outputs are stored back."""
    params = [f"const long long {COUNT}", f"const {ctype}* lucid_p_grad"]
    params += [f"const {ctype} {c}" for c in inputs[1:]] + [f"{ctype}* lucid_p_{o}" for o in outputs]
    loads = [f"const T {GRAD} = lucid_p_grad[lucid_i];"] + [f"T {o} = lucid_p_{o}[lucid_i];" for o in outputs]
    stores = [f"lucid_p_{o}[lucid_i] = {o};" for o in outputs]
    body = "\n".join("        " + line for line in loads + operation.splitlines() + stores)
    return (f'\nextern "C" __global__ void {name}({", ".join(params)}) {{\n'
            f"    typedef {ctype} T;\n"
            f"    const long long lucid_stride = (long long)blockDim.x * gridDim.x;\n"
            f"    for (long long lucid_i = (long long)blockIdx.x * blockDim.x + threadIdx.x; lucid_i < {COUNT};"
            f" lucid_i += lucid_stride) {{\n{body}\n    }}\n}}\n")


def kernel_arguments(source: CudaKernelSource, param, grad, state: dict, values: tuple) -> list:
    """The kernel's arguments after the element count, in its order, each bound by name (`values`:
    coefficients in rule order)."""
    by_name = {GRAD: grad, "param": param, **state, **dict(zip(source.inputs[1:], values))}
    return [by_name[name] for name in source.inputs + source.outputs]


# ---------------------------------------------------------------------------- compiling

def nvrtc_version() -> tuple:
    """(major, minor) of the NVRTC that CuPy loads; raises RuntimeError naming what is missing."""
    return _nvrtc().getVersion()


def supported_architectures() -> tuple:
    """The compute capabilities (as ints, e.g. 90) this NVRTC can compile for."""
    return tuple(int(a) for a in _nvrtc().getSupportedArchs())


def compile_kernel(source: CudaKernelSource, arch: int) -> tuple:
    """Compile `source` with NVRTC for compute capability `arch` (an int, e.g. 90); needs no GPU.

    Returns:
        (cubin, ptx): the binary for `sm_<arch>` and the PTX NVRTC made on the way (bytes each).

    Raises:
        RuntimeError: NVRTC is missing, or the source does not compile (with NVRTC's log).
    """
    nvrtc = _nvrtc()
    program = nvrtc.createProgram(source.code, f"{source.name}.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(program, [f"--gpu-architecture=sm_{int(arch)}", *source.options])
        except nvrtc.NVRTCError as exc:
            raise RuntimeError(f"NVRTC could not compile the kernel {source.name}: {exc}\n"
                               f"{nvrtc.getProgramLog(program)}\n{source.code}") from exc
        return nvrtc.getCUBIN(program), nvrtc.getPTX(program)
    finally:
        nvrtc.destroyProgram(program)


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()  # loads libnvrtc
    except Exception as exc:  # ImportError (no CuPy) or the library not found
        raise RuntimeError(f"NVRTC is not available ({type(exc).__name__}: {exc}); lucid compiles its GPU "
                           f"kernels with CuPy's NVRTC: {_backend.INSTALL_HINT} (which brings cupy-cuda12x "
                           "and nvidia-cuda-nvrtc-cu12)") from exc
    return nvrtc


def _device_architecture() -> int:
    """The current GPU's compute capability, or the newest one below it that NVRTC knows."""
    cupy = _backend.cupy_module()
    arch = int(cupy.cuda.Device().compute_capability)
    known = [a for a in supported_architectures() if a <= arch]
    if not known:
        raise RuntimeError(f"this NVRTC ({nvrtc_version()}) cannot compile for compute capability {arch}")
    return arch if arch in known else max(known)


def load_kernel(source: CudaKernelSource):
    """The kernel as a `cupy.RawKernel` on the current GPU, from the disk cache or compiled now.

    Call it as `kernel((blocks,), (threads,), (count, *arguments))`.
    """
    cupy = _backend.cupy_module()
    arch = _device_architecture()
    key = hashlib.sha256("\n".join([source.code, *source.options, str(nvrtc_version())]).encode()).hexdigest()[:20]
    path = os.path.join(_cache.directory(f"kernels-cuda-sm{arch}"), f"{source.name}_{key}.cubin")
    if not os.path.exists(path):
        cubin, _ = compile_kernel(source, arch)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(cubin)
        os.replace(tmp, path)  # atomic: ranks compiling the same kernel at once agree on the file
    return cupy.RawModule(path=path).get_function(source.name)


# ---------------------------------------------------------------------------- running

def apply(rule, param, grad, state: dict, values: tuple, flags: dict) -> None:
    """Run `rule` over CuPy arrays in place (see `ElementwiseRule.apply`; `values` in rule order)."""
    n = param.shape[0]
    if n == 0:
        return
    for name, array in (("param", param), *state.items()):
        if not array.flags.c_contiguous:
            raise ValueError(f"{rule.name}: '{name}' must be contiguous on the GPU (it is written in place)")
    if not grad.flags.c_contiguous:
        grad = _backend.cupy_module().ascontiguousarray(grad)
    source, function = _kernel(rule, param.dtype, flags, state)
    blocks = min((n + THREADS - 1) // THREADS, MAX_BLOCKS)
    function((blocks,), (THREADS,), (np.int64(n), *kernel_arguments(source, param, grad, state, values)))


def _kernel(rule, dtype, flags, active) -> tuple:
    stored = tuple(name for name in rule.state if name in active)
    key = ("cuda", _backend.cupy_module().cuda.runtime.getDevice(), np.dtype(dtype).name,
           tuple(sorted(flags.items())), stored)
    kernel = rule.kernels.get(key)
    if kernel is None:
        source = cuda_kernel_source(rule, dtype, flags, stored)
        kernel = rule.kernels[key] = (source, load_kernel(source))
    return kernel
