"""lucid.nn.functional: torch.nn.functional's names and signatures over lucid's primitives.

Wherever torch says `dim=`, `axis=` is accepted too. Arguments named `inplace` are accepted for
compatibility; the result is always a new tensor (autograd here has no in-place ops).
Losses live in `_functional_losses.py` and are re-exported here.
"""

from __future__ import annotations

import warnings

from .. import ops
from .._backend import array_module
from ..ops import conv as _conv
from ..ops import nn_ops as _nn
from ..ops import norm as _norm
from ..ops.reduce import resolve_axis
from ..tensor import Tensor
from ._functional_losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)

__all__ = [
    "avg_pool2d",
    "batch_norm",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "celu",
    "conv2d",
    "cross_entropy",
    "dropout",
    "dropout2d",
    "elu",
    "embedding",
    "flatten",
    "gelu",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "logsigmoid",
    "max_pool2d",
    "mish",
    "mse_loss",
    "nll_loss",
    "normalize",
    "one_hot",
    "pad",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "smooth_l1_loss",
    "softmax",
    "softmin",
    "softplus",
    "softsign",
    "tanh",
]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


# ---------------------------------------------------------------- activations

def relu(input, inplace: bool = False) -> Tensor:
    """max(x, 0)."""
    return ops.relu(input)


def relu6(input, inplace: bool = False) -> Tensor:
    """min(max(x, 0), 6)."""
    return _nn.hardtanh(input, 0.0, 6.0)


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x for x > 0, negative_slope * x otherwise."""
    return _nn.leaky_relu(input, negative_slope)


def elu(input, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    return _nn.elu(input, alpha)


def selu(input, inplace: bool = False) -> Tensor:
    """scale * elu(x, alpha) with the self-normalizing constants."""
    return _nn.elu(input, _SELU_ALPHA) * _SELU_SCALE


def celu(input, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    if alpha == 0:
        raise ValueError("ZeroDivisionError: alpha cannot be 0 for CELU")
    return _nn.elu(input * (1.0 / alpha), 1.0) * alpha


def gelu(input, approximate: str = "none") -> Tensor:
    """x * Phi(x), exactly (erf) or with the tanh approximation (`approximate="tanh"`)."""
    return _nn.gelu(input, approximate)


def silu(input, inplace: bool = False) -> Tensor:
    """x * sigmoid(x)."""
    return _nn.silu(input)


def mish(input, inplace: bool = False) -> Tensor:
    """x * tanh(softplus(x))."""
    return input * ops.tanh(_nn.softplus(input))


def softplus(input, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta (linear above `threshold`)."""
    return _nn.softplus(input, beta, threshold)


def sigmoid(input) -> Tensor:
    """1 / (1 + exp(-x))."""
    return ops.sigmoid(input)


def tanh(input) -> Tensor:
    """Hyperbolic tangent."""
    return ops.tanh(input)


def logsigmoid(input) -> Tensor:
    """log(sigmoid(x))."""
    return _nn.logsigmoid(input)


