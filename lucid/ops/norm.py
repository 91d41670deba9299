"""Normalization primitives: layer_norm and batch_norm, each one op with its own backward.

Both normalize x to xhat = (x - mean) * rstd over some axes and then apply an optional affine map;
they share the statistics and the backward through those statistics.
"""

from __future__ import annotations

from ..tensor import Tensor
from ._core import check_same_device, result, xp_of
from .arith import _wants


def _normalize(x, axes, eps):
    """xhat, rstd, mean and (biased) variance of `x` over `axes` (statistics keep their dims)."""
    xp = xp_of(x)
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=axes, keepdims=True)
    rstd = 1.0 / xp.sqrt(var + eps)
    return centered * rstd, rstd, mean, var


def _normalize_backward(gxhat, xhat, rstd, axes):
    """d(loss)/dx given d(loss)/d(xhat), when mean and rstd were computed from x over `axes`."""
    return rstd * (gxhat - gxhat.mean(axis=axes, keepdims=True)
                   - xhat * (gxhat * xhat).mean(axis=axes, keepdims=True))


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing `normalized_shape` dimensions, then scale by weight and add bias.

    Args:
        input: (*, *normalized_shape).
        normalized_shape: the trailing shape to normalize over.
        weight, bias: optional Tensors of `normalized_shape`.
        eps: added to the variance for stability.
    """
    check_same_device(input, weight, bias)
    x = input.data
    normalized_shape = tuple(normalized_shape)
    k = len(normalized_shape)
    if k == 0 or x.ndim < k or tuple(x.shape[x.ndim - k:]) != normalized_shape:
        raise ValueError(f"Given normalized_shape={list(normalized_shape)}, expected input with shape "
                         f"[*, {', '.join(map(str, normalized_shape))}], but got input of size"
                         f"{list(x.shape)}")
    axes = tuple(range(x.ndim - k, x.ndim))
    lead = tuple(range(x.ndim - k))
    xhat, rstd, _, _ = _normalize(x, axes, eps)
    w = None if weight is None else weight.data
    out = xhat if w is None else xhat * w
    if bias is not None:
        out = out + bias.data

    def backward(g):
        gx = _normalize_backward(g if w is None else g * w, xhat, rstd, axes) if _wants(input) else None
        gw = (g * xhat).sum(axis=lead) if _wants(weight) else None
        gb = g.sum(axis=lead) if _wants(bias) else None
        return gx, gw, gb
    return result(out, (input, weight, bias), backward, "layer_norm")


def _check_channels(name, stat, channels):
    if stat is not None and stat.data.size != channels:
        raise ValueError(f"{name} should contain {channels} elements not {stat.data.size}")


def _update_running(running_mean, running_var, mean, var, count, momentum):
    """running = (1 - momentum) * running + momentum * batch statistic, in place (unbiased variance)."""
    keep = 1.0 - momentum
    if running_mean is not None:
        running_mean.data *= keep
        running_mean.data += momentum * mean.reshape(-1).astype(running_mean.data.dtype, copy=False)
    if running_var is not None:
        unbiased = var.reshape(-1) * (count / (count - 1))
        running_var.data *= keep
        running_var.data += momentum * unbiased.astype(running_var.data.dtype, copy=False)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each channel (dimension 1) over the batch and spatial dimensions, as torch's batch_norm.

    In training the batch statistics normalize and, when running statistics are given, update them in
    place: running = (1 - momentum) * running + momentum * batch (the variance unbiased). In evaluation
    the running statistics normalize.

    Args:
        input: (N, C) or (N, C, *).
        running_mean, running_var: Tensors of C elements, or None.
        weight, bias: optional Tensors of C elements.
    """
    check_same_device(input, weight, bias)
    x = input.data
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected an input with at least 2 dimensions (N, C, ...), got "
                         f"shape {tuple(x.shape)}")
    channels = x.shape[1]
    for name, stat in (("running_mean", running_mean), ("running_var", running_var),
                       ("weight", weight), ("bias", bias)):
        _check_channels(name, stat, channels)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, channels) + (1,) * (x.ndim - 2)
    if training:
        count = x.size // channels
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                             f"{list(x.shape)}")
        xhat, rstd, mean, var = _normalize(x, axes, eps)
        _update_running(running_mean, running_var, mean, var, count, momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("running_mean and running_var must be defined in evaluation mode")
        rstd = 1.0 / xp_of(x).sqrt(running_var.data.reshape(shape) + eps)
        xhat = (x - running_mean.data.reshape(shape)) * rstd
    return _batch_norm_affine(input, xhat, rstd, weight, bias, axes, shape, training)


def _batch_norm_affine(input, xhat, rstd, weight, bias, axes, shape, training):
    """Apply weight and bias to xhat and record the backward of the whole batch_norm op."""
    w = None if weight is None else weight.data.reshape(shape)
    out = xhat if w is None else xhat * w
    if bias is not None:
        out = out + bias.data.reshape(shape)

    def backward(g):
        gx = None
        if _wants(input):
            gxhat = g if w is None else g * w
            gx = _normalize_backward(gxhat, xhat, rstd, axes) if training else gxhat * rstd
        gw = (g * xhat).sum(axis=axes) if _wants(weight) else None
        gb = g.sum(axis=axes) if _wants(bias) else None
        return gx, gw, gb
    return result(out, (input, weight, bias), backward, "batch_norm")
