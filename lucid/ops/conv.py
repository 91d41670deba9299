"""Sliding-window primitives: conv2d, max_pool2d, avg_pool2d, and padding by reflection/replication/wrap.

Windows are a strided view of the padded input, (N, C, H_out, W_out, kH, kW), made without copying
(`as_strided`); convolution copies them once into columns and multiplies with the weight. The backward
passes add window gradients back into the input with one strided slice per kernel position.
"""

from __future__ import annotations

from ..tensor import Tensor
from ._core import check_same_device, result, xp_of
from .arith import _wants

_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pair(value, name: str) -> tuple:
    """An int, or a pair of ints, as a pair of ints."""
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) == 1:
        value = value * 2
    if len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return value


def padding_pairs(padding) -> tuple:
    """Normalize padding to ((top, bottom), (left, right)): from an int, (pad_h, pad_w) or the pairs."""
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(
            isinstance(p, (tuple, list)) for p in padding):
        pads = tuple(tuple(int(v) for v in p) for p in padding)
    else:
        ph, pw = pair(padding, "padding")
        pads = ((ph, ph), (pw, pw))
    if min(min(p) for p in pads) < 0:
        raise ValueError("negative padding is not supported")
    return pads


def _check_4d(x, name):
    if x.ndim != 4:
        raise ValueError(f"Expected 4D (batched) input to {name}, but got input of size: {list(x.shape)}")


def _pad_hw(x, pads, value):
    """x padded on its last two dimensions with a constant (x itself when there is no padding)."""
    if not any(pads[0]) and not any(pads[1]):
        return x
    return xp_of(x).pad(x, ((0, 0), (0, 0)) + pads, mode="constant", constant_values=value)


def _crop(x, pads, size):
    """Undo `_pad_hw`: the (H, W) = `size` region of a padded array."""
    (top, _), (left, _) = pads
    return x[:, :, top:top + size[0], left:left + size[1]]


def _windows(xpad, kernel, stride, dilation, out_hw):
    """A read-only strided view (N, C, H_out, W_out, kH, kW) of every window of `xpad`."""
    sn, sc, sh, sw = xpad.strides
    shape = tuple(xpad.shape[:2]) + tuple(out_hw) + tuple(kernel)
    strides = (sn, sc, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1])
    return xp_of(xpad).lib.stride_tricks.as_strided(xpad, shape, strides)


def _fold(cols, padded_shape, stride, dilation):
    """The adjoint of `_windows`: add each window's values back where they came from.

    One strided slice per kernel position; within one position the windows touch distinct elements,
    so plain `+=` is exact.
    """
    xp = xp_of(cols)
    out = xp.zeros(padded_shape, dtype=cols.dtype)
    ho, wo, kh, kw = cols.shape[2:]
    for i in range(kh):
        for j in range(kw):
            top, left = i * dilation[0], j * dilation[1]
            out[:, :, top:top + stride[0] * (ho - 1) + 1:stride[0],
                left:left + stride[1] * (wo - 1) + 1:stride[1]] += cols[:, :, :, :, i, j]
    return out


