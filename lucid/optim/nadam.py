"""NAdam: Adam with Nesterov momentum and a momentum-decay schedule."""

from __future__ import annotations

from ._checks import check_adam_family, check_non_negative
from ._hyper import value
from .elementwise import ElementwiseRule, lerp, sqrt
from .optimizer import Optimizer, scalar_dtype


def nadam_rule(param, grad, exp_avg, exp_avg_sq,
               beta1_weight, beta1, beta2, beta2_weight, weight_decay, param_decay, bias_correction2, eps,
               grad_coefficient, exp_avg_coefficient,
               *, maximize, has_weight_decay, decoupled_weight_decay):
    """One NAdam step on one element (PyTorch's for-loop formulation)."""
    if maximize:
        grad = -grad
    if has_weight_decay:
        if decoupled_weight_decay:
            param = param * param_decay
        else:
            grad = grad + weight_decay * param
    exp_avg = lerp(exp_avg, grad, beta1_weight, beta1)
    exp_avg_sq = exp_avg_sq * beta2 + beta2_weight * grad * grad
    denom = sqrt(exp_avg_sq / bias_correction2) + eps
    param = param + grad_coefficient * (grad / denom)
    param = param + exp_avg_coefficient * (exp_avg / denom)
    return param, exp_avg, exp_avg_sq


class NAdam(Optimizer):
    r"""NAdam, as torch.optim.NAdam.

    .. math::
        \mu_t &= \beta_1 (1 - \tfrac12 \, 0.96^{t \psi}), \qquad \Pi_t = \prod_{i \le t} \mu_i \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1} - \gamma \Big(\frac{(1 - \mu_t) g_t}{1 - \Pi_t}
                    + \frac{\mu_{t+1} m_t}{1 - \Pi_t \mu_{t+1}}\Big) \Big/ \big(\sqrt{v_t / (1 - \beta_2^t)} + \epsilon\big)

    ψ is `momentum_decay`. Paper: https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ
    """

    rule = ElementwiseRule(nadam_rule, state=("exp_avg", "exp_avg_sq"))
    scalar_state = ("step", "mu_product")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, maximize=False, fused=None):
        check_adam_family(lr, betas, eps, weight_decay)
        check_non_negative("momentum_decay", momentum_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                        maximize=maximize, fused=fused)
        super().__init__(params, defaults)

    def state_init(self, group):
        return {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def rule_flags(self, group):
        return dict(maximize=group["maximize"], has_weight_decay=group["weight_decay"] != 0,
                    decoupled_weight_decay=group["decoupled_weight_decay"])

    def step_coefficients(self, group, state):
        step = state.get("step", 0) + 1
        beta1, beta2 = (value(b) for b in group["betas"])
        lr, weight_decay, psi = value(group["lr"]), group["weight_decay"], group["momentum_decay"]
        mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * psi)))
        mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * psi)))
        # PyTorch keeps mu_product as a scalar tensor: `mu_product *= mu` multiplies in its dtype
        rounded = scalar_dtype().type
        mu_product = float(rounded(state.get("mu_product", 1.0)) * rounded(mu))
        coefficients = dict(beta1_weight=1 - beta1, beta1=beta1, beta2=beta2, beta2_weight=1 - beta2,
                            weight_decay=weight_decay, param_decay=1 - lr * weight_decay,
                            bias_correction2=1 - beta2 ** step, eps=group["eps"],
                            grad_coefficient=-lr * (1.0 - mu) / (1.0 - mu_product),
                            exp_avg_coefficient=(-lr * mu_next) / (1.0 - mu_product * mu_next))
        return coefficients, {"step": step, "mu_product": mu_product}
