"""Adadelta: a learning-rate-free ratio of running RMS of updates to running RMS of gradients."""

from __future__ import annotations

from ._checks import check_eps, check_lr, check_non_negative
from ._hyper import value
from .elementwise import ElementwiseRule, sqrt
from .optimizer import Optimizer


def adadelta_rule(param, grad, square_avg, acc_delta,
                  lr, rho, rho_weight, weight_decay, eps,
                  *, maximize, has_weight_decay):
    """One Adadelta step on one element (PyTorch's for-loop formulation)."""
    if maximize:
        grad = -grad
    if has_weight_decay:
        grad = grad + weight_decay * param
    square_avg = square_avg * rho + rho_weight * grad * grad
    std = sqrt(square_avg + eps)
    delta = sqrt(acc_delta + eps) / std * grad
    acc_delta = acc_delta * rho + rho_weight * delta * delta
    param = param - lr * delta
    return param, square_avg, acc_delta


class Adadelta(Optimizer):
    r"""Adadelta, as torch.optim.Adadelta.

    .. math::
        v_t &= \rho v_{t-1} + (1 - \rho) g_t^2, \qquad
        \Delta_t = \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}} g_t \\
        u_t &= \rho u_{t-1} + (1 - \rho) \Delta_t^2, \qquad \theta_t = \theta_{t-1} - \gamma \Delta_t

    Paper: https://arxiv.org/abs/1212.5701
    """

    rule = ElementwiseRule(adadelta_rule, state=("square_avg", "acc_delta"))

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, maximize=False, fused=None):
        check_lr(lr)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        check_eps(eps)
        check_non_negative("weight_decay", weight_decay)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize, fused=fused)
        super().__init__(params, defaults)

    def state_init(self, group):
        return {"square_avg": 0.0, "acc_delta": 0.0}

    def rule_flags(self, group):
        return dict(maximize=group["maximize"], has_weight_decay=group["weight_decay"] != 0)

    def step_coefficients(self, group, state):
        rho = group["rho"]
        coefficients = dict(lr=value(group["lr"]), rho=rho, rho_weight=1 - rho, weight_decay=group["weight_decay"],
                            eps=group["eps"])
        return coefficients, {"step": state.get("step", 0) + 1}
