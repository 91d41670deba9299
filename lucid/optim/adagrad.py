"""Adagrad: per-element learning rates from the sum of squared gradients."""

from __future__ import annotations

from ._checks import check_eps, check_lr, check_non_negative
from ._hyper import value
from .elementwise import ElementwiseRule, sqrt
from .optimizer import Optimizer


def adagrad_rule(param, grad, sum,
                 weight_decay, eps, clr,
                 *, maximize, has_weight_decay):
    """One Adagrad step on one element (PyTorch's for-loop formulation)."""
    if maximize:
        grad = -grad
    if has_weight_decay:
        grad = grad + weight_decay * param
    sum = sum + grad * grad
    param = param - clr * (grad / (sqrt(sum) + eps))
    return param, sum


class Adagrad(Optimizer):
    r"""Adagrad, as torch.optim.Adagrad (state exists from construction, as in PyTorch).

    .. math::
        \tilde\gamma_t = \frac{\gamma}{1 + (t - 1)\eta}, \qquad s_t = s_{t-1} + g_t^2, \qquad
        \theta_t = \theta_{t-1} - \tilde\gamma_t \frac{g_t}{\sqrt{s_t} + \epsilon}

    η is `lr_decay`; s starts at `initial_accumulator_value`. Paper: https://jmlr.org/papers/v12/duchi11a.html
    """

    rule = ElementwiseRule(adagrad_rule, state=("sum",))
    eager_state = True

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 *, maximize=False, fused=None):
        check_lr(lr)
        check_non_negative("lr_decay", lr_decay)
        check_non_negative("weight_decay", weight_decay)
        check_non_negative("initial_accumulator_value", initial_accumulator_value)
        check_eps(eps)
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize,
                        fused=fused)
        super().__init__(params, defaults)

    def state_init(self, group):
        return {"sum": group["initial_accumulator_value"]}

    def rule_flags(self, group):
        return dict(maximize=group["maximize"], has_weight_decay=group["weight_decay"] != 0)

    def step_coefficients(self, group, state):
        step = state.get("step", 0) + 1
        clr = value(group["lr"]) / (1 + (step - 1) * group["lr_decay"])
        return dict(weight_decay=group["weight_decay"], eps=group["eps"], clr=clr), {"step": step}
