"""The rule vocabulary: ONE table of the functions an elementwise rule may call, in all three forms.

Each entry gives a function's name, its arguments, its NumPy form (on arrays or scalars), its numba
form (a scalar expression in the element dtype `_T`) and its CUDA form (a C expression in the
template type `T`). The NumPy functions rules import, the numba module's helpers and the CUDA
preamble are all generated from this table, so the three cannot drift apart; the vocabulary test
(tests/optim/test_vocabulary.py) drives every entry through all three forms with NaN, signed zeros,
infinities, subnormals and huge values and requires the same bits.

The definitions follow PyTorch's CPU kernels where the choice is visible: `sign(NaN) == 0` and
`sign(-0.0) == +0.0`; `maximum`/`minimum` propagate NaN from either side and otherwise keep the first
argument unless the second is strictly greater (smaller), so `maximum(-0.0, 0.0) == -0.0` as in
`torch.maximum` (numba's `np.maximum`/`np.minimum` on scalars are exactly that, and compile to the
hardware's max/min; NumPy's array functions return the second of two equal zeros, so the NumPy form
spells it out); `lerp` picks one of its two formulas by |weight| as `torch.lerp` does, which makes it
exact at weight 0 and 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Word:
    """One function of the vocabulary.

    Attributes:
        name: what a rule calls it.
        args: argument names; "cond" (a boolean) is the only argument that is not of the element dtype.
        numpy: the NumPy form, on arrays or scalars of one floating dtype.
        numba: the numba form: a Python expression of the arguments, `np` and the element type `_T`.
        cuda: the CUDA form: a C expression of the arguments in the template type `T`.
    """

    name: str
    args: tuple
    numpy: object
    numba: str
    cuda: str


def _sign(x):
    dtype = np.result_type(x)
    return np.greater(x, 0).astype(dtype) - np.less(x, 0).astype(dtype)


def _maximum(a, b):
    return np.where(a != a, a, np.where(b != b, b, np.where(a < b, b, a)))


def _minimum(a, b):
    return np.where(a != a, a, np.where(b != b, b, np.where(b < a, b, a)))


def _lerp(start, end, weight, one_minus_weight):
    if np.ndim(weight) == 0:  # the usual case (a coefficient): one formula for the whole array
        if np.abs(weight) < 0.5:
            return start + weight * (end - start)
        return end - (end - start) * one_minus_weight
    return np.where(np.abs(weight) < 0.5, start + weight * (end - start), end - (end - start) * one_minus_weight)


WORDS = (
    Word("sqrt", ("x",), np.sqrt, "np.sqrt(x)", "sqrt(x)"),
    Word("abs", ("x",), np.abs, "np.abs(x)", "fabs(x)"),
    Word("sign", ("x",), _sign,
         "_T(1) if x > 0 else (_T(-1) if x < 0 else _T(0))",
         "x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0))"),
    Word("maximum", ("a", "b"), _maximum, "np.maximum(a, b)", "a != a ? a : (b != b ? b : (a < b ? b : a))"),
    Word("minimum", ("a", "b"), _minimum, "np.minimum(a, b)", "a != a ? a : (b != b ? b : (b < a ? b : a))"),
    Word("where", ("cond", "a", "b"), np.where, "a if cond else b", "cond ? a : b"),
    Word("lerp", ("start", "end", "weight", "one_minus_weight"), _lerp,
         "(start + weight * (end - start)) if np.abs(weight) < 0.5 else (end - (end - start) * one_minus_weight)",
         "fabs(weight) < T(0.5) ? start + weight * (end - start) : end - (end - start) * one_minus_weight"),
)

NAMES = tuple(word.name for word in WORDS)
NUMPY = {word.name: word.numpy for word in WORDS}


def numba_source() -> str:
    """The vocabulary as numba-compiled scalar helpers (for the generated kernel modules)."""
    blocks = []
    for word in WORDS:
        blocks.append(f'@numba.njit(inline="always")\ndef {word.name}({", ".join(word.args)}):\n'
                      f"    return {word.numba}\n")
    return "\n\n".join(blocks)


def cuda_preamble() -> str:
    """The vocabulary as CUDA device functions `lucid_<name>` (for the CuPy kernels' preamble)."""
    lines = []
    for word in WORDS:
        params = ", ".join(("bool " if arg == "cond" else "T ") + arg for arg in word.args)
        lines.append(f"template <typename T> __device__ __forceinline__ T lucid_{word.name}({params}) "
                     f"{{ return {word.cuda}; }}")
    return "\n".join(lines) + "\n"
