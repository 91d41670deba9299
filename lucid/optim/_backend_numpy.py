"""The NumPy backend of elementwise rules: the rule called on whole array chunks (NumPy or CuPy arrays).

It runs wherever the compiled backends do not: dtypes other than float32/float64 (float16), no numba,
or `use_cpu_backend(CpuBackend.NUMPY)`. Arrays go through in cache-sized chunks, so the temporaries
the rule creates stay small, and everything is bound by name: state arrays and coefficients are passed
as keyword arguments, and the returned tuple is matched to the rule's own state order.
"""

from __future__ import annotations

import numpy as np

from .. import _backend

CHUNK = 1 << 16  # elements per pass: three or four such arrays stay in L2


def apply(rule, param, grad, state: dict, values: tuple, flags: dict) -> None:
    """Run `rule` over the arrays in place (see `ElementwiseRule.apply`; `values` in rule order)."""
    xp = _backend.array_module(param)
    zero = param.dtype.type(0)  # stands in for state this group does not use
    coefficients = dict(zip(rule.coefficients, values))
    with np.errstate(all="ignore"):  # NaN and inf propagate silently, as in the compiled kernels
        for start in range(0, param.shape[0], CHUNK):
            part = slice(start, start + CHUNK)
            arrays = {name: state[name][part] if name in state else zero for name in rule.state}
            new = rule.fn(param[part], grad[part], **arrays, **coefficients, **flags)
            xp.copyto(param[part], new[0], casting="same_kind")
            for name, value in zip(rule.state, new[1:]):
                if name in state:
                    xp.copyto(state[name][part], value, casting="same_kind")
