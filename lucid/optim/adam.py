"""Adam and AdamW: adaptive moment estimation, with AMSGrad and L2 or decoupled weight decay."""

from __future__ import annotations

from ._checks import check_adam_family, check_betas_kind
from ._hyper import value
from .elementwise import ElementwiseRule, lerp, maximum, sqrt
from .optimizer import Optimizer


def adam_rule(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq,
              beta1_weight, beta1, beta2, beta2_weight, weight_decay, param_decay, step_size,
              bias_correction2_sqrt, eps,
              *, maximize, amsgrad, has_weight_decay, decoupled_weight_decay):
    """One Adam step on one element (PyTorch's for-loop formulation)."""
    if maximize:
        grad = -grad
    if has_weight_decay:
        if decoupled_weight_decay:
            param = param * param_decay
        else:
            grad = grad + weight_decay * param
    exp_avg = lerp(exp_avg, grad, beta1_weight, beta1)
    exp_avg_sq = exp_avg_sq * beta2 + beta2_weight * grad * grad
    if amsgrad:
        max_exp_avg_sq = maximum(max_exp_avg_sq, exp_avg_sq)
        denom = sqrt(max_exp_avg_sq) / bias_correction2_sqrt + eps
    else:
        denom = sqrt(exp_avg_sq) / bias_correction2_sqrt + eps
    param = param - step_size * (exp_avg / denom)
    return param, exp_avg, exp_avg_sq, max_exp_avg_sq


class Adam(Optimizer):
    r"""Adam, as torch.optim.Adam (AMSGrad, maximize, L2 or decoupled weight decay).

    .. math::
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \text{ (AMSGrad) or } v_t \\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \,
                    \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    with g_t += λθ (L2) or θ *= 1 - γλ first (decoupled). Paper: https://arxiv.org/abs/1412.6980

    Example:
        >>> import lucid
        >>> w = lucid.nn.Parameter([1.0, -2.0])
        >>> opt = Adam([w], lr=0.1)
        >>> (w * w).sum().backward(); opt.step()
        >>> [round(x, 4) for x in w.data.tolist()]
        [0.9, -1.9]
    """

    rule = ElementwiseRule(adam_rule, state=("exp_avg", "exp_avg_sq", "max_exp_avg_sq"))

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, fused=None, decoupled_weight_decay=False):
        check_adam_family(lr, betas, eps, weight_decay)
        check_betas_kind(betas)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, fused=fused, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def state_init(self, group):
        names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if group["amsgrad"] else ("exp_avg", "exp_avg_sq")
        return dict.fromkeys(names, 0.0)

    def rule_flags(self, group):
        return dict(maximize=group["maximize"], amsgrad=group["amsgrad"],
                    has_weight_decay=group["weight_decay"] != 0,
                    decoupled_weight_decay=group["decoupled_weight_decay"])

    def step_coefficients(self, group, state):
        step = state.get("step", 0) + 1
        beta1, beta2 = (value(b) for b in group["betas"])  # tensors: corrections in their dtype, as torch
        lr, weight_decay = value(group["lr"]), group["weight_decay"]
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        coefficients = dict(beta1_weight=1 - beta1, beta1=beta1, beta2=beta2, beta2_weight=1 - beta2,
                            weight_decay=weight_decay, param_decay=1 - lr * weight_decay,
                            step_size=lr / bias_correction1, bias_correction2_sqrt=bias_correction2 ** 0.5,
                            eps=group["eps"])
        return coefficients, {"step": step}


class AdamW(Adam):
    r"""Adam with decoupled weight decay (θ *= 1 - γλ before the Adam update), as torch.optim.AdamW.

    Paper: https://arxiv.org/abs/1711.05101
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, fused=fused,
                         decoupled_weight_decay=True)
