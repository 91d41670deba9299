"""Loss primitives: fused cross entropy, nll_loss, binary cross entropy (on probabilities and on logits),
and the elementwise Huber loss.

Class losses take torch's layouts: input (C,), (N, C) or (N, C, d1, ...), with the classes on dimension 1,
and class-index targets of the input's shape without that dimension. Internally the classes are moved
last and the rest flattened into rows, (M, C).
"""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from ._core import check_same_device, data_of, result, xp_of
from .arith import _wants
from .nn_ops import _sigmoid_array, log_softmax_array

REDUCTIONS = ("none", "mean", "sum")


def _rows(x):
    """The (M, C) view of a class-dim-1 array (a copy when classes must move)."""
    if x.ndim == 1:
        return x[None, :]
    if x.ndim == 2:
        return x
    return xp_of(x).moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _unrows(g2, shape):
    """Undo `_rows`: an (M, C) array back to the class-dim-1 `shape`."""
    if len(shape) <= 2:
        return g2.reshape(shape)
    moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
    return xp_of(g2).moveaxis(g2.reshape(moved), -1, 1)


def _target_rows(x_shape, target, weight, ignore_index):
    """Check class-index targets (and class weights) against the input shape.

    Returns:
        (safe indices, valid mask) per row; ignored rows point at class 0 and are masked out.
    """
    t = data_of(target)
    n_classes = x_shape[1] if len(x_shape) > 1 else x_shape[0]
    expected = tuple(x_shape[:1]) + tuple(x_shape[2:]) if len(x_shape) > 1 else ()
    if t.dtype.kind not in "iu":
        raise TypeError(f"expected target of an integer dtype (class indices), got {t.dtype}")
    if tuple(t.shape) != expected:
        if len(x_shape) == 2 and t.ndim == 1:
            raise ValueError(f"Expected input batch_size ({x_shape[0]}) to match target batch_size "
                             f"({t.shape[0]}).")
        raise ValueError(f"Expected target size {list(expected)}, got {list(t.shape)} (input of size "
                         f"{list(x_shape)})")
    if weight is not None and tuple(weight.shape) != (n_classes,):
        raise ValueError(f"weight tensor should be defined either for all {n_classes} classes or no classes "
                         f"but got weight tensor of shape: {list(weight.shape)}")
    xp = xp_of(t)
    t = t.reshape(-1)
    valid = t != ignore_index
    safe = xp.where(valid, t, 0)
    out_of_range = (safe < 0) | (safe >= n_classes)
    if bool(out_of_range.any()):
        raise IndexError(f"Target {int(t[out_of_range][0])} is out of bounds.")
    return safe, valid


def _target_weights(weight, safe, valid, dtype):
    """Each row's class weight (1 without weights), 0 for ignored rows."""
    return (valid if weight is None else weight.data[safe] * valid).astype(dtype)


def _reduce_rows(loss, reduction, denom, out_shape):
    """Per-row losses reduced as asked; `denom` divides the sum for "mean"."""
    if reduction == "none":
        return loss.reshape(out_shape)
    total = loss.sum()
    return xp_of(loss).asarray(total / denom if reduction == "mean" else total)


def _row_scale(g, reduction, denom, rows):
    """The upstream gradient of a reduced loss as one factor per row, shape (M, 1)."""
    if reduction == "none":
        return g.reshape(rows, 1)
    return (g / denom if reduction == "mean" else g).reshape(1, 1)


