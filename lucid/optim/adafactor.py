"""Adafactor: factored second moments (a row and a column factor per matrix) and a relative step size."""

from __future__ import annotations

import numpy as np

from .. import _backend
from ._hyper import check_one_element, value
from ._plain import closure_loss, lerp_, norm, with_gradients
from .optimizer import Optimizer, scalar_dtype


class Adafactor(Optimizer):
    r"""Adafactor, as torch.optim.Adafactor (PyTorch 2.13's variant: lr caps the relative step and scales
    the decoupled weight decay; eps1 guards the variance estimate and the update).

    .. math::
        \hat\beta_{2,t} &= 1 - t^{\tau}, \quad \rho_t = \min(\gamma, 1/\sqrt t), \quad
        \alpha_t = \max(\epsilon_2, \mathrm{RMS}(\theta_{t-1})) \rho_t, \quad
        \theta \leftarrow (1 - \gamma\lambda) \theta \\
        R_t &= \hat\beta_{2,t} R_{t-1} + (1 - \hat\beta_{2,t}) \,\mathrm{mean}_{cols}(G_t^2), \quad
        C_t = \hat\beta_{2,t} C_{t-1} + (1 - \hat\beta_{2,t}) \,\mathrm{mean}_{rows}(G_t^2) \\
        \hat V_t &= R_t C_t / \max(\mathrm{mean}(R_t), \epsilon_1) \text{ (2-D and higher: the last two
            dimensions are factored), or } \hat V_t = \hat\beta_{2,t} \hat V_{t-1} + (1 - \hat\beta_{2,t}) G_t^2 \\
        U_t &= G_t / \max(\sqrt{\hat V_t}, \epsilon_1), \quad
        \theta_t = \theta_{t-1} - \alpha_t \, U_t / \max(1, \mathrm{RMS}(U_t) / d)

    with τ = `beta2_decay`, λ = `weight_decay`, and ε1 the machine epsilon of the parameter's dtype
    when `eps[0]` is None. State (torch's names and shapes): `step`, and `row_var` (last dim 1) and
    `col_var` (second-to-last dim 1) for a parameter of 2 or more dimensions, else `variance`.
    A parameter without a gradient is skipped. Not elementwise (the update mixes a whole parameter
    through its factors and norms), so it has a plain step; it runs on NumPy or CuPy arrays alike.

    Paper: https://arxiv.org/abs/1804.04235
    """

    def __init__(self, params, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, *,
                 maximize=False):
        check_one_element(lr)
        if not 0.0 <= value(lr):
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 >= beta2_decay:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and not 0.0 <= eps[0]:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not 0.0 <= eps[1]:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not 1.0 <= d:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        defaults = dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay,
                        maximize=maximize)
        super().__init__(params, defaults)

    def _init_state(self, p, state) -> None:
        xp = _backend.array_module(p.data)
        state["step"] = np.array(0.0, dtype=scalar_dtype())
        if p.grad.ndim > 1:
            state["row_var"] = xp.zeros(p.grad.shape[:-1] + (1,), dtype=p.grad.dtype)
            state["col_var"] = xp.zeros(p.grad.shape[:-2] + (1,) + p.grad.shape[-1:], dtype=p.grad.dtype)
        else:
            state["variance"] = xp.zeros_like(p.grad)

    def step(self, closure=None):
        """One Adafactor step over the parameters that have a gradient; returns the closure's loss."""
        loss = closure_loss(closure)
        for group in self.param_groups:
            eps1, eps2 = group["eps"]
            for p in with_gradients(group, "Adafactor"):
                state = self.state[p]
                if not state:
                    self._init_state(p, state)
                if eps1 is None:  # as in torch: the first parameter's dtype decides for the group
                    eps1 = float(np.finfo(p.dtype).eps)
                self._update(p, state, group, eps1, eps2)
        return loss

    @staticmethod
    def _advance_step(state) -> float:
        """Advance the parameter's step (a 0-d array, or a number from an older state dict) and return it."""
        step = state["step"]
        if not isinstance(step, np.ndarray):
            step = state["step"] = np.array(float(step), dtype=scalar_dtype())
        step += 1
        return float(step)

    def _update(self, p, state, group, eps1, eps2) -> None:
        xp = _backend.array_module(p.data)
        param, grad = p.data, -p.grad if group["maximize"] else p.grad
        dtype = param.dtype.type
        lr, weight_decay = value(group["lr"]), group["weight_decay"]
        step = self._advance_step(state)
        one_minus_beta2 = step ** group["beta2_decay"]
        rho = min(lr, 1 / (step ** 0.5))
        alpha = max(eps2, float(norm(param)) / (param.size ** 0.5)) * rho
        if weight_decay != 0:
            param *= dtype(1 - lr * weight_decay)
        squared = grad * grad
        if grad.ndim > 1:  # torch squares norms: mean(g^2) along an axis, rounded as norm(g)^2 / n
            row_var, col_var = state["row_var"], state["col_var"]
            lerp_(row_var, xp.sqrt(squared.sum(axis=-1, keepdims=True)) ** 2 / grad.shape[-1], one_minus_beta2)
            lerp_(col_var, xp.sqrt(squared.sum(axis=-2, keepdims=True)) ** 2 / grad.shape[-2], one_minus_beta2)
            update = row_var * col_var  # the outer product torch's row_var @ col_var computes
            update /= xp.maximum(row_var.mean(axis=-2, keepdims=True), dtype(eps1))
        else:
            variance = state["variance"]
            lerp_(variance, squared, one_minus_beta2)
            update = variance.copy()
        xp.maximum(update, dtype(eps1 * eps1), out=update)
        xp.sqrt(update, out=update)
        xp.divide(dtype(1), update, out=update)  # torch: rsqrt, then times the gradient
        update *= grad
        denom = max(1.0, float(norm(update)) / ((update.size ** 0.5) * group["d"]))
        update *= dtype(-alpha / denom)
        param += update
