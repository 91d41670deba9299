"""The math vocabulary an elementwise rule may use, in its NumPy form (arrays or scalars).

A rule (see `_kernels.ElementwiseRule`) calls only these functions, so the same source can be run on
NumPy arrays, compiled by numba with the scalar versions in `_kernels.NUMBA_VOCABULARY`, and translated
to CUDA with the C versions in `_translate.CUDA_PREAMBLE`. Each function must mean the same thing in all
three.
"""

from __future__ import annotations

import numpy as np

sqrt = np.sqrt
abs = np.abs          # noqa: A001 - the rule vocabulary mirrors NumPy's names
maximum = np.maximum  # NaN propagates, as in torch.maximum
minimum = np.minimum
where = np.where


def sign(x):
    """-1, 0 or 1 in x's dtype; NaN gives 0, as torch.sign does."""
    return np.sign(np.nan_to_num(x))


def lerp(start, end, weight, one_minus_weight):
    """torch.lerp's formula: the form it picks depends on |weight| so the result is exact at 0 and 1."""
    if np.abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * one_minus_weight


VOCABULARY = ("sqrt", "abs", "sign", "maximum", "minimum", "where", "lerp")
