"""The CuPy backend of elementwise rules: a CUDA ElementwiseKernel translated from the rule's source.

`cuda_kernel_source` gives everything that defines the kernel for (rule, dtype, flags, stored state)
without a GPU or CuPy: its parameter lists, body, preamble (the vocabulary's CUDA forms, generated from
`_vocabulary.WORDS`), name and compile options, plus the NAMES of its inputs and outputs in kernel
order; `kernel_arguments` binds arrays and coefficients to those names. A host C++ compile of the same
source (tests/optim/test_kernels.py) checks the translation and the binding on a machine without a GPU.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .. import _backend
from . import _translate

GRAD = "lucid_grad"  # CuPy makes inputs const and rules reassign `grad`: the body works on a local copy


@dataclass(frozen=True)
class CudaKernelSource:
    """The parts of one CuPy ElementwiseKernel, with its argument names in kernel order.

    Attributes:
        name: the kernel's name (unique per body).
        inputs: input names: the gradient (`lucid_grad`), then the rule's coefficients.
        outputs: output names, read and written in place: `param`, then the stored state (rule order).
        in_params, out_params, operation, preamble, options: what `cupy.ElementwiseKernel` takes.
    """

    name: str
    inputs: tuple
    outputs: tuple
    in_params: str
    out_params: str
    operation: str
    preamble: str
    options: tuple


def cuda_kernel_source(rule, dtype, flags: dict, active) -> CudaKernelSource:
    """The CUDA kernel of `rule` for `dtype` with `flags` folded in, storing the state named in `active`.

    Needs no GPU. The gradient and coefficients are inputs; the parameter and stored state are outputs;
    state the group does not use becomes a local zero. The flags' branches are resolved here, so each
    flag combination is its own kernel.
    """
    dtype = np.dtype(dtype)
    if dtype.name not in ("float32", "float64"):
        raise TypeError(f"{rule.name}: the GPU kernel supports float32 and float64, not {dtype.name}")
    stored = tuple(name for name in rule.state if name in active)
    inputs = (GRAD, *rule.coefficients)
    outputs = ("param", *stored)
    locals_ = [f"T grad = {GRAD};"] + [f"T {name} = T(0);" for name in rule.state if name not in stored]
    body = _translate.cuda_body(rule.ast, flags, ["param", *(n if n in stored else None for n in rule.state)],
                                declared={"param", "grad", *rule.state, *rule.coefficients})
    operation = "\n".join(locals_ + [body])
    digest = hashlib.sha256(operation.encode()).hexdigest()[:12]
    return CudaKernelSource(
        name=f"lucid_{rule.name}_{digest}", inputs=inputs, outputs=outputs,
        in_params=", ".join(f"T {name}" for name in inputs), out_params=", ".join(f"T {name}" for name in outputs),
        operation=operation, preamble=_translate.CUDA_PREAMBLE,
        options=("--fmad=false",))  # no fused multiply-add: the same rounding as the CPU paths


def kernel_arguments(source: CudaKernelSource, param, grad, state: dict, values: tuple) -> list:
    """The kernel's arguments in its order, each bound by name (`values`: coefficients in rule order)."""
    by_name = {GRAD: grad, "param": param, **state,
               **dict(zip(source.inputs[1:], values))}
    return [by_name[name] for name in source.inputs + source.outputs]


def apply(rule, param, grad, state: dict, values: tuple, flags: dict) -> None:
    """Run `rule` over CuPy arrays in place (see `ElementwiseRule.apply`; `values` in rule order)."""
    kernel = _kernel(rule, param.dtype, flags, state)
    kernel.function(*kernel_arguments(kernel.source, param, grad, state, values))


class _Kernel:
    """A compiled CuPy kernel with the source it was made from (for binding its arguments)."""

    def __init__(self, source: CudaKernelSource):
        cupy = _backend.cupy_module()
        self.source = source
        self.function = cupy.ElementwiseKernel(source.in_params, source.out_params, source.operation,
                                                 source.name, preamble=source.preamble, options=source.options)


def _kernel(rule, dtype, flags, active) -> _Kernel:
    stored = tuple(name for name in rule.state if name in active)
    key = ("cuda", np.dtype(dtype).name, tuple(sorted(flags.items())), stored)
    kernel = rule.kernels.get(key)
    if kernel is None:
        kernel = rule.kernels[key] = _Kernel(cuda_kernel_source(rule, dtype, flags, stored))
    return kernel
