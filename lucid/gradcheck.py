"""Finite-difference gradient checking: compare autograd's gradients with central differences."""

from __future__ import annotations

import numpy as np

from . import _backend
from .tensor import Tensor


def numerical_grad(fn, inputs, index: int, eps: float = 1e-6) -> np.ndarray:
    """d(sum(fn(*inputs) * probe))/d(inputs[index]) by central differences (probe is fixed, random)."""
    target = inputs[index]
    base = target.data.copy()
    probe = None
    grad = np.zeros(base.shape, dtype=np.float64)
    # index the array itself: reshape(-1) of a non-contiguous input is a copy and would perturb nothing
    for i in np.ndindex(base.shape):
        values = []
        for step in (eps, -eps):
            target.data[i] = base[i] + step
            out = fn(*inputs)
            out_data = _backend.to_host(out.data).astype(np.float64)
            if probe is None:
                probe = np.random.default_rng(0).standard_normal(out_data.shape)
            values.append(float((out_data * probe).sum()))
        target.data[i] = base[i]
        grad[i] = (values[0] - values[1]) / (2 * eps)
    return grad


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Check autograd against finite differences for every input that requires grad.

    `fn` maps the input Tensors to one Tensor. Use float64 inputs. The output is contracted with a
    fixed random probe so every output element is checked, not only their sum.

    Raises:
        AssertionError: naming the input and the largest difference, when they disagree.
    """
    inputs = list(inputs)
    out = fn(*inputs)
    probe = np.random.default_rng(0).standard_normal(out.shape)
    for x in inputs:
        if isinstance(x, Tensor):
            x.grad = None
    out.backward(_backend.to_device(probe.astype(out.dtype), out.device))
    for i, x in enumerate(inputs):
        if not (isinstance(x, Tensor) and x.requires_grad):
            continue
        expected = numerical_grad(fn, inputs, i, eps)
        got = _backend.to_host(x.grad) if x.grad is not None else np.zeros(x.shape)
        if not np.allclose(got, expected, atol=atol, rtol=rtol):
            worst = float(np.max(np.abs(got - expected)))
            raise AssertionError(f"gradcheck failed for input {i} (shape {x.shape}): largest "
                                 f"difference {worst:.3g}\nautograd:\n{got}\nnumerical:\n{expected}")
    return True
