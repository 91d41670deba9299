"""Muon: momentum whose update is orthogonalized by a Newton-Schulz iteration, for 2-D parameters."""

from __future__ import annotations

import math

from .. import _backend
from ._hyper import check_one_element, value
from ._plain import closure_loss, lerp, lerp_, norm, with_gradients
from .optimizer import Optimizer

EPS = 1e-7
DEFAULT_A, DEFAULT_B, DEFAULT_C = 3.4445, -4.7750, 2.0315
DEFAULT_NS_STEPS = 5
_ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


def zeropower_via_newtonschulz(grad, ns_coefficients, ns_steps: int, eps: float):
    r"""Approximately orthogonalize a matrix (U S' V^T with S' near 1) by a quintic Newton-Schulz iteration.

    .. math:: X_0 = G / \max(\|G\|_F, \epsilon), \quad A = X X^T, \quad
        X \leftarrow a X + (b A + c A^2) X

    on the wide orientation of G (transposed when it has more rows than columns). PyTorch iterates in
    bfloat16; NumPy has no bfloat16, so this iterates in the gradient's own dtype (float32 or float64),
    which is at least as accurate; the results agree with PyTorch's to bfloat16's precision (~1e-2).
    """
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if grad.ndim != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    xp = _backend.array_module(grad)
    dtype = grad.dtype.type
    a, b, c = (dtype(k) for k in ns_coefficients)
    tall = grad.shape[0] > grad.shape[1]
    x = grad.T.copy() if tall else grad.copy()
    x /= xp.maximum(norm(x), dtype(eps))
    for _ in range(ns_steps):
        gram = x @ x.T
        update = b * gram + c * (gram @ gram)
        x = a * x + update @ x
    return x.T if tall else x


def adjust_lr(lr, adjust_lr_fn, shape):
    """Muon's learning-rate scale for a matrix of `shape` (A, B): sqrt(max(1, A/B)), or 0.2 sqrt(max(A, B))."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        ratio = math.sqrt(max(1, rows / cols))
    elif adjust_lr_fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(rows, cols))
    else:
        ratio = 1.0
    return lr * ratio


class Muon(Optimizer):
    r"""Muon, as torch.optim.Muon: SGD-momentum whose update is orthogonalized, for 2-D parameters.

    .. math::
        B_t &= \mu B_{t-1} + (1 - \mu) g_t, \qquad
        U_t = \mathrm{NS}^{(a,b,c)}_k(g_t + \mu (B_t - g_t) \text{ (Nesterov) or } B_t; \varepsilon) \\
        \theta_t &= (1 - \gamma\lambda)\theta_{t-1} - \mathrm{AdjustLR}(\gamma; \text{shape}) \, U_t

    with NS the Newton-Schulz iteration of `zeropower_via_newtonschulz` (in the parameter's dtype here;
    PyTorch's runs in bfloat16) and AdjustLR sqrt(max(1, A/B)) ("original", the default) or
    0.2 sqrt(max(A, B)) ("match_rms_adamw"). State: `momentum_buffer`. A parameter without a gradient
    is skipped. Not elementwise (the iteration mixes the whole matrix), so it has a plain step; it runs
    on NumPy or CuPy arrays alike. Use it for hidden-layer matrices and AdamW for the rest.

    Paper / post: https://kellerjordan.github.io/posts/muon/, https://arxiv.org/abs/2502.16982
    """

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=(DEFAULT_A, DEFAULT_B, DEFAULT_C), eps=EPS, ns_steps=DEFAULT_NS_STEPS,
                 adjust_lr_fn=None):
        check_one_element(lr)
        if not 0.0 <= value(lr):
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn not in _ADJUST_LR_FNS:
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon only supports 2D parameters whereas we found a parameter with "
                                     f"size: {tuple(p.shape)}")

    def step(self, closure=None):
        """One Muon step over the parameters that have a gradient; returns the closure's loss."""
        loss = closure_loss(closure)
        for group in self.param_groups:
            lr, momentum = value(group["lr"]), group["momentum"]
            for p in with_gradients(group, "Muon"):
                grad = p.grad
                if grad.ndim != 2:
                    raise ValueError("Param gradient must be a 2D matrix")
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = _backend.array_module(grad).zeros_like(grad)
                buf = state["momentum_buffer"]
                lerp_(buf, grad, 1 - momentum)
                update = lerp(grad, buf, momentum) if group["nesterov"] else buf
                update = zeropower_via_newtonschulz(update, group["ns_coefficients"], group["ns_steps"],
                                                    group["eps"])
                dtype = p.data.dtype.type
                p.data *= dtype(1 - lr * group["weight_decay"])
                p.data += dtype(-adjust_lr(lr, group["adjust_lr_fn"], p.shape)) * update
        return loss
