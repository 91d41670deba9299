"""SGD: stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay."""

from __future__ import annotations

from ._checks import check_lr, check_non_negative
from ._hyper import value
from .elementwise import ElementwiseRule, where
from .optimizer import Optimizer


def sgd_rule(param, grad, momentum_buffer,
             lr, weight_decay, momentum, dampening_weight, first_step,
             *, maximize, has_weight_decay, has_momentum, nesterov):
    """One SGD step on one element (PyTorch's for-loop formulation)."""
    if maximize:
        grad = -grad
    if has_weight_decay:
        grad = grad + weight_decay * param
    if has_momentum:
        momentum_buffer = where(first_step > 0, grad, momentum_buffer * momentum + dampening_weight * grad)
        if nesterov:
            grad = grad + momentum * momentum_buffer
        else:
            grad = momentum_buffer
    param = param - lr * grad
    return param, momentum_buffer


class SGD(Optimizer):
    r"""Stochastic gradient descent (optionally with momentum), as torch.optim.SGD.

    .. math::
        g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
        b_t &= g_t \text{ at the first step, else } \mu b_{t-1} + (1 - \tau) g_t \\
        g_t &\leftarrow g_t + \mu b_t \text{ (Nesterov) or } b_t \text{ (momentum)} \\
        \theta_t &= \theta_{t-1} - \gamma g_t

    Example:
        >>> import lucid
        >>> w = lucid.nn.Parameter([1.0, -2.0])
        >>> opt = SGD([w], lr=0.1, momentum=0.9)
        >>> (w * w).sum().backward(); opt.step()
        >>> w.data.tolist()
        [0.800000011920929, -1.600000023841858]
    """

    rule = ElementwiseRule(sgd_rule, state=("momentum_buffer",))
    scalar_state = ()

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, fused=None):
        check_lr(lr)
        check_non_negative("momentum", momentum)
        check_non_negative("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, fused=fused)
        super().__init__(params, defaults)

    def state_init(self, group):
        return {"momentum_buffer": 0.0} if group["momentum"] != 0 else {}

    def rule_flags(self, group):
        return dict(maximize=group["maximize"], has_weight_decay=group["weight_decay"] != 0,
                    has_momentum=group["momentum"] != 0, nesterov=group["nesterov"])

    def step_coefficients(self, group, state):
        # the momentum buffer starts as the first gradient: which parameters have one decides the step
        return dict(lr=value(group["lr"]), weight_decay=group["weight_decay"], momentum=group["momentum"],
                    dampening_weight=1 - group["dampening"],
                    first_step=0.0 if "momentum_buffer" in state else 1.0), {}