def _conv_geometry(x, w, bias, stride, padding, dilation, groups):
    """Validate conv2d's arguments (torch's messages) and return (stride, dilation, pads, out_hw)."""
    _check_4d(x, "conv2d")
    if w.ndim != 4:
        raise ValueError(f"conv2d: expected a 4-dimensional weight (out_channels, in_channels/groups, kH, "
                         f"kW), but got weight of size {list(w.shape)}")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError("non-positive groups is not supported")
    if w.shape[0] % groups:
        raise ValueError(f"Given groups={groups}, expected weight to be divisible by {groups} at dimension "
                         f"0, but got weight of size {list(w.shape)} instead")
    if x.shape[1] != w.shape[1] * groups:
        raise ValueError(f"Given groups={groups}, weight of size {list(w.shape)}, expected input"
                         f"{list(x.shape)} to have {w.shape[1] * groups} channels, but got {x.shape[1]} "
                         f"channels instead")
    if bias is not None and tuple(bias.shape) != (w.shape[0],):
        raise ValueError(f"Given weight of size {list(w.shape)}, expected bias to be 1-dimensional with "
                         f"{w.shape[0]} elements, but got bias of size {list(bias.shape)} instead")
    stride, dilation, pads = pair(stride, "stride"), pair(dilation, "dilation"), padding_pairs(padding)
    if min(stride) < 1:
        raise ValueError("non-positive stride is not supported")
    if min(dilation) < 1:
        raise ValueError("dilation should be greater than zero")
    padded = [x.shape[2] + sum(pads[0]), x.shape[3] + sum(pads[1])]
    span = [dilation[0] * (w.shape[2] - 1) + 1, dilation[1] * (w.shape[3] - 1) + 1]
    if padded[0] < span[0] or padded[1] < span[1]:
        raise ValueError(f"Calculated padded input size per channel: ({padded[0]} x {padded[1]}). Kernel "
                         f"size: ({span[0]} x {span[1]}). Kernel size can't be greater than actual input "
                         f"size")
    out_hw = tuple((p - s) // st + 1 for p, s, st in zip(padded, span, stride))
    return stride, dilation, pads, out_hw


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """2-D cross-correlation, as torch's conv2d (im2col + one batched matrix product per group).

    Args:
        input: (N, C_in, H, W).
        weight: (C_out, C_in / groups, kH, kW).
        bias: optional (C_out,).
        stride, dilation: an int or (h, w).
        padding: zeros added on each side: an int, (pad_h, pad_w) or ((top, bottom), (left, right)).
        groups: split the channels into this many independent convolutions.
    """
    check_same_device(input, weight, bias)
    x, w = input.data, weight.data
    stride, dilation, pads, (ho, wo) = _conv_geometry(x, w, bias, stride, padding, dilation, groups)
    n, c = x.shape[:2]
    out_c, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    xpad = _pad_hw(x, pads, 0)
    # columns (groups, N*H_out*W_out, C_in/groups*kH*kW): the only copy of the windows
    cols = _windows(xpad, (kh, kw), stride, dilation, (ho, wo)).transpose(0, 2, 3, 1, 4, 5)
    cols = cols.reshape(n * ho * wo, groups, -1).transpose(1, 0, 2)
    wg = w.reshape(groups, out_c // groups, -1)
    out = (cols @ wg.transpose(0, 2, 1)).transpose(1, 0, 2).reshape(n, ho, wo, out_c)
    if bias is not None:
        out += bias.data
    out = xp_of(x).ascontiguousarray(out.transpose(0, 3, 1, 2))

    def backward(g):
        gout = g.transpose(0, 2, 3, 1).reshape(n * ho * wo, groups, -1).transpose(1, 0, 2)
        gx = gw = gb = None
        if _wants(input):
            gcols = (gout @ wg).transpose(1, 0, 2).reshape(n, ho, wo, c, kh, kw)
            gx = _crop(_fold(gcols.transpose(0, 3, 1, 2, 4, 5), xpad.shape, stride, dilation),
                       pads, x.shape[2:])
        if _wants(weight):
            gw = (gout.transpose(0, 2, 1) @ cols).reshape(w.shape)
        if _wants(bias):
            gb = g.sum(axis=(0, 2, 3))
        return gx, gw, gb
    return result(out, (input, weight, bias), backward, "conv2d")


def _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode):
    """Validate pooling arguments; return (kernel, stride, dilation, pads, out_hw).

    With `ceil_mode` the last window may run past the padded input; `pads` then holds that overhang as
    extra bottom/right padding.
    """
    _check_4d(x, "pool2d")
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None or stride == () or stride == [] else pair(stride, "stride")
    pad, dilation = pair(padding, "padding"), pair(dilation, "dilation")
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"kernel_size, stride and dilation must be positive, got {kernel}, {stride}, "
                         f"{dilation}")
    out_hw, pads = [], []
    for size, k, s, p, d in zip(x.shape[2:], kernel, stride, pad, dilation):
        span = d * (k - 1) + 1
        if not 0 <= p <= span // 2:
            raise ValueError(f"pad should be at most half of effective kernel size, but got pad={p}, "
                             f"kernel_size={k} and dilation={d}")
        count = (size + 2 * p - span + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (count - 1) * s >= size + p:
            count -= 1  # the last window must start inside the input or its left padding
        out_hw.append(count)
        pads.append((p, p + max(0, (count - 1) * s + span - size - 2 * p)))
    if min(out_hw) < 1:
        raise ValueError(f"Given input size: ({x.shape[1]}x{x.shape[2]}x{x.shape[3]}). Calculated output "
                         f"size: ({x.shape[1]}x{out_hw[0]}x{out_hw[1]}). Output size is too small")
    return kernel, stride, dilation, tuple(pads), tuple(out_hw)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Maximum over each window (padding counts as -inf); the gradient goes to the first maximum.

    Returns:
        The pooled Tensor, and with `return_indices` also the flat index (into H*W) of each maximum.
    """
    x = input.data
    xp = xp_of(x)
    kernel, stride, dilation, pads, (ho, wo) = _pool_geometry(x, kernel_size, stride, padding, dilation,
                                                              ceil_mode)
    xpad = _pad_hw(x, pads, -xp.inf)
    flat = _windows(xpad, kernel, stride, dilation, (ho, wo)).reshape(x.shape[:2] + (ho, wo, -1))
    arg = flat.argmax(axis=-1)
    out = xp.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]

    def backward(g):
        hit = arg[..., None] == xp.arange(flat.shape[-1])
        cols = (hit * g[..., None]).reshape(g.shape + kernel)
        return (_crop(_fold(cols, xpad.shape, stride, dilation), pads, x.shape[2:]),)
    pooled = result(out, (input,), backward, "max_pool2d")
    if not return_indices:
        return pooled
    rows = xp.arange(ho)[:, None] * stride[0] + (arg // kernel[1]) * dilation[0] - pads[0][0]
    cols = xp.arange(wo) * stride[1] + (arg % kernel[1]) * dilation[1] - pads[1][0]
    return pooled, Tensor._wrap((rows * x.shape[3] + cols).astype(xp.int64))


def _avg_divisor(x, pads, count_include_pad, kernel, stride, out_hw):
    """How many elements each window averages over: torch counts the padding (not the ceil overhang)
    with `count_include_pad`, and only the input's elements without it."""
    if count_include_pad:
        shape = (x.shape[2] + 2 * pads[0][0], x.shape[3] + 2 * pads[1][0])
        rest = tuple((0, after - before) for before, after in pads)
    else:
        shape, rest = tuple(x.shape[2:]), pads
    ones = xp_of(x).ones((1, 1) + shape, dtype=x.dtype)
    return _windows(_pad_hw(ones, rest, 0), kernel, stride, (1, 1), out_hw).sum(axis=(-2, -1))[0, 0]


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None) -> Tensor:
    """Mean over each window (zero padding), with torch's choice of divisor."""
    x = input.data
    xp = xp_of(x)
    kernel, stride, _, pads, out_hw = _pool_geometry(x, kernel_size, stride, padding, 1, ceil_mode)
    xpad = _pad_hw(x, pads, 0)
    sums = _windows(xpad, kernel, stride, (1, 1), out_hw).sum(axis=(-2, -1))
    if divisor_override:
        divisor = float(divisor_override)
    else:
        divisor = _avg_divisor(x, pads, count_include_pad, kernel, stride, out_hw)

    def backward(g):
        share = g / divisor
        cols = xp.broadcast_to(share[..., None, None], share.shape + kernel)
        return (_crop(_fold(cols, xpad.shape, stride, (1, 1)), pads, x.shape[2:]),)
    return result(sums / divisor, (input,), backward, "avg_pool2d")


def pad_mode(a, pad_width, mode: str) -> Tensor:
    """Pad by "reflect", "replicate" or "circular"; `pad_width` in NumPy's ((before, after), ...) form.

    The forward gathers through an index array padded the same way, so the backward is one bincount.
    """
    if mode not in _PAD_MODES:
        raise ValueError(f"Unsupported padding mode: {mode!r} (expected one of "
                         f"{', '.join(['constant'] + list(_PAD_MODES))})")
    x = a.data
    xp = xp_of(a)
    for (before, after), n in zip(pad_width, x.shape):
        if mode == "reflect" and max(before, after) >= n or mode == "circular" and max(before, after) > n:
            raise ValueError(f"Padding size should be less than the corresponding input dimension, but "
                             f"got: padding ({before}, {after}) of input of size {list(x.shape)}")
    index = xp.pad(xp.arange(x.size).reshape(x.shape), pad_width, mode=_PAD_MODES[mode])

    def backward(g):
        summed = xp.bincount(index.reshape(-1), weights=g.reshape(-1), minlength=x.size)
        return (summed.astype(g.dtype, copy=False).reshape(x.shape),)
    return result(x.reshape(-1)[index], (a,), backward, "pad")
