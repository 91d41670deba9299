"""Neural-network primitives: erf, activations, the softmax family, dropout and embedding lookup.

Each op computes its forward and records its backward beside it (see `_core.result`). Convolution and
pooling live in `conv.py`, normalization in `norm.py`, losses in `losses.py`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _backend, random
from ..tensor import Tensor
from ._core import data_of, result, xp_of

# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969),
# coefficients as in SPECFUN's CALERF: erf on |x| <= 0.46875 ...
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
# ... erfc on 0.46875 < |x| <= 4 ...
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
          2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
# ... and erfc on |x| > 4.
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)
_INV_SQRT_PI = 5.6418958354775628695e-1
_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_TANH_K = math.sqrt(2.0 / math.pi)


def _cody_ratio(t, num, den, steps):
    """Cody's nested evaluation: (((num[-1] t + num[0]) t + ...) + num[-2]) / ((t + den[0]) t + ... + den[-1])."""
    xnum, xden = num[-1] * t, t
    for i in range(steps):
        xnum = (xnum + num[i]) * t
        xden = (xden + den[i]) * t
    return (xnum + num[steps]) / (xden + den[steps])


def _exp_neg_square(y, xp):
    """exp(-y*y) with y*y split into an exact part and a small rest, as CALERF does, to keep accuracy."""
    head = xp.floor(y * 16.0) / 16.0
    return xp.exp(-head * head) * xp.exp(-(y - head) * (y + head))


def erf_array(x):
    """The error function of an array, elementwise (float64 error ~1e-16; no per-element Python).

    All three of Cody's ranges are evaluated on clipped copies and the right one is picked with `where`,
    so the code has no data-dependent indexing (and no host syncs on the GPU).
    """
    xp = xp_of(x)
    y = xp.abs(x)
    small = xp.minimum(y, 0.46875)
    r_small = small * _cody_ratio(small * small, _ERF_A, _ERF_B, 3)
    mid = xp.clip(y, 0.46875, 4.0)
    r_mid = 1.0 - _exp_neg_square(mid, xp) * _cody_ratio(mid, _ERF_C, _ERF_D, 7)
    # beyond 6, erfc < 2.2e-17 < half an ulp of 1, so erf is exactly 1 in float64
    big = xp.clip(y, 4.0, 6.0)
    inv_sq = 1.0 / (big * big)
    tail = (_INV_SQRT_PI - inv_sq * _cody_ratio(inv_sq, _ERF_P, _ERF_Q, 4)) / big
    r_big = 1.0 - _exp_neg_square(big, xp) * tail
    out = xp.where(y <= 0.46875, r_small, xp.where(y <= 4.0, r_mid, r_big))
    return xp.copysign(out, x).astype(x.dtype, copy=False)


def erf(a) -> Tensor:
    """The error function, 2/sqrt(pi) * integral_0^a exp(-t^2) dt."""
    x = a.data
    xp = xp_of(a)
    scale = 2.0 * _INV_SQRT_PI
    return result(erf_array(x), (a,), lambda g: (g * scale * xp.exp(-x * x),), "erf")


# ---------------------------------------------------------------- activations

def gelu(a, approximate: str = "none") -> Tensor:
    """GELU: x * Phi(x) with the exact normal CDF (`approximate="none"`) or its tanh form ("tanh")."""
    x = a.data
    xp = xp_of(a)
    if approximate == "none":
        cdf = 0.5 * (1.0 + erf_array(x / _SQRT_2))
        return result(x * cdf, (a,), lambda g: (g * (cdf + x * _INV_SQRT_2PI * xp.exp(-0.5 * x * x)),),
                      "gelu")
    if approximate == "tanh":
        t = xp.tanh(_GELU_TANH_K * (x + 0.044715 * x * x * x))

        def backward(g):
            inner = _GELU_TANH_K * (1.0 + 3 * 0.044715 * x * x)
            return (g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner),)
        return result(0.5 * x * (1.0 + t), (a,), backward, "gelu")
    raise ValueError(f"approximate argument must be either none or tanh (got {approximate!r})")


def leaky_relu(a, negative_slope: float = 0.01) -> Tensor:
    """x where x > 0, else negative_slope * x."""
    x = a.data
    xp = xp_of(a)
    positive = x > 0
    out = xp.where(positive, x, x * negative_slope)
    return result(out, (a,), lambda g: (xp.where(positive, g, g * negative_slope),), "leaky_relu")


def elu(a, alpha: float = 1.0) -> Tensor:
    """x where x > 0, else alpha * (exp(x) - 1)."""
    x = a.data
    xp = xp_of(a)
    positive = x > 0
    out = xp.where(positive, x, alpha * xp.expm1(xp.minimum(x, 0)))
    return result(out, (a,), lambda g: (xp.where(positive, g, g * (out + alpha)),), "elu")


