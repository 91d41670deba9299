"""lucid.nn.utils: gradient clipping and flattening parameters to one vector and back (torch semantics)."""

from __future__ import annotations

import math

import numpy as np

from .. import _backend, ops
from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm",
           "parameters_to_vector", "vector_to_parameters"]


def _as_list(tensors) -> list:
    return [tensors] if isinstance(tensors, Tensor) else list(tensors)


def _grads(parameters) -> list:
    """The gradient arrays of the parameters that have one."""
    return [p.grad for p in _as_list(parameters) if p.grad is not None]


# elements a norm reads at a time: its temporaries stay small (in cache on the CPU; on the GPU a chunk
# is large enough that launching kernels per chunk costs little)
CPU_NORM_CHUNK = 1 << 16
GPU_NORM_CHUNK = 1 << 24


def _vector_norm(array, norm_type: float):
    """The p-norm of all elements of an array, as a 0-d array of its dtype on its device.

    The array is read chunk by chunk, so no temporary is larger than a chunk (a gradient is never
    copied whole, in its dtype or in float64); the partial sums accumulate in a float64 scalar and are
    rounded to the array's dtype once, at the end.
    """
    xp = _backend.array_module(array)
    flat, step = array.reshape(-1), CPU_NORM_CHUNK if xp is np else GPU_NORM_CHUNK
    chunks = [flat[start:start + step] for start in range(0, flat.size, step)]
    if not chunks:
        return xp.zeros((), dtype=array.dtype)
    if math.isinf(norm_type):
        pick = xp.max if norm_type > 0 else xp.min
        return pick(xp.stack([pick(xp.abs(chunk)) for chunk in chunks])).astype(array.dtype)
    total = xp.zeros((), dtype=np.float64)
    for chunk in chunks:
        if norm_type == 2.0:
            total += xp.vdot(chunk, chunk).real  # one BLAS call, no temporary
        elif norm_type == 1.0:
            total += xp.abs(chunk).sum(dtype=np.float64)
        elif norm_type == 0.0:
            total += xp.count_nonzero(chunk)
        else:
            total += (xp.abs(chunk) ** norm_type).sum(dtype=np.float64)
    if norm_type == 2.0:
        total = xp.sqrt(total)
    elif norm_type not in (0.0, 1.0):
        total = total ** (1.0 / norm_type)
    return total.astype(array.dtype)


def get_total_norm(tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach=None) -> Tensor:
    """The norm of the norms of `tensors` (Tensors or arrays): the norm of them all as one vector."""
    arrays = [t.data if isinstance(t, Tensor) else t for t in _as_list(tensors)]
    norm_type = float(norm_type)
    if not arrays:
        return Tensor(0.0)
    xp = _backend.array_module(arrays[0])
    norms = xp.stack([xp.asarray(_vector_norm(a, norm_type), dtype=a.dtype) for a in arrays])
    total = norms.max() if math.isinf(norm_type) else xp.linalg.norm(norms, ord=norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is "
                           "non-finite, so it cannot be clipped. To disable this error and scale the "
                           "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`")
    return Tensor(xp.asarray(total, dtype=norms.dtype))


def clip_grads_with_norm_(parameters, max_norm: float, total_norm, foreach=None) -> None:
    """Scale every gradient in place by min(1, max_norm / (total_norm + 1e-6))."""
    total = total_norm.data if isinstance(total_norm, Tensor) else total_norm
    xp = _backend.array_module(total)
    coef = xp.minimum(max_norm / (total + 1e-6), 1.0)
    for grad in _grads(parameters):
        grad *= _backend.to_device(xp.asarray(coef, dtype=grad.dtype), _backend.device_of(grad))


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach=None) -> Tensor:
    """Rescale gradients in place so that their total norm is at most `max_norm`.

    Args:
        parameters: a Tensor or an iterable of Tensors whose `.grad` is clipped.
        max_norm: the largest allowed total norm.
        norm_type: the p of the p-norm; `float("inf")` for the max norm.
        error_if_nonfinite: raise when the total norm is nan or inf instead of scaling by it.

    Returns:
        The total norm of the gradients before clipping, as a 0-d Tensor.
    """
    parameters = _as_list(parameters)
    total = get_total_norm(_grads(parameters), norm_type, error_if_nonfinite)
    clip_grads_with_norm_(parameters, max_norm, total)
    return total


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient in place into [-clip_value, clip_value]."""
    clip_value = float(clip_value)
    for grad in _grads(parameters):
        _backend.array_module(grad).clip(grad, -clip_value, clip_value, out=grad)


def parameters_to_vector(parameters) -> Tensor:
    """All parameters flattened and joined into one 1-D Tensor (differentiable, like torch's)."""
    parameters = _as_list(parameters)
    _check_same_device(parameters)
    if not parameters:
        raise ValueError("parameters_to_vector: expected at least one parameter")
    return ops.concatenate([ops.reshape(p, -1) for p in parameters])


def vector_to_parameters(vec, parameters) -> None:
    """Copy consecutive slices of the 1-D `vec` into each parameter's existing array, in place."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected torch.Tensor, but got: {type(vec).__name__}")
    parameters = _as_list(parameters)
    _check_same_device(parameters)
    total = sum(p.data.size for p in parameters)
    if vec.ndim != 1 or vec.shape[0] != total:
        raise ValueError(f"vector_to_parameters: expected a 1-D vector of {total} elements, got shape "
                         f"{vec.shape}")
    offset = 0
    for p in parameters:
        xp = _backend.array_module(p.data)
        part = _backend.to_device(vec.data[offset:offset + p.data.size], p.device)
        xp.copyto(p.data, part.reshape(p.data.shape), casting="unsafe")
        offset += p.data.size


def _check_same_device(parameters) -> None:
    if len({p.device for p in parameters}) > 1:
        raise TypeError("Found two parameters on different devices, this is currently not supported.")
