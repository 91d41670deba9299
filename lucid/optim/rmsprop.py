"""RMSprop: divide by a running root mean square of gradients; optional momentum and centering."""

from __future__ import annotations

from ._checks import check_eps, check_lr, check_non_negative
from ._hyper import value
from .elementwise import ElementwiseRule, lerp, sqrt
from .optimizer import Optimizer


def rmsprop_rule(param, grad, square_avg, grad_avg, momentum_buffer,
                 lr, alpha, alpha_weight, weight_decay, eps, momentum,
                 *, maximize, has_weight_decay, centered, has_momentum):
    """One RMSprop step on one element (PyTorch's for-loop formulation)."""
    if maximize:
        grad = -grad
    if has_weight_decay:
        grad = grad + weight_decay * param
    square_avg = square_avg * alpha + alpha_weight * grad * grad
    if centered:
        grad_avg = lerp(grad_avg, grad, alpha_weight, alpha)
        avg = sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = sqrt(square_avg) + eps
    if has_momentum:
        momentum_buffer = momentum_buffer * momentum + grad / avg
        param = param - lr * momentum_buffer
    else:
        param = param - lr * (grad / avg)
    return param, square_avg, grad_avg, momentum_buffer


class RMSprop(Optimizer):
    r"""RMSprop, as torch.optim.RMSprop.

    .. math::
        v_t &= \alpha v_{t-1} + (1 - \alpha) g_t^2, \qquad
        \bar g_t = \alpha \bar g_{t-1} + (1 - \alpha) g_t \text{ (centered)} \\
        d_t &= \sqrt{v_t - \bar g_t^2} + \epsilon \text{ (centered) or } \sqrt{v_t} + \epsilon \\
        b_t &= \mu b_{t-1} + g_t / d_t, \quad \theta_t = \theta_{t-1} - \gamma b_t
            \text{ (momentum) or } \theta_t = \theta_{t-1} - \gamma g_t / d_t

    Lecture notes: https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf
    """

    rule = ElementwiseRule(rmsprop_rule, state=("square_avg", "grad_avg", "momentum_buffer"))

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
                 maximize=False, fused=None):
        check_lr(lr)
        check_eps(eps)
        check_non_negative("momentum", momentum)
        check_non_negative("weight_decay", weight_decay)
        check_non_negative("alpha", alpha)
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize, fused=fused)
        super().__init__(params, defaults)

    def state_init(self, group):
        state = {"square_avg": 0.0}
        if group["momentum"] > 0:
            state["momentum_buffer"] = 0.0
        if group["centered"]:
            state["grad_avg"] = 0.0
        return state

    def rule_flags(self, group):
        return dict(maximize=group["maximize"], has_weight_decay=group["weight_decay"] != 0,
                    centered=group["centered"], has_momentum=group["momentum"] > 0)

    def step_coefficients(self, group, state):
        alpha = group["alpha"]
        coefficients = dict(lr=value(group["lr"]), alpha=alpha, alpha_weight=1 - alpha,
                            weight_decay=group["weight_decay"], eps=group["eps"], momentum=group["momentum"])
        return coefficients, {"step": state.get("step", 0) + 1}
