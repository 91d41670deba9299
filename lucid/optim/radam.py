"""RAdam: Adam with the variance of the adaptive learning rate rectified."""

from __future__ import annotations

from ._checks import check_adam_family
from ._hyper import value
from .elementwise import ElementwiseRule, lerp, sqrt, where
from .optimizer import Optimizer


def radam_rule(param, grad, exp_avg, exp_avg_sq,
               beta1_weight, beta1, beta2, beta2_weight, weight_decay, param_decay, bias_correction1, lr,
               bias_correction2_sqrt, eps, rect, rectified,
               *, maximize, has_weight_decay, decoupled_weight_decay):
    """One RAdam step on one element (PyTorch's for-loop formulation)."""
    if maximize:
        grad = -grad
    if has_weight_decay:
        if decoupled_weight_decay:
            param = param * param_decay
        else:
            grad = grad + weight_decay * param
    exp_avg = lerp(exp_avg, grad, beta1_weight, beta1)
    exp_avg_sq = exp_avg_sq * beta2 + beta2_weight * grad * grad
    corrected = exp_avg / bias_correction1
    adaptive = bias_correction2_sqrt / (sqrt(exp_avg_sq) + eps)
    param = where(rectified > 0, param - corrected * lr * adaptive * rect, param - corrected * lr)
    return param, exp_avg, exp_avg_sq


class RAdam(Optimizer):
    r"""RAdam, as torch.optim.RAdam.

    .. math::
        \rho_\infty &= \tfrac{2}{1 - \beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t} \\
        \theta_t &= \theta_{t-1} - \gamma \frac{m_t}{1 - \beta_1^t} \cdot
            \begin{cases} r_t \frac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon} & \rho_t > 5 \\ 1 & \text{else}\end{cases},
        \quad r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}}

    Paper: https://arxiv.org/abs/1908.03265
    """

    rule = ElementwiseRule(radam_rule, state=("exp_avg", "exp_avg_sq"))

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, maximize=False, fused=None):
        check_adam_family(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, fused=fused)
        super().__init__(params, defaults)

    def state_init(self, group):
        return {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def rule_flags(self, group):
        return dict(maximize=group["maximize"], has_weight_decay=group["weight_decay"] != 0,
                    decoupled_weight_decay=group["decoupled_weight_decay"])

    def step_coefficients(self, group, state):
        step = state.get("step", 0) + 1
        beta1, beta2 = (value(b) for b in group["betas"])
        lr, weight_decay = value(group["lr"]), group["weight_decay"]
        bias_correction2 = 1 - beta2 ** step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
        rectified = rho_t > 5.0
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5 \
            if rectified else 0.0
        coefficients = dict(beta1_weight=1 - beta1, beta1=beta1, beta2=beta2, beta2_weight=1 - beta2,
                            weight_decay=weight_decay, param_decay=1 - lr * weight_decay,
                            bias_correction1=1 - beta1 ** step, lr=lr, bias_correction2_sqrt=bias_correction2 ** 0.5,
                            eps=group["eps"], rect=rect, rectified=1.0 if rectified else 0.0)
        return coefficients, {"step": step}