def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def nll_loss(input, target, weight=None, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices: -weight[t] * input[t] per element (input = log-probs).

    "mean" divides by the summed weight of the targets that are not `ignore_index`, as torch does.
    """
    _check_reduction(reduction)
    x = input.data
    xp = xp_of(x)
    x2 = _rows(x)
    safe, valid = _target_rows(x.shape, target, weight, ignore_index)
    picked_w = _target_weights(weight, safe, valid, x.dtype)
    rows = xp.arange(x2.shape[0])
    loss = -picked_w * x2[rows, safe]
    denom = picked_w.sum()

    def backward(g):
        g2 = xp.zeros(x2.shape, dtype=x.dtype)
        g2[rows, safe] = -picked_w * _row_scale(g, reduction, denom, x2.shape[0])[:, 0]
        return _unrows(g2, x.shape), None, None
    return result(_reduce_rows(loss, reduction, denom, data_of(target).shape), (input, target, weight),
                  backward, "nll_loss")


def cross_entropy(input, target, weight=None, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over dimension 1 and the negative log-likelihood in one op, as torch's cross_entropy.

    `target` holds class indices (input's shape without dimension 1) or, when it is a float tensor of
    the input's shape, class probabilities. With smoothing e over C classes the target distribution is
    (1 - e) * target + e / C; class weights multiply each class's term.
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    check_same_device(input, target, weight)
    x = input.data
    if x.ndim == 0:
        raise ValueError("cross_entropy: expected input of shape (C,), (N, C) or (N, C, d1, ...), got a 0-d "
                         "tensor")
    t = data_of(target)
    if t.dtype.kind == "f":
        if tuple(t.shape) != tuple(x.shape):
            raise ValueError(f"Expected a float target (class probabilities) of the input's shape "
                             f"{list(x.shape)}, got {list(t.shape)}")
        return _cross_entropy_probs(input, target, weight, reduction, label_smoothing)
    return _cross_entropy_indices(input, target, weight, ignore_index, reduction, label_smoothing)


def _cross_entropy_indices(input, target, weight, ignore_index, reduction, eps):
    """Cross entropy against class indices; the gradient is (row weight) * softmax - (target weights)."""
    x = input.data
    xp = xp_of(x)
    x2 = _rows(x)
    n_classes = x2.shape[1]
    logp = log_softmax_array(x2, 1)
    safe, valid = _target_rows(x.shape, target, weight, ignore_index)
    picked_w = _target_weights(weight, safe, valid, x.dtype)
    rows = xp.arange(x2.shape[0])
    loss = -(1.0 - eps) * picked_w * logp[rows, safe]
    smooth_w = None
    if eps:
        smooth_w = (eps / n_classes) * (xp.ones(n_classes, x.dtype) if weight is None else weight.data)
        loss -= (logp @ smooth_w) * valid
    denom = picked_w.sum()

    def backward(g):
        scale = _row_scale(g, reduction, denom, x2.shape[0])
        total_w = (1.0 - eps) * picked_w
        if smooth_w is not None:
            total_w = total_w + smooth_w.sum() * valid
        g2 = xp.exp(logp) * total_w[:, None]
        g2[rows, safe] -= (1.0 - eps) * picked_w
        if smooth_w is not None:
            g2 -= smooth_w * valid[:, None]
        return _unrows(g2 * scale, x.shape), None, None
    return result(_reduce_rows(loss, reduction, denom, data_of(target).shape), (input, target, weight),
                  backward, "cross_entropy")


def _cross_entropy_probs(input, target, weight, reduction, eps):
    """Cross entropy against class probabilities; "mean" divides by the number of rows, as torch."""
    x, t = input.data, data_of(target)
    x2, t2 = _rows(x), _rows(t)
    n_rows, n_classes = x2.shape
    logp = log_softmax_array(x2, 1)
    q = t2 * (1.0 - eps) + eps / n_classes if eps else t2
    if weight is not None:
        q = q * weight.data
    loss = -(q * logp).sum(axis=1)
    out_shape = (x.shape[0],) + tuple(x.shape[2:]) if x.ndim > 1 else ()

    def backward(g):
        scale = _row_scale(g, reduction, n_rows, n_rows)
        gx = _unrows((xp_of(x).exp(logp) * q.sum(axis=1, keepdims=True) - q) * scale, x.shape)
        gt = None
        if _wants(target):
            gt_rows = -(1.0 - eps) * logp * (1.0 if weight is None else weight.data)
            gt = _unrows(gt_rows * scale, t.shape)
        return gx, gt, None
    return result(_reduce_rows(loss, reduction, n_rows, out_shape), (input, target, weight), backward,
                  "cross_entropy")


def binary_cross_entropy(input, target) -> Tensor:
    """Elementwise -(t log p + (1 - t) log(1 - p)) on probabilities, logs clamped at -100 as torch."""
    check_same_device(input, target)
    p, t = input.data, data_of(target)
    xp = xp_of(p)
    if p.size and (float(p.min()) < 0 or float(p.max()) > 1):
        raise ValueError("all elements of input should be between 0 and 1")
    with np.errstate(divide="ignore"):  # log(0) = -inf is expected here and clamped
        log_p = xp.maximum(xp.log(p), -100.0)
        log_1mp = xp.maximum(xp.log1p(-p), -100.0)

    def backward(g):
        gp = g * (p - t) / xp.maximum(p * (1.0 - p), 1e-12) if _wants(input) else None
        gt = g * (log_1mp - log_p) if _wants(target) else None
        return gp, gt
    return result(-(t * log_p + (1.0 - t) * log_1mp), (input, target), backward, "binary_cross_entropy")


def binary_cross_entropy_with_logits(input, target, pos_weight=None) -> Tensor:
    """Elementwise (1 - t) x + (1 + (pw - 1) t) * softplus(-x): sigmoid and BCE in one stable op."""
    check_same_device(input, target, pos_weight)
    x, t = input.data, data_of(target)
    xp = xp_of(x)
    softplus_neg = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)
    pw = None if pos_weight is None else pos_weight.data
    log_weight = 1.0 if pw is None else 1.0 + (pw - 1.0) * t
    out = (1.0 - t) * x + log_weight * softplus_neg

    def backward(g):
        gx = g * ((1.0 - t) - log_weight * _sigmoid_array(-x)) if _wants(input) else None
        gt = None
        if _wants(target):
            gt = g * (-x + (0.0 if pw is None else (pw - 1.0) * softplus_neg))
        gpw = g * t * softplus_neg if _wants(pos_weight) else None
        return gx, gt, gpw
    return result(out, (input, target, pos_weight), backward, "binary_cross_entropy_with_logits")


def huber(input, target, delta: float = 1.0) -> Tensor:
    """Elementwise Huber loss: 0.5 d^2 where |d| < delta, else delta * (|d| - 0.5 delta), d = input - target."""
    check_same_device(input, target)
    xp = xp_of(input if isinstance(input, Tensor) else target)
    d = data_of(input) - data_of(target)
    ad = xp.abs(d)
    out = xp.where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta))

    def backward(g):
        gd = g * xp.clip(d, -delta, delta)
        return gd, -gd
    return result(out, (input, target), backward, "huber")
