"""The loss functions of lucid.nn.functional: torch's names, signatures, reductions and messages."""

from __future__ import annotations

import warnings

from .. import ops
from .._backend import array_module
from ..ops import losses as _losses
from ..tensor import Tensor


def _legacy_reduction(size_average, reduce, reduction: str) -> str:
    """Map torch's deprecated size_average/reduce flags to a reduction string."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    reduction = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{reduction}' "
                  "instead.", stacklevel=3)
    return reduction


def _reduce(loss, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"{reduction} is not a valid value for reduction")


def _check_broadcast(input, target):
    """Warn, as torch does, when the target's shape differs; fail when the shapes cannot broadcast."""
    if input.shape == target.shape:
        return
    try:
        array_module(input.data).broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise ValueError(f"The size of input {input.shape} and the size of target {target.shape} cannot "
                         "be broadcast together") from None
    warnings.warn(f"Using a target size ({target.shape}) that is different to the input size "
                  f"({input.shape}). This will likely lead to incorrect results due to broadcasting. "
                  "Please ensure they have the same size.", stacklevel=3)


def _weighted_reduce(loss, weight, input, reduction, mean_over_weight: bool) -> Tensor:
    """Multiply elementwise losses by `weight` (input's shape) and reduce; "mean" divides by the summed
    weight (mse_loss, l1_loss) or by the element count (huber_loss), as in torch."""
    if weight is None:
        return _reduce(loss, reduction)
    if tuple(weight.shape) != tuple(input.shape):
        raise ValueError("Weights and input must have the same size.")
    loss = loss * weight
    if reduction == "mean" and mean_over_weight:
        return loss.sum() / weight.sum()
    return _reduce(loss, reduction)


def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", weight=None) -> Tensor:
    """Mean squared error, (input - target) ** 2, reduced."""
    _check_broadcast(input, target)
    reduction = _legacy_reduction(size_average, reduce, reduction)
    diff = input - target
    return _weighted_reduce(diff * diff, weight, input, reduction, mean_over_weight=True)


def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", weight=None) -> Tensor:
    """Mean absolute error, |input - target|, reduced."""
    _check_broadcast(input, target)
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _weighted_reduce(ops.abs(input - target), weight, input, reduction, mean_over_weight=True)


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0, weight=None) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - delta / 2), with d = input - target; reduced."""
    _check_broadcast(input, target)
    if delta <= 0:
        raise ValueError(f"huber_loss does not support non-positive values for delta, got {delta}")
    loss = _losses.huber(input, target, delta)
    return _weighted_reduce(loss, weight, input, reduction, mean_over_weight=False)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - beta / 2 (the L1 loss when beta is 0); reduced."""
    _check_broadcast(input, target)
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if beta < 0:
        raise ValueError("smooth_l1_loss does not support negative values for beta.")
    if beta == 0:
        return _reduce(ops.abs(input - target), reduction)
    return _reduce(_losses.huber(input, target, beta) * (1.0 / beta), reduction)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction: str = "mean") -> Tensor:
    """-w (t log p + (1 - t) log(1 - p)) on probabilities p, reduced (logs clamped at -100)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"Using a target size ({target.shape}) that is different to the input size "
                         f"({input.shape}) is deprecated. Please ensure they have the same size.")
    loss = _losses.binary_cross_entropy(input, target)
    return _reduce(loss if weight is None else loss * weight, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction: str = "mean", pos_weight=None) -> Tensor:
    """Sigmoid + binary cross entropy in one stable op; `pos_weight` weighs the positive term per class."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"Target size ({target.shape}) must be the same as input size ({input.shape})")
    loss = _losses.binary_cross_entropy_with_logits(input, target, pos_weight)
    return _reduce(loss if weight is None else loss * weight, reduction)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross entropy between logits (classes on dimension 1) and class indices or class probabilities."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _losses.cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices given log-probabilities (classes on dimension 1)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _losses.nll_loss(input, target, weight, ignore_index, reduction)


def kl_div(input, target, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """KL divergence with `input` as log-probabilities: target * (log target - input), reduced.

    "batchmean" divides the sum by the batch size (the mathematically right mean); "mean" divides by
    the element count, as torch does (with torch's warning).
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if log_target:
        loss = ops.exp(target) * (target - input)
    else:
        positive = target > 0
        safe = ops.where(positive, target, 1.0)
        loss = ops.where(positive, target * ops.log(safe), 0.0) - target * input
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support "
                      "size.'batchmean' divides only by the batch size, and aligns with the KL div math "
                      "definition.'mean' will be changed to behave the same as 'batchmean' in the next "
                      "major release.", stacklevel=2)
    return _reduce(loss, reduction)
