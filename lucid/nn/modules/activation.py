"""Activation layers: thin Modules over lucid.nn.functional, with torch's arguments and reprs.

`inplace=` is accepted for compatibility; results are always new tensors.
"""

from __future__ import annotations

from .. import functional as F
from ..module import Module


def _inplace_suffix(inplace: bool) -> str:
    return ", inplace=True" if inplace else ""


class _Elementwise(Module):
    """An activation with no settings but `inplace`; subclasses name their functional in `_fn`."""

    _fn = None

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return type(self)._fn(input)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU(_Elementwise):
    """max(x, 0)."""
    _fn = F.relu


class ReLU6(_Elementwise):
    """min(max(x, 0), 6)."""
    _fn = F.relu6


class SELU(_Elementwise):
    """Scaled ELU with the self-normalizing constants."""
    _fn = F.selu


class SiLU(_Elementwise):
    """x * sigmoid(x)."""
    _fn = F.silu


class Mish(_Elementwise):
    """x * tanh(softplus(x))."""
    _fn = F.mish


class Hardsigmoid(_Elementwise):
    """relu6(x + 3) / 6."""
    _fn = F.hardsigmoid


class Hardswish(_Elementwise):
    """x * relu6(x + 3) / 6."""
    _fn = F.hardswish


class _Plain(Module):
    """An activation without arguments; subclasses name their functional in `_fn`."""

    _fn = None

    def forward(self, input):
        return type(self)._fn(input)


class Sigmoid(_Plain):
    """1 / (1 + exp(-x))."""
    _fn = F.sigmoid


class Tanh(_Plain):
    """Hyperbolic tangent."""
    _fn = F.tanh


class LogSigmoid(_Plain):
    """log(sigmoid(x))."""
    _fn = F.logsigmoid


class Softsign(_Plain):
    """x / (1 + |x|)."""
    _fn = F.softsign


class LeakyReLU(Module):
    """x for x > 0, negative_slope * x otherwise."""

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}{_inplace_suffix(self.inplace)}"


class ELU(Module):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, input):
        return F.elu(input, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}{_inplace_suffix(self.inplace)}"


class CELU(ELU):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""

    def forward(self, input):
        return F.celu(input, self.alpha)


class GELU(Module):
    """x * Phi(x); `approximate="tanh"` uses the tanh approximation."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate argument must be either none or tanh (got {approximate!r})")
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softplus(Module):
    """log(1 + exp(beta x)) / beta, linear above `threshold`."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input):
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(Module):
    """Clamp into [min_val, max_val]."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        if min_val > max_val:
            raise ValueError("min_val cannot be greater than max_val")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, input):
        return F.hardtanh(input, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}{_inplace_suffix(self.inplace)}"


class _DimActivation(Module):
    """softmax-like activations over one dimension (`dim=None` keeps torch's legacy implicit choice)."""

    _fn = None

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return type(self)._fn(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_DimActivation):
    """exp(x) / sum(exp(x)) along `dim`."""
    _fn = F.softmax


class Softmin(_DimActivation):
    """softmax(-x) along `dim`."""
    _fn = F.softmin


class LogSoftmax(_DimActivation):
    """log(softmax(x)) along `dim`."""
    _fn = F.log_softmax
