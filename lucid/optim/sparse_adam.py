"""SparseAdam: Adam that updates only the entries whose gradient is nonzero ("lazy" Adam)."""

from __future__ import annotations

import math

from ._checks import check_betas, check_eps, check_lr
from ._hyper import value
from .elementwise import ElementwiseRule, sqrt, where
from .optimizer import Optimizer


def sparse_adam_rule(param, grad, exp_avg, exp_avg_sq,
                     beta1_weight, beta2_weight, eps, step_size,
                     *, maximize):
    """One SparseAdam step on one element: entries with a zero gradient are left alone."""
    touched = grad != 0
    if maximize:
        grad = -grad
    avg_update = (grad - exp_avg) * beta1_weight
    sq_update = (grad * grad - exp_avg_sq) * beta2_weight
    numer = avg_update + exp_avg
    denom = sqrt(sq_update + exp_avg_sq) + eps
    exp_avg = where(touched, exp_avg + avg_update, exp_avg)
    exp_avg_sq = where(touched, exp_avg_sq + sq_update, exp_avg_sq)
    param = where(touched, param + -step_size * (numer / denom), param)
    return param, exp_avg, exp_avg_sq


class SparseAdam(Optimizer):
    r"""SparseAdam, as torch.optim.SparseAdam applied to the gradient made sparse.

    A gradient's zero entries count as absent: their moments and parameters do not change, while the
    step count (and so the bias correction) advances for the whole parameter, as in PyTorch.

    .. math::
        m_i &\leftarrow m_i + (1 - \beta_1)(g_i - m_i), \quad v_i \leftarrow v_i + (1 - \beta_2)(g_i^2 - v_i),
        \quad \theta_i \leftarrow \theta_i - \gamma \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
        \frac{m_i}{\sqrt{v_i} + \epsilon} \quad \text{for } g_i \ne 0
    """

    rule = ElementwiseRule(sparse_adam_rule, state=("exp_avg", "exp_avg_sq"))
    number_state = ("step",)  # PyTorch's SparseAdam counts steps in a Python int

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, maximize=False, *, fused=None):
        check_lr(lr, strict=True)
        check_eps(eps, strict=True)
        check_betas(betas)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, maximize=maximize, fused=fused)
        super().__init__(params, defaults)

    def state_init(self, group):
        return {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def rule_flags(self, group):
        return dict(maximize=group["maximize"])

    def step_coefficients(self, group, state):
        step = state.get("step", 0) + 1
        beta1, beta2 = (value(b) for b in group["betas"])
        step_size = value(group["lr"]) * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
        return dict(beta1_weight=1 - beta1, beta2_weight=1 - beta2, eps=group["eps"], step_size=step_size), \
            {"step": step}
