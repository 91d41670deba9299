"""The elementwise-optimizer protocol: a rule written once on one element, and the optimizer around it.

An elementwise optimizer is an `Optimizer` subclass whose update of each element depends only on that
element (and per-step scalars). Its math is written ONCE, as a rule: a pure Python function of one
element, in a small language (assignments, arithmetic, comparisons, `if` on flags, the vocabulary
below). lucid runs that same function on whole NumPy arrays, compiles it with numba into one parallel
pass over a flat buffer on the CPU, and translates it to a CUDA kernel for CuPy arrays; the fused,
per-parameter, GPU and sharded (`distributed`) paths all run it, with the same numbers.

A new elementwise optimizer defines, in its own file:

* ``rule = ElementwiseRule(fn, state=(...))``: `fn(param, grad, <state>..., <coefficients>..., *,
  <flags>...)` returns the new ``(param, <state>...)`` in the order its signature takes them. State
  arrays, coefficients and flags are all bound BY NAME, never by position.
* ``scalar_state``: the names of the per-parameter scalar state it keeps (default ``("step",)``).
  Scalars are told apart from per-element state by these names, never by shape (a 0-d parameter has
  0-d per-element state).
* ``state_init(group)``: ``{state name: starting value}`` for the per-element state this group uses
  (a subset of the rule's state; the rest is never allocated or stored).
* ``rule_flags(group)``: ``{flag: bool}``, one per keyword-only flag of the rule.
* ``step_coefficients(group, state)``: ``({coefficient: number}, {scalar: value after the step})``
  given a parameter's state before the step (empty on its first step). Coefficients may depend on
  the group, the scalar state and on which state exists, never on array contents. Parameters whose
  computed coefficients are equal step together in one rule call; nothing else decides it.

Then one line in `lucid/optim/__init__.py` exports it. A missing or extra coefficient or flag is a
`TypeError` when the optimizer is built. Everything else (parameter groups, flat buffers, `fused=None`
/ `fused=False`, state dicts in PyTorch's layout, hooks, sharding, GPUs) comes from `Optimizer`.

Worked example: heavy-ball momentum with a bias-corrected step (the momentum buffer starts at 0, so
it is divided by the sum of the decay weights so far)::

    >>> import numpy as np
    >>> from lucid import nn
    >>> from lucid.optim import Optimizer
    >>> from lucid.optim.elementwise import ElementwiseRule
    >>> def corrected_momentum_rule(param, grad, buf, lr, momentum, correction, *, maximize):
    ...     if maximize:
    ...         grad = -grad
    ...     buf = buf * momentum + grad
    ...     param = param - lr * (buf / correction)
    ...     return param, buf
    >>> class CorrectedMomentum(Optimizer):
    ...     rule = ElementwiseRule(corrected_momentum_rule, state=("buf",))
    ...
    ...     def __init__(self, params, lr=0.1, momentum=0.9, *, maximize=False, fused=None):
    ...         super().__init__(params, dict(lr=lr, momentum=momentum, maximize=maximize, fused=fused))
    ...
    ...     def state_init(self, group):
    ...         return {"buf": 0.0}
    ...
    ...     def rule_flags(self, group):
    ...         return {"maximize": group["maximize"]}
    ...
    ...     def step_coefficients(self, group, state):
    ...         step = state.get("step", 0) + 1
    ...         correction = sum(group["momentum"] ** k for k in range(step))
    ...         return {"lr": group["lr"], "momentum": group["momentum"], "correction": correction}, {"step": step}
    >>> w = nn.Parameter(np.array([1.0, -2.0]))
    >>> opt = CorrectedMomentum([w], lr=0.1)
    >>> for _ in range(2):
    ...     w.grad = 2 * w.data                 # the gradient of sum(w ** 2)
    ...     opt.step()
    >>> [round(float(x), 6) for x in w.data]
    [0.621053, -1.242105]
    >>> opt.state_dict()["state"][0]["step"]
    array(2., dtype=float32)

The vocabulary a rule may call (NumPy forms here; numba and CUDA forms come from the same table,
`_vocabulary.py`): `sqrt`, `abs`, `sign` (0 for NaN and for +-0, as torch.sign), `maximum` and
`minimum` (NaN from either side propagates), `where(cond, a, b)`, and
`lerp(start, end, weight, one_minus_weight)` (torch.lerp's two-formula lerp).
"""

from __future__ import annotations

import enum
import inspect

import numpy as np

from .. import _backend
from . import _backend_cupy, _backend_numba, _backend_numpy, _translate
from ._backend_cupy import CudaKernelSource, cuda_kernel_source  # noqa: F401 (documented here)
from ._vocabulary import NUMPY

sqrt = NUMPY["sqrt"]
abs = NUMPY["abs"]  # noqa: A001 - the vocabulary mirrors NumPy's names
sign = NUMPY["sign"]
maximum = NUMPY["maximum"]
minimum = NUMPY["minimum"]
where = NUMPY["where"]
lerp = NUMPY["lerp"]

