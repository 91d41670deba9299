"""Matrix products: matmul (with NumPy's 1-D and batch rules) and the fused affine map `linear`."""

from __future__ import annotations

from ._core import check_same_device, result, xp_of
from ..tensor import Tensor


def _matmul_shapes_check(x, y):
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError("matmul: both arguments need at least one dimension")
    inner_x = x.shape[-1]
    inner_y = y.shape[-2] if y.ndim > 1 else y.shape[0]
    if inner_x != inner_y:
        raise ValueError(f"matmul: shapes {tuple(x.shape)} and {tuple(y.shape)} cannot be multiplied "
                         f"({inner_x} != {inner_y})")


def matmul(a, b) -> Tensor:
    """a @ b with NumPy's rules (1-D operands are promoted and the added axis is dropped)."""
    check_same_device(a, b)
    x, y = a.data, b.data
    _matmul_shapes_check(x, y)
    out = x @ y

    def backward(g):
        x2 = x[None, :] if x.ndim == 1 else x
        y2 = y[:, None] if y.ndim == 1 else y
        g2 = g
        if x.ndim == 1:
            g2 = g2[..., None, :]
        if y.ndim == 1:
            g2 = g2[..., None]
        gx = gy = None
        if a.requires_grad:
            gx = g2 @ y2.swapaxes(-1, -2)
            gx = gx.reshape(gx.shape[:-2] + (gx.shape[-1],)) if x.ndim == 1 else gx
        if b.requires_grad:
            gy = x2.swapaxes(-1, -2) @ g2
            gy = gy.reshape(gy.shape[:-2] + (gy.shape[-2],)) if y.ndim == 1 else gy
        return gx, gy
    return result(out, (a, b), backward, "matmul")


def linear(input, weight, bias=None) -> Tensor:
    """input @ weight.T + bias in one op (PyTorch's F.linear): weight is (out_features, in_features)."""
    check_same_device(input, weight, *(() if bias is None else (bias,)))
    x, w = input.data, weight.data
    if x.shape[-1] != w.shape[-1]:
        raise ValueError(f"linear: input of shape {tuple(x.shape)} does not match weight of shape "
                         f"{tuple(w.shape)} (in_features {w.shape[-1]})")
    out = x @ w.T
    if bias is not None:
        out += bias.data
    xp = xp_of(input)

    def backward(g):
        gx = g @ w if input.requires_grad else None
        gw = gb = None
        if weight.requires_grad:
            g2 = g.reshape(-1, g.shape[-1])
            gw = g2.T @ x.reshape(-1, x.shape[-1])
        if bias is not None and bias.requires_grad:
            gb = xp.asarray(g.reshape(-1, g.shape[-1]).sum(axis=0))
        return gx, gw, gb
    return result(out, (input, weight, bias), backward, "linear")
