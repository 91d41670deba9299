"""Conv2d, with torch's signature, validation, default initialisation and padding modes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ...ops.conv import padding_pairs, pair
from .. import functional as F
from .. import init
from ..module import Module
from ._common import empty_parameter

if TYPE_CHECKING:
    from ..._typing import Device, DTypeLike, IntOrPair

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _check_conv_args(in_channels, out_channels, groups, padding, stride, padding_mode):
    if not isinstance(groups, int) or groups <= 0:
        raise ValueError("groups must be a positive integer")
    if in_channels % groups != 0:
        raise ValueError("in_channels must be divisible by groups")
    if out_channels % groups != 0:
        raise ValueError("out_channels must be divisible by groups")
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'same', 'valid'}}")
        if padding == "same" and any(s != 1 for s in stride):
            raise ValueError("padding='same' is not supported for strided convolutions")
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {set(_PADDING_MODES)}, but got "
                         f"padding_mode='{padding_mode}'")


class Conv2d(Module):
    """2-D convolution over (N, C_in, H, W) (or unbatched (C_in, H, W)) input.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size, stride, dilation: an int or (h, w).
        padding: an int, (h, w), "valid" or "same".
        groups: independent channel groups.
        bias: learn an additive bias.
        padding_mode: "zeros", "reflect", "replicate" or "circular".

    Initialised like torch: weight by kaiming_uniform_(a=sqrt(5)), bias by U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair, stride: IntOrPair = 1,
                 padding: IntOrPair | str = 0, dilation: IntOrPair = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Device | None = None, dtype: DTypeLike = None) -> None:
        super().__init__()
        stride = pair(stride, "stride")
        _check_conv_args(in_channels, out_channels, groups, padding, stride, padding_mode)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.dilation, self.groups = stride, pair(dilation, "dilation"), groups
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding")
        self.padding_mode = padding_mode
        self.weight = empty_parameter((out_channels, in_channels // groups) + self.kernel_size, dtype, device)
        if bias:
            self.bias = empty_parameter((out_channels,), dtype, device)
        else:
            self.register_parameter("bias", None)
        # F.pad's (left, right, top, bottom) for the non-zero padding modes
        (top, bottom), (left, right) = padding_pairs(
            F._conv_padding(self.padding, self.weight, self.stride, self.dilation))
        self._pad_for_mode = (left, right, top, bottom)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw fresh weights and bias from torch's default distributions."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._pad_for_mode, mode=self.padding_mode)
            return F.conv2d(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s