def hardtanh(input, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """Clamp into [min_val, max_val]."""
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    return _nn.hardtanh(input, min_val, max_val)


def hardsigmoid(input, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6."""
    return _nn.hardtanh(input + 3.0, 0.0, 6.0) * (1.0 / 6.0)


def hardswish(input, inplace: bool = False) -> Tensor:
    """x * relu6(x + 3) / 6."""
    return input * hardsigmoid(input)


def softsign(input) -> Tensor:
    """x / (1 + |x|)."""
    return input / (ops.abs(input) + 1.0)


def _softmax_dim(input, dim, axis, name):
    """The dimension a softmax-like function works on; torch's legacy implicit choice when none is given."""
    dim, _ = resolve_axis(axis, dim, False, None)
    if dim is None:
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to "
                      "include dim=X as an argument.", stacklevel=3)
        dim = 0 if input.ndim in (0, 1, 3) else 1
    return dim


def softmax(input, dim=None, _stacklevel: int = 3, dtype=None, *, axis=None) -> Tensor:
    """exp(x) / sum(exp(x)) along `dim`."""
    dim = _softmax_dim(input, dim, axis, "softmax")
    return _nn.softmax(input if dtype is None else input.to(dtype=dtype), dim)


def softmin(input, dim=None, _stacklevel: int = 3, dtype=None, *, axis=None) -> Tensor:
    """softmax(-x) along `dim`."""
    dim = _softmax_dim(input, dim, axis, "softmin")
    return _nn.softmax(-(input if dtype is None else input.to(dtype=dtype)), dim)


def log_softmax(input, dim=None, _stacklevel: int = 3, dtype=None, *, axis=None) -> Tensor:
    """log(softmax(x)) along `dim`, computed stably."""
    dim = _softmax_dim(input, dim, axis, "log_softmax")
    return _nn.log_softmax(input if dtype is None else input.to(dtype=dtype), dim)


def normalize(input, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None, *, axis=None) -> Tensor:
    """x / max(||x||_p, eps) along `dim`."""
    if out is not None:
        raise TypeError("normalize: the 'out' argument is not supported")
    if axis is not None:
        dim = axis
    norm = (ops.abs(input) ** p).sum(axis=dim, keepdims=True) ** (1.0 / p)
    return input / ops.clip(norm, min=eps)


# ---------------------------------------------------------------- layers

def linear(input, weight, bias=None) -> Tensor:
    """input @ weight.T + bias, with weight (out_features, in_features)."""
    return ops.linear(input, weight, bias)


def _unbatched(fn, input, expected_ndim, name, *args, **kwargs):
    """Run a batched op on an input that may lack its batch dimension (torch accepts both)."""
    if input.ndim == expected_ndim - 1:
        out = fn(ops.unsqueeze(input, 0), *args, **kwargs)
        if isinstance(out, tuple):
            return tuple(ops.squeeze(o, 0) for o in out)
        return ops.squeeze(out, 0)
    if input.ndim != expected_ndim:
        raise ValueError(f"Expected {expected_ndim - 1}D (unbatched) or {expected_ndim}D (batched) input to "
                         f"{name}, but got input of size: {list(input.shape)}")
    return fn(input, *args, **kwargs)


def _conv_padding(padding, weight, stride, dilation):
    """Resolve conv2d's "valid"/"same" padding strings to ((top, bottom), (left, right))."""
    if not isinstance(padding, str):
        return padding
    if padding == "valid":
        return 0
    if padding != "same":
        raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
    if _conv.pair(stride, "stride") != (1, 1):
        raise ValueError("padding='same' is not supported for strided convolutions")
    pads = []
    for k, d in zip(weight.shape[2:], _conv.pair(dilation, "dilation")):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation) of (N, C, H, W) or (C, H, W) input; padding may be "same"."""
    padding = _conv_padding(padding, weight, stride, dilation)
    return _unbatched(_conv.conv2d, input, 4, "conv2d", weight, bias, stride, padding, dilation, groups)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Max over kH x kW windows of (N, C, H, W) or (C, H, W) input."""
    return _unbatched(_conv.max_pool2d, input, 4, "max_pool2d", kernel_size, stride, padding, dilation,
                      ceil_mode, return_indices)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None) -> Tensor:
    """Mean over kH x kW windows of (N, C, H, W) or (C, H, W) input."""
    return _unbatched(_conv.avg_pool2d, input, 4, "avg_pool2d", kernel_size, stride, padding, ceil_mode,
                      count_include_pad, divisor_override)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing `normalized_shape` dimensions, then scale and shift."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    return _norm.layer_norm(input, normalized_shape, weight, bias, eps)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each channel of (N, C, *) input by batch (training) or running (eval) statistics."""
    return _norm.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero elements with probability p and scale the rest by 1/(1-p); the identity when not training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    return _nn.dropout(input, p)