__all__ = ["ElementwiseRule", "CpuBackend", "use_cpu_backend", "cuda_kernel_source", "CudaKernelSource",
           "sqrt", "abs", "sign", "maximum", "minimum", "where", "lerp"]

COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class CpuBackend(enum.Enum):
    """How rules run on the CPU: compiled by numba (the default where numba imports), or NumPy."""

    NUMBA = "numba"
    NUMPY = "numpy"


_cpu_backend = CpuBackend.NUMBA


def use_cpu_backend(backend: CpuBackend) -> CpuBackend:
    """Choose how rules run on the CPU; returns the previous choice (tests compare the two)."""
    global _cpu_backend
    previous, _cpu_backend = _cpu_backend, CpuBackend(backend)
    return previous


class ElementwiseRule:
    """An optimizer update written once, as a pure function of one element.

    Args:
        fn: the rule: `fn(param, grad, *state, *coefficients, *, **flags) -> (param, *state)`; see
            `_translate` for the Python it may use. The state names come right after `grad`, in any
            order; the function returns them in its own signature order.
        state: the names of the per-element state arrays (those of `fn`'s parameters that are state).

    Attributes:
        state: the state names in `fn`'s signature order (the order it takes and returns them).
        coefficients: the per-step coefficient names, in signature order.
        flags: the keyword-only flag names; each value selects code at compile time.
        kernels: compiled kernels, filled by the backends (keys are theirs).
    """

    def __init__(self, fn, state: tuple):
        self.fn = fn
        self.name = fn.__name__
        self.ast = _translate.parse_rule(fn)
        parameters = inspect.signature(fn).parameters.values()
        positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
        self.flags = tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)
        declared = tuple(state)
        count = len(declared)
        if positional[:2] != ["param", "grad"] or sorted(positional[2:2 + count]) != sorted(declared) \
                or len(set(declared)) != count:
            raise TypeError(f"{self.name}: positional parameters must be param, grad, then the state "
                            f"{', '.join(declared) or '(none)'} in any order, then the coefficients")
        self.state = tuple(positional[2:2 + count])
        self.coefficients = tuple(positional[2 + count:])
        returned = len(self.ast.body[-1].value.elts)
        if returned != 1 + count:
            raise TypeError(f"{self.name}: returns {returned} values, but must return param and "
                            f"{count} state value(s)")
        self.kernels = {}

    def __repr__(self) -> str:
        return f"ElementwiseRule({self.name}, state={self.state}, coefficients={self.coefficients})"

    def check(self, coefficients, flags=None) -> None:
        """Raise TypeError unless `coefficients` (and `flags`) name exactly the rule's own."""
        if not isinstance(coefficients, dict):
            raise TypeError(f"{self.name}: coefficients must be a dict by name, not {type(coefficients).__name__}")
        _check_names(self.name, "coefficients", self.coefficients, coefficients)
        if flags is not None:
            _check_names(self.name, "flags", self.flags, flags)

    def apply(self, param, grad, state: dict, coefficients: dict, flags: dict) -> None:
        """Update `param` and the arrays in `state` in place, element by element.

        Args:
            param, grad: 1-D arrays of one dtype, on one device.
            state: state name -> 1-D array, for the state this group uses (a subset of `self.state`).
            coefficients: coefficient name -> number (a Python or NumPy scalar), every coefficient.
            flags: flag name -> bool, every flag.
        """
        if (not isinstance(coefficients, dict) or len(coefficients) != len(self.coefficients)
                or len(flags) != len(self.flags)):
            self.check(coefficients, flags)
        unknown = [name for name in state if name not in self.state]
        if unknown:
            raise TypeError(f"{self.name}: unknown state {unknown}; the rule's state is {list(self.state)}")
        n = param.shape[0]
        if grad.shape[0] != n or any(arr.shape[0] != n for arr in state.values()):
            raise ValueError(f"{self.name}: arrays of different lengths")
        dtype = param.dtype.type
        try:
            values = tuple(dtype(coefficients[name]) for name in self.coefficients)
        except KeyError:
            self.check(coefficients, flags)
            raise
        flags = {name: bool(flags[name]) for name in self.flags}
        if param.dtype in COMPILED_DTYPES and _backend.is_gpu_array(param):
            _backend_cupy.apply(self, param, grad, state, values, flags)
        elif (param.dtype in COMPILED_DTYPES and _cpu_backend is CpuBackend.NUMBA and _backend_numba.available()
              and not _backend.is_gpu_array(param)):
            _backend_numba.apply(self, param, grad, state, values, flags)
        else:
            _backend_numpy.apply(self, param, grad, state, values, flags)


def _check_names(rule: str, kind: str, expected: tuple, given) -> None:
    missing = [name for name in expected if name not in given]
    extra = [name for name in given if name not in expected]
    if missing or extra:
        raise TypeError(f"{rule}: {kind} do not match the rule's: missing {missing}, unexpected {extra} "
                        f"(the rule takes {list(expected)})")