def silu(a) -> Tensor:
    """x * sigmoid(x) (also called swish)."""
    x = a.data
    s = _sigmoid_array(x)
    return result(x * s, (a,), lambda g: (g * s * (1.0 + x * (1.0 - s)),), "silu")


def softplus(a, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold (as torch)."""
    x = a.data
    xp = xp_of(a)
    bx = x * beta
    linear = bx > threshold
    soft = (xp.log1p(xp.exp(-xp.abs(bx))) + xp.maximum(bx, 0)) / beta
    out = xp.where(linear, x, soft)
    return result(out, (a,), lambda g: (xp.where(linear, g, g * _sigmoid_array(bx)),), "softplus")


def logsigmoid(a) -> Tensor:
    """log(sigmoid(x)), computed without overflow."""
    x = a.data
    xp = xp_of(a)
    out = xp.minimum(x, 0) - xp.log1p(xp.exp(-xp.abs(x)))
    return result(out, (a,), lambda g: (g * _sigmoid_array(-x),), "logsigmoid")


def log1p(a) -> Tensor:
    """log(1 + x), accurate for small x."""
    x = a.data
    return result(xp_of(a).log1p(x), (a,), lambda g: (g / (1.0 + x),), "log1p")


def hardtanh(a, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """Clamp into [min_val, max_val]; unlike `clip`, the gradient is 0 on the bounds (as torch)."""
    x = a.data
    inside = (x > min_val) & (x < max_val)
    return result(xp_of(a).clip(x, min_val, max_val), (a,), lambda g: (g * inside,), "hardtanh")


def _sigmoid_array(x):
    xp = xp_of(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


# ---------------------------------------------------------------- softmax family

def softmax(a, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis`, shifted by the max for stability."""
    x = a.data
    xp = xp_of(a)
    out = xp.exp(x - x.max(axis=axis, keepdims=True))
    out /= out.sum(axis=axis, keepdims=True)

    def backward(g):
        return (out * (g - (g * out).sum(axis=axis, keepdims=True)),)
    return result(out, (a,), backward, "softmax")


def log_softmax_array(x, axis):
    """log(softmax(x)) along `axis` as an array, computed stably."""
    xp = xp_of(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    shifted -= xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted


def log_softmax(a, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along `axis`."""
    out = log_softmax_array(a.data, axis)
    xp = xp_of(a)

    def backward(g):
        return (g - xp.exp(out) * g.sum(axis=axis, keepdims=True),)
    return result(out, (a,), backward, "log_softmax")


# ---------------------------------------------------------------- dropout and embedding

def dropout(a, p: float = 0.5, channels: bool = False) -> Tensor:
    """Zero each element with probability `p` and scale the rest by 1/(1-p) (always active here).

    With `channels`, whole channels are zeroed together (torch's feature dropout, as in Dropout2d):
    one draw per (sample, channel) of an (N, C, ...) input. The mask comes from lucid's global
    generator, so `lucid.manual_seed` makes it repeatable.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    x = a.data
    shape = x.shape[:2] + (1,) * (x.ndim - 2) if channels else x.shape
    keep = random.default_generator().random(shape, dtype=np.float32) >= p
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    mask = _backend.to_device(keep.astype(x.dtype) * x.dtype.type(scale), _backend.device_of(x))
    return result(x * mask, (a,), lambda g: (g * mask,), "dropout")


def embedding(indices, weight, padding_idx=None, scale_grad_by_freq: bool = False) -> Tensor:
    """Rows of `weight` picked by the integer `indices`; the gradient adds up over repeated indices.

    Args:
        indices: an integer Tensor or array of any shape.
        weight: (num_embeddings, embedding_dim).
        padding_idx: a row that receives no gradient.
        scale_grad_by_freq: divide each row's gradient by how often its index occurs in `indices`
            (torch's heuristic; the result is then no longer the true gradient).
    """
    idx = data_of(indices)
    w = weight.data
    xp = xp_of(weight)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: expected integer indices, got dtype {idx.dtype}")
    if w.ndim != 2:
        raise ValueError(f"embedding: 'weight' must be 2-D, got shape {tuple(w.shape)}")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= w.shape[0]):
        raise IndexError("index out of range in self")

    def backward(g):
        flat = idx.reshape(-1)
        grad = xp.zeros(w.shape, dtype=g.dtype)
        xp.add.at(grad, flat, g.reshape(-1, w.shape[1]))
        if scale_grad_by_freq:
            grad /= xp.maximum(xp.bincount(flat, minlength=w.shape[0]), 1)[:, None]
        if padding_idx is not None:
            grad[padding_idx] = 0
        return None, grad
    return result(w[idx], (indices, weight), backward, "embedding")
