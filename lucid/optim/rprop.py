"""Rprop: resilient backpropagation, per-element step sizes adapted from the sign of the gradient."""

from __future__ import annotations

from ._checks import check_lr
from ._hyper import value
from .elementwise import ElementwiseRule, maximum, minimum, sign, where
from .optimizer import Optimizer


def rprop_rule(param, grad, prev, step_size,
               etaminus, etaplus, step_size_min, step_size_max,
               *, maximize):
    """One Rprop step on one element (PyTorch's for-loop formulation)."""
    if maximize:
        grad = -grad
    agreement = sign(grad * prev)
    factor = where(agreement > 0, etaplus, where(agreement < 0, etaminus, where(agreement == 0, 1, agreement)))
    step_size = minimum(maximum(step_size * factor, step_size_min), step_size_max)
    grad = where(factor == etaminus, 0, grad)
    param = param - sign(grad) * step_size
    prev = grad
    return param, prev, step_size


class Rprop(Optimizer):
    r"""Rprop, as torch.optim.Rprop.

    .. math::
        \eta_t &= \min(\max(\eta_{t-1} \cdot
            \begin{cases}\eta_+ & g_t g_{t-1} > 0 \\ \eta_- & g_t g_{t-1} < 0 \\ 1 & \text{else}\end{cases},
            \Gamma_{min}), \Gamma_{max}) \\
        g_t &\leftarrow 0 \text{ where the sign flipped}, \qquad
        \theta_t = \theta_{t-1} - \eta_t \operatorname{sign}(g_t)

    Paper: https://doi.org/10.1109/ICNN.1993.298623
    """

    rule = ElementwiseRule(rprop_rule, state=("prev", "step_size"))

    def __init__(self, params, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *, maximize=False, fused=None):
        check_lr(lr)
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        defaults = dict(lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes), maximize=maximize, fused=fused)
        super().__init__(params, defaults)

    def state_init(self, group):
        return {"prev": 0.0, "step_size": value(group["lr"])}

    def rule_flags(self, group):
        return dict(maximize=group["maximize"])

    def step_coefficients(self, group, state):
        (etaminus, etaplus), (step_size_min, step_size_max) = group["etas"], group["step_sizes"]
        coefficients = dict(etaminus=etaminus, etaplus=etaplus, step_size_min=step_size_min,
                            step_size_max=step_size_max)
        return coefficients, {"step": state.get("step", 0) + 1}
