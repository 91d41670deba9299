"""Elementwise primitives: arithmetic, comparisons and unary math, each forward beside its backward."""

from __future__ import annotations

from ._core import check_same_device, data_of, result, xp_of
from ..tensor import Tensor


def _broadcast_shapes_check(a, b, op):
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        check_same_device(a, b)
        try:
            xp_of(a).broadcast_shapes(a.data.shape, b.data.shape)
        except ValueError:
            raise ValueError(f"{op}: shapes {tuple(a.data.shape)} and {tuple(b.data.shape)} "
                             "cannot be broadcast together") from None


def _wants(x) -> bool:
    """True when `x` is a Tensor whose gradient the backward pass needs."""
    return isinstance(x, Tensor) and x.requires_grad


# ---------------------------------------------------------------- binary arithmetic

def add(a, b) -> Tensor:
    """a + b with broadcasting."""
    _broadcast_shapes_check(a, b, "add")
    return result(data_of(a) + data_of(b), (a, b), lambda g: (g, g), "add")


def sub(a, b) -> Tensor:
    """a - b with broadcasting."""
    _broadcast_shapes_check(a, b, "sub")
    return result(data_of(a) - data_of(b), (a, b), lambda g: (g, -g), "sub")


def mul(a, b) -> Tensor:
    """a * b with broadcasting."""
    _broadcast_shapes_check(a, b, "mul")
    x, y = data_of(a), data_of(b)

    def backward(g):
        return (g * y if _wants(a) else None), (g * x if _wants(b) else None)
    return result(x * y, (a, b), backward, "mul")


def div(a, b) -> Tensor:
    """a / b with broadcasting."""
    _broadcast_shapes_check(a, b, "div")
    x, y = data_of(a), data_of(b)
    out = x / y

    def backward(g):
        return (g / y if _wants(a) else None), (-g * out / y if _wants(b) else None)
    return result(out, (a, b), backward, "div")


def pow(a, b) -> Tensor:
    """a ** b; the exponent may itself be a Tensor."""
    _broadcast_shapes_check(a, b, "pow")
    x, y = data_of(a), data_of(b)
    xp = xp_of(x)
    out = x ** y

    def backward(g):
        ga = g * y * x ** (y - 1) if _wants(a) else None
        gb = None
        if _wants(b):
            safe = xp.where(x > 0, x, 1)  # d/dy x**y = x**y log x, taken as 0 where x <= 0
            gb = g * out * xp.log(safe)
        return ga, gb
    return result(out, (a, b), backward, "pow")


def maximum(a, b) -> Tensor:
    """Elementwise max; on ties the gradient is split evenly, as in PyTorch."""
    return _extremum(a, b, lambda x, y: x > y, "maximum")


def minimum(a, b) -> Tensor:
    """Elementwise min; on ties the gradient is split evenly, as in PyTorch."""
    return _extremum(a, b, lambda x, y: x < y, "minimum")


def _extremum(a, b, wins, name):
    _broadcast_shapes_check(a, b, name)
    x, y = data_of(a), data_of(b)
    xp = xp_of(x) if isinstance(a, Tensor) else xp_of(y)
    a_wins, tie = wins(x, y), x == y
    out = xp.where(a_wins | tie, x, y)

    def backward(g):
        ga = xp.where(a_wins, g, xp.where(tie, g / 2, 0))
        gb = xp.where(a_wins, 0, xp.where(tie, g / 2, g))
        return ga.astype(g.dtype, copy=False), gb.astype(g.dtype, copy=False)
    return result(out, (a, b), backward, name)


def where(condition, a, b) -> Tensor:
    """Elements of `a` where `condition` holds, else of `b`."""
    cond = data_of(condition)
    xp = xp_of(a) if isinstance(a, Tensor) else xp_of(b)
    out = xp.where(cond, data_of(a), data_of(b))

    def backward(g):
        zero = xp.zeros((), dtype=g.dtype)
        return None, xp.where(cond, g, zero), xp.where(cond, zero, g)
    return result(out, (condition, a, b), backward, "where")


# ---------------------------------------------------------------- unary math

def neg(a) -> Tensor:
    """-a."""
    return result(-a.data, (a,), lambda g: (-g,), "neg")


def exp(a) -> Tensor:
    """e ** a."""
    out = xp_of(a).exp(a.data)
    return result(out, (a,), lambda g: (g * out,), "exp")


def log(a) -> Tensor:
    """Natural logarithm."""
    x = a.data
    return result(xp_of(a).log(x), (a,), lambda g: (g / x,), "log")


def sqrt(a) -> Tensor:
    """Square root."""
    out = xp_of(a).sqrt(a.data)
    return result(out, (a,), lambda g: (g / (2 * out),), "sqrt")


def abs(a) -> Tensor:
    """|a|; the gradient at 0 is 0, as in PyTorch."""
    x = a.data
    xp = xp_of(a)
    return result(xp.abs(x), (a,), lambda g: (g * xp.sign(x),), "abs")


def clip(a, min=None, max=None) -> Tensor:
    """Clamp into [min, max]; the gradient passes where the input lies inside (bounds included)."""
    if min is None and max is None:
        raise ValueError("clip: at least one of 'min' or 'max' must not be None")
    x = a.data
    xp = xp_of(a)
    out = xp.clip(x, data_of(min), data_of(max))
    inside = xp.ones(x.shape, dtype=bool)
    if min is not None:
        inside &= x >= data_of(min)
    if max is not None:
        inside &= x <= data_of(max)
    return result(out, (a,), lambda g: (g * inside,), "clip")


def tanh(a) -> Tensor:
    """Hyperbolic tangent."""
    out = xp_of(a).tanh(a.data)
    return result(out, (a,), lambda g: (g * (1 - out * out),), "tanh")


def sigmoid(a) -> Tensor:
    """Logistic sigmoid, computed without overflow for large |a|."""
    xp = xp_of(a)
    x = a.data
    e = xp.exp(-xp.abs(x))
    out = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return result(out, (a,), lambda g: (g * out * (1 - out),), "sigmoid")


def relu(a) -> Tensor:
    """max(a, 0)."""
    x = a.data
    out = xp_of(a).maximum(x, 0)
    return result(out, (a,), lambda g: (g * (x > 0),), "relu")


def sin(a) -> Tensor:
    """Sine."""
    xp = xp_of(a)
    x = a.data
    return result(xp.sin(x), (a,), lambda g: (g * xp.cos(x),), "sin")


def cos(a) -> Tensor:
    """Cosine."""
    xp = xp_of(a)
    x = a.data
    return result(xp.cos(x), (a,), lambda g: (-g * xp.sin(x),), "cos")


def sign(a) -> Tensor:
    """Sign of each element (no gradient)."""
    return Tensor._wrap(xp_of(a).sign(a.data))


# ---------------------------------------------------------------- comparisons (never differentiable)

def _compare(ufunc_name):
    def compare(a, b) -> Tensor:
        _broadcast_shapes_check(a, b, ufunc_name)
        xp = xp_of(a) if isinstance(a, Tensor) else xp_of(b)
        return Tensor._wrap(getattr(xp, ufunc_name)(data_of(a), data_of(b)))
    compare.__name__ = ufunc_name
    compare.__doc__ = f"Elementwise {ufunc_name} (a bool Tensor, no gradient)."
    return compare


eq = _compare("equal")
ne = _compare("not_equal")
lt = _compare("less")
le = _compare("less_equal")
gt = _compare("greater")
ge = _compare("greater_equal")
