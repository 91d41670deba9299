"""Runs an optimizer's elementwise rule over flat arrays: compiled by numba on the CPU, by CuPy on the GPU.

An optimizer's math is written once, as a rule on one element (`ElementwiseRule`). This module runs it:
- CPU, float32/float64: a numba kernel, one parallel pass over the arrays, generated as a small module
  on disk so numba's cache lets the next process skip compilation;
- GPU: a CuPy ElementwiseKernel translated from the same source (`_translate.py`);
- anything else (no numba, float16, `use_cpu_backend(CpuBackend.NUMPY)`): the rule called on whole
  arrays (NumPy, or CuPy through NumPy's dispatch) in cache-sized chunks.
All three do the same IEEE operations in the same order, so they give the same numbers.
"""

from __future__ import annotations

import enum
import hashlib
import importlib.util
import inspect
import os
import sys
import tempfile

import numpy as np

from .. import _backend
from . import _translate

_CHUNK = 1 << 16  # elements per NumPy pass: three or four such arrays stay in L2
_PARALLEL_MIN = 1 << 19  # below this many elements one thread is faster than waking the others


class CpuBackend(enum.Enum):
    """How rules run on the CPU."""

    NUMBA = "numba"
    NUMPY = "numpy"


class ElementwiseRule:
    """An optimizer update written once, as a pure function of one element.

    The function's positional parameters are `param, grad`, then the per-element state (in `state`
    order), then the per-step coefficients (Python numbers, cast to the array's dtype); its keyword-only
    parameters are flags fixed for a compiled kernel. It returns the new `(param, *state)`. State a
    group does not use is passed as a placeholder and its returned value is dropped.

    Args:
        fn: the rule; see `_translate` for the Python it may use.
        state: names of the per-element state arrays, in argument order.
    """

    def __init__(self, fn, state: tuple):
        self.fn = fn
        self.name = fn.__name__
        self.state = tuple(state)
        self.ast = _translate.parse_rule(fn)
        signature = inspect.signature(fn)
        positional = [p.name for p in signature.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        self.flags = tuple(p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY)
        if positional[:2 + len(self.state)] != ["param", "grad", *self.state]:
            raise TypeError(f"{self.name}: positional parameters must start with "
                            f"param, grad, {', '.join(self.state)}")
        self.coefficients = tuple(positional[2 + len(self.state):])
        self._compiled = {}       # CUDA kernels by (dtype, flags, active state): flags fold at compile time
        self._numba_kernels = {}  # numba kernels by (dtype, which state is stored)

    def __repr__(self) -> str:
        return f"ElementwiseRule({self.name}, state={self.state}, coefficients={self.coefficients})"

    def apply(self, param, grad, state: dict, coefficients: tuple, flags: dict) -> None:
        """Update `param` and the arrays in `state` in place, element by element.

        Args:
            param, grad: 1-D arrays of one dtype, on one device.
            state: name -> 1-D array for the state this group uses (a subset of `self.state`).
            coefficients: numbers, in `self.coefficients` order.
            flags: a value for every flag.
        """
        n = param.shape[0]
        if grad.shape[0] != n or any(arr.shape[0] != n for arr in state.values()):
            raise ValueError(f"{self.name}: arrays of different lengths")
        dtype = param.dtype.type
        coefficients = tuple(dtype(c) for c in coefficients)
        if _backend.is_gpu_array(param) and param.dtype in _COMPILED_DTYPES:
            kernel = self._kernel("cuda", param.dtype, flags, tuple(state))
            kernel(grad, *coefficients, param, *(state[name] for name in state))
        elif (_cpu_backend is CpuBackend.NUMBA and param.dtype in _COMPILED_DTYPES and _numba_available()
              and not _backend.is_gpu_array(param)):
            key = (param.dtype, tuple(name in state for name in self.state))
            kernel = self._numba_kernels.get(key)
            if kernel is None:
                kernel = self._numba_kernels[key] = _numba_kernel(self, param.dtype, tuple(state))
            placeholder = param  # read in place of unused state, never written
            _use_threads(1 if n < _PARALLEL_MIN else _kernel_threads)
            kernel(param, grad, *(state.get(name, placeholder) for name in self.state), *coefficients,
                   *(bool(flags[f]) for f in self.flags))
        else:
            self._apply_numpy(param, grad, state, coefficients, flags)

    def _apply_numpy(self, param, grad, state, coefficients, flags):
        zero = param.dtype.type(0)
        xp = _backend.array_module(param)
        with np.errstate(all="ignore"):  # NaN and inf propagate silently, as in the compiled kernels
            self._apply_chunks(xp, zero, param, grad, state, coefficients, flags)

    def _apply_chunks(self, xp, zero, param, grad, state, coefficients, flags):
        for start in range(0, param.shape[0], _CHUNK):
            part = slice(start, start + _CHUNK)
            args = [state[name][part] if name in state else zero for name in self.state]
            new = self.fn(param[part], grad[part], *args, *coefficients, **flags)
            xp.copyto(param[part], new[0], casting="same_kind")
            for name, value in zip(self.state, new[1:]):
                if name in state:
                    xp.copyto(state[name][part], value, casting="same_kind")

    def _kernel(self, target, dtype, flags, active):
        key = (target, np.dtype(dtype).name, tuple(sorted(flags.items())), active)
        kernel = self._compiled.get(key)
        if kernel is None:
            kernel = self._compiled[key] = _cuda_kernel(self, np.dtype(dtype), flags, active)
        return kernel


# ---------------------------------------------------------------------------- CPU backend selection

_COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_cpu_backend = CpuBackend.NUMBA
_numba_ok = None


_kernel_threads = None  # None: numba's default (NUMBA_NUM_THREADS, else every core)


def set_kernel_threads(threads) -> None:
    """How many threads a compiled CPU step may use (None: numba's default).

    Ranks sharing a machine should split its cores: `distributed.init()` sets cores / ranks per node,
    because threads that wait for an oversubscribed core make a step many times slower.
    """
    global _kernel_threads
    if threads is not None and int(threads) < 1:
        raise ValueError(f"kernel threads must be at least 1, got {threads}")
    _kernel_threads = None if threads is None else int(threads)


def _use_threads(threads) -> None:
    import numba
    wanted = numba.config.NUMBA_NUM_THREADS if threads is None else min(threads, numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)


def use_cpu_backend(backend: CpuBackend) -> CpuBackend:
    """Choose how rules run on the CPU; returns the previous choice (tests compare the two)."""
    global _cpu_backend
    previous, _cpu_backend = _cpu_backend, CpuBackend(backend)
    return previous


def _numba_available() -> bool:
    global _numba_ok
    if _numba_ok is None:
        try:
            import numba  # noqa: F401
            _numba_ok = True
        except ImportError:
            _numba_ok = False
    return _numba_ok


# ---------------------------------------------------------------------------- numba

# The rule vocabulary (`_math.py`) on one element of dtype _T; each line mirrors the NumPy version.
NUMBA_VOCABULARY = '''
@numba.njit(inline="always")
def sqrt(x):
    return np.sqrt(x)


@numba.njit(inline="always")
def abs(x):
    return np.abs(x)


@numba.njit(inline="always")
def sign(x):
    return _T(1) if x > 0 else (_T(-1) if x < 0 else _T(0))


@numba.njit(inline="always")
def maximum(a, b):
    return np.maximum(a, b)


@numba.njit(inline="always")
def minimum(a, b):
    return np.minimum(a, b)


@numba.njit(inline="always")
def where(condition, a, b):
    return a if condition else b


@numba.njit(inline="always")
def lerp(start, end, weight, one_minus_weight):
    if np.abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * one_minus_weight
'''

_NUMBA_TEMPLATE = '''"""Generated by lucid.optim._kernels from the rule {rule}; do not edit (delete to rebuild)."""
import numba
import numpy as np

_T = np.{dtype}
{vocabulary}

{rule_source}

_rule = numba.njit(inline="always")(_rule)


@numba.njit(parallel=True, cache=True, nogil=True)
def kernel({args}):
    for i in numba.prange(param.shape[0]):
        out = _rule({call})
{stores}
'''


def _numba_kernel(rule: ElementwiseRule, dtype, active):
    """Write the kernel module for (rule, dtype, stored state), import it, return its kernel.

    Flags are run-time arguments: the branches they choose are loop-invariant and cost nothing
    measurable, and one compilation then serves every flag combination. Which state arrays are
    stored is compiled in, because a conditional store per element does cost (about 40% on Adam).
    """
    args = ["param", "grad", *rule.state, *rule.coefficients, *rule.flags]
    call = (["param[i]", "grad[i]"] + [f"{name}[i]" for name in rule.state] + list(rule.coefficients)
            + list(rule.flags))
    stores = ["        param[i] = out[0]"] + [
        f"        {name}[i] = out[{k + 1}]" for k, name in enumerate(rule.state) if name in active]
    source = _NUMBA_TEMPLATE.format(
        rule=rule.name, vocabulary=NUMBA_VOCABULARY, dtype=dtype.name,
        rule_source=_translate.numba_source(rule.ast, "_rule"), args=", ".join(args),
        call=", ".join(call), stores="\n".join(stores))
    return _import_generated(source, f"{rule.name}_{dtype.name}").kernel


def _import_generated(source: str, stem: str):
    """Import `source` from a file named by its hash in the kernel cache directory."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]  # the file holds everything it runs
    name = f"lucid_kernel_{stem}_{digest}"
    path = os.path.join(kernel_cache_dir(), name + ".py")
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)  # atomic: ranks compiling the same kernel at once agree on the file
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # numba's cache finds the module by name when it reloads a kernel
    spec.loader.exec_module(module)
    return module


_cache_dir = None


def kernel_cache_dir() -> str:
    """Where generated kernels and numba's cache live: $LUCID_CACHE_DIR, else ~/.cache/lucid/kernels."""
    global _cache_dir
    if _cache_dir is None:
        import numba
        base = os.environ.get("LUCID_CACHE_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lucid")
        path = os.path.join(base, f"kernels-numba{numba.__version__}-py{sys.version_info[0]}{sys.version_info[1]}")
        try:
            os.makedirs(path, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=path)
            probe.close()
        except OSError:
            path = tempfile.mkdtemp(prefix="lucid-kernels-")  # read-only home: compile per process
        _cache_dir = path
    return _cache_dir


# ---------------------------------------------------------------------------- CUDA (CuPy)

def cuda_kernel_parts(rule: ElementwiseRule, flags: dict, active) -> tuple:
    """(in_params, out_params, operation) of the CuPy ElementwiseKernel for a rule and its flags.

    Gradient and coefficients are inputs; the parameter and the stored state are outputs (read and
    written in place); state the group does not use becomes a local zero. CuPy makes inputs const, and
    rules do reassign the gradient (maximize, weight decay), so the kernel works on a local copy.
    """
    inputs = ", ".join(["T lucid_grad"] + [f"T {c}" for c in rule.coefficients])
    outputs = ", ".join(["T param"] + [f"T {name}" for name in rule.state if name in active])
    inactive = ["T grad = lucid_grad;"] + [f"T {name} = T(0);" for name in rule.state if name not in active]
    body = _translate.cuda_body(rule.ast, flags, ["param", *(n if n in active else None for n in rule.state)],
                                declared={"param", "grad", *rule.state, *rule.coefficients})
    return inputs, outputs, "\n".join(inactive + [body])


def _cuda_kernel(rule: ElementwiseRule, dtype, flags, active):
    """A CuPy ElementwiseKernel for the rule, translated from the same source."""
    cupy = _backend.cupy_module()
    if dtype.name not in ("float32", "float64"):
        raise TypeError(f"{rule.name}: the GPU kernel supports float32 and float64, not {dtype.name}")
    inputs, outputs, operation = cuda_kernel_parts(rule, flags, active)
    digest = hashlib.sha256(operation.encode()).hexdigest()[:12]
    return cupy.ElementwiseKernel(
        inputs, outputs, operation, f"lucid_{rule.name}_{digest}",
        preamble=_translate.CUDA_PREAMBLE,
        options=("--fmad=false",))  # no fused multiply-add: the same rounding as the CPU paths
