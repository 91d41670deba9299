"""Differentiable primitives. Each op computes its forward and records the backward beside it."""

from .arith import (abs, add, clip, cos, div, eq, exp, ge, gt, le, log, lt, maximum, minimum, mul, ne, neg,
                    pow, relu, sigmoid, sign, sin, sqrt, sub, tanh, where)
from .device import astype, clone, to_device
from .linalg import linear, matmul
from .reduce import amax, amin, argmax, argmin, logsumexp, max, mean, min, sum, var
from .shape import (concatenate, expand, flatten, getitem, pad, permute, reshape, squeeze, stack, transpose,
                    unsqueeze)

__all__ = [
    "abs", "add", "clip", "cos", "div", "eq", "exp", "ge", "gt", "le", "log", "lt", "maximum", "minimum",
    "mul", "ne", "neg", "pow", "relu", "sigmoid", "sign", "sin", "sqrt", "sub", "tanh", "where",
    "astype", "clone", "to_device", "linear", "matmul",
    "amax", "amin", "argmax", "argmin", "logsumexp", "max", "mean", "min", "sum", "var",
    "concatenate", "expand", "flatten", "getitem", "pad", "permute", "reshape", "squeeze", "stack",
    "transpose", "unsqueeze",
]
