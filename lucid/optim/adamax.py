"""Adamax: Adam with the infinity norm of past gradients in place of the second moment."""

from __future__ import annotations

from ._checks import check_adam_family
from ._hyper import value
from .elementwise import ElementwiseRule, abs, lerp, maximum
from .optimizer import Optimizer


def adamax_rule(param, grad, exp_avg, exp_inf,
                beta1_weight, beta1, beta2, weight_decay, eps, clr,
                *, maximize, has_weight_decay):
    """One Adamax step on one element (PyTorch's for-loop formulation)."""
    if maximize:
        grad = -grad
    if has_weight_decay:
        grad = grad + weight_decay * param
    exp_avg = lerp(exp_avg, grad, beta1_weight, beta1)
    exp_inf = maximum(exp_inf * beta2, abs(grad) + eps)
    param = param - clr * (exp_avg / exp_inf)
    return param, exp_avg, exp_inf


class Adamax(Optimizer):
    r"""Adamax, as torch.optim.Adamax.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \frac{m_t}{u_t}

    Paper: https://arxiv.org/abs/1412.6980 (section 7)
    """

    rule = ElementwiseRule(adamax_rule, state=("exp_avg", "exp_inf"))

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, *,
                 maximize=False, fused=None):
        check_adam_family(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, maximize=maximize,
                        fused=fused)
        super().__init__(params, defaults)

    def state_init(self, group):
        return {"exp_avg": 0.0, "exp_inf": 0.0}

    def rule_flags(self, group):
        return dict(maximize=group["maximize"], has_weight_decay=group["weight_decay"] != 0)

    def step_coefficients(self, group, state):
        step = state.get("step", 0) + 1
        beta1, beta2 = (value(b) for b in group["betas"])
        clr = value(group["lr"]) / (1 - beta1 ** step)
        return dict(beta1_weight=1 - beta1, beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                    eps=group["eps"], clr=clr), {"step": step}
