"""The helpers every primitive uses: unwrap inputs, and wrap a result with its backward closure."""

from __future__ import annotations

import numpy as np

from .. import _backend, autograd
from ..autograd import Node
from ..tensor import Tensor


def data_of(x):
    """The array inside a Tensor; a NumPy scalar as a Python number; anything else (a number, an array) unchanged.

    NumPy scalars become Python numbers so that, as in PyTorch, they do not promote a float32 tensor:
    `x / np.sqrt(d)` stays float32 (NumPy 2 would make it float64).
    """
    if isinstance(x, Tensor):
        return x.data
    if isinstance(x, np.generic):
        return x.item()
    return x


def needs_grad(*inputs) -> bool:
    """True when grad mode is on and some input is a Tensor that requires grad."""
    if not autograd._grad_enabled:
        return False
    for x in inputs:
        if isinstance(x, Tensor) and x.requires_grad:
            return True
    return False


def result(data, inputs: tuple, backward, name: str) -> Tensor:
    """Wrap `data` as the output of an op, recording `backward` when the graph is being recorded.

    Args:
        data: the forward result (an array).
        inputs: the op's inputs, in the order `backward` returns gradients for them.
        backward: grad_out -> tuple of one gradient (or None) per input; called at most once
            unless the graph is retained.
        name: the op's name, for error messages and debugging.
    """
    if needs_grad(*inputs):
        out = Tensor._wrap(data, requires_grad=True)
        out._node = Node(tuple(x if isinstance(x, Tensor) else None for x in inputs), backward, name)
        return out
    return Tensor._wrap(data)


def check_same_device(*inputs) -> None:
    """Raise a clear error when Tensors on different devices meet in one op."""
    devices = {_backend.device_of(x.data) for x in inputs if isinstance(x, Tensor)}
    if len(devices) > 1:
        raise RuntimeError("Expected all tensors to be on the same device, but found at least two "
                           f"devices, {' and '.join(sorted(devices))}!")


def xp_of(x):
    """The array module for a Tensor or array."""
    return _backend.array_module(data_of(x))