def dropout2d(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels of an (N, C, H, W) input with probability p and scale the rest by 1/(1-p).

    As torch does, a 3-D input is taken as (N, C, L) (with torch's warning), and other ranks work
    channel-wise too but warn that they are deprecated.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if input.ndim not in (3, 4):
        warnings.warn(f"dropout2d: Received a {input.ndim}-D input to dropout2d, which is deprecated and will "
                      "result in an error in a future release. To retain the behavior and silence this warning, "
                      "please use dropout instead. Note that dropout2d exists to provide channel-wise dropout "
                      "on inputs with 2 spatial dimensions, a channel dimension, and an optional batch dimension "
                      "(i.e. 3D or 4D inputs).", stacklevel=2)
    if input.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
                      "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel dim. "
                      "This behavior will change in a future release to interpret the input as one without a "
                      "batch dimension, i.e. shape (C, H, W). To maintain the 1D channel-wise dropout behavior, "
                      "please switch to using dropout1d instead.", stacklevel=2)
    if not training or p == 0.0:
        return input
    return _nn.dropout(input, p, channels=True)


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of `weight` for the integer indices in `input`.

    With `max_norm`, the rows looked up are first rescaled in place to norm at most max_norm, as torch
    does. `sparse=True` is accepted; the gradient is a dense array with zero rows for unused indices.
    """
    num = weight.shape[0]
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError("Padding_idx must be within num_embeddings")
        padding_idx %= num
    if max_norm is not None:
        _renorm_rows(weight, input, max_norm, norm_type)
    return _nn.embedding(input, weight, padding_idx, scale_grad_by_freq)


def _renorm_rows(weight, input, max_norm, norm_type):
    """Scale the rows of `weight` that `input` uses down to norm `max_norm`, in place (outside autograd)."""
    idx = input.data if isinstance(input, Tensor) else input
    xp = array_module(weight.data)
    rows = xp.unique(xp.asarray(idx).reshape(-1))
    norms = xp.linalg.norm(weight.data[rows], ord=norm_type, axis=1)
    scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(weight.data.dtype)
    weight.data[rows] *= scale[:, None]


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """An int64 tensor of shape (*, num_classes) with a 1 at each index of `tensor`."""
    idx = tensor.data if isinstance(tensor, Tensor) else tensor
    xp = array_module(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError("one_hot is only applicable to index tensor of integer dtype")
    if idx.size and int(idx.min()) < 0:
        raise ValueError("Class values must be non-negative.")
    if num_classes == -1:
        num_classes = int(idx.max()) + 1 if idx.size else 0
    elif idx.size and int(idx.max()) >= num_classes:
        raise ValueError("Class values must be smaller than num_classes.")
    return Tensor((idx[..., None] == xp.arange(num_classes)).astype(xp.int64))


def pad(input, pad, mode: str = "constant", value=None) -> Tensor:
    """Pad the last len(pad) // 2 dimensions; `pad` lists (before, after) from the last dimension back."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2:
        raise ValueError("Padding length must be divisible by 2")
    if len(pad) // 2 > input.ndim:
        raise ValueError("Padding length too large")
    if min(pad, default=0) < 0:
        raise ValueError("negative padding (cropping) is not supported")
    pairs = [(0, 0)] * (input.ndim - len(pad) // 2)
    pairs += [(pad[i], pad[i + 1]) for i in range(len(pad) - 2, -1, -2)]
    if mode == "constant":
        return ops.pad(input, tuple(pairs), 0.0 if value is None else value)
    if value not in (None, 0, 0.0):
        raise ValueError(f'Padding mode "{mode}" doesn\'t take in value argument.')
    return _conv.pad_mode(input, tuple(pairs), mode)


def flatten(input, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dimensions start_dim..end_dim into one."""
    return ops.flatten(input, start_dim, end_dim)
