"""ASGD: averaged stochastic gradient descent (Polyak-Ruppert averaging with a decaying step)."""

from __future__ import annotations

from ._checks import check_lr, check_non_negative
from ._hyper import value
from .elementwise import ElementwiseRule, where
from .optimizer import Optimizer, scalar_dtype


def asgd_rule(param, grad, ax,
              weight_decay, param_decay, eta, mu, copy_average,
              *, maximize, has_weight_decay):
    """One ASGD step on one element (PyTorch's for-loop formulation)."""
    if maximize:
        grad = -grad
    if has_weight_decay:
        grad = grad + weight_decay * param
    param = param * param_decay
    param = param - eta * grad
    ax = where(copy_average > 0, param, ax + (param - ax) * mu)
    return param, ax


class ASGD(Optimizer):
    r"""Averaged SGD, as torch.optim.ASGD, plus lucid's `get_averages()`.

    .. math::
        \theta_t &= (1 - \lambda \eta_{t-1}) \theta_{t-1} - \eta_{t-1} g_t, \qquad
        \bar\theta_t = \bar\theta_{t-1} + \mu_{t-1} (\theta_t - \bar\theta_{t-1}) \\
        \eta_t &= \gamma / (1 + \lambda \gamma t)^\alpha, \qquad \mu_t = 1 / \max(1, t - t_0)

    Paper: https://doi.org/10.1137/0330046
    """

    rule = ElementwiseRule(asgd_rule, state=("ax",))
    scalar_state = ("step", "eta", "mu")

    def __init__(self, params, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0, *, maximize=False,
                 fused=None):
        check_lr(lr)
        check_non_negative("weight_decay", weight_decay)
        defaults = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, maximize=maximize,
                        fused=fused)
        super().__init__(params, defaults)

    def state_init(self, group):
        return {"ax": 0.0}

    def rule_flags(self, group):
        return dict(maximize=group["maximize"], has_weight_decay=group["weight_decay"] != 0)

    def step_coefficients(self, group, state):
        lr, lambd = value(group["lr"]), group["lambd"]
        rounded = scalar_dtype().type  # PyTorch keeps eta and mu as scalar tensors
        step = state.get("step", 0) + 1
        eta = state.get("eta", float(rounded(lr)))
        mu = state.get("mu", 1.0)
        coefficients = dict(weight_decay=group["weight_decay"], param_decay=1 - lambd * eta, eta=eta, mu=mu,
                            copy_average=1.0 if mu == 1 else 0.0)
        after = {"step": step,
                 "eta": float(rounded(lr / ((1 + lambd * lr * step) ** group["alpha"]))),
                 "mu": float(rounded(1 / max(1, step - group["t0"])))}
        return coefficients, after

    def get_averages(self) -> list:
        """The running average of each parameter (its `ax` state), or its value before any step."""
        averages = []
        for group in self.param_groups:
            for p in group["params"]:
                ax = self.state.get(p, {}).get("ax")
                averages.append((ax if ax is not None else p.data).copy())
        return averages
