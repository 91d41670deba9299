"""Hyperparameter validation with PyTorch's ValueError messages, shared by the optimizers.

`lr` and `betas` may be one-element tensors (see `_hyper`); their values are compared.
"""

from __future__ import annotations

from ._hyper import check_one_element, is_tensor, value


def check_lr(lr, strict: bool = False) -> None:
    check_one_element(lr, "lr")
    v = value(lr)
    if (v <= 0.0) if strict else not 0.0 <= v:
        raise ValueError(f"Invalid learning rate: {lr}")


def check_eps(eps, strict: bool = False) -> None:
    if (eps <= 0.0) if strict else not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")


def check_betas(betas) -> None:
    if not 0.0 <= value(betas[0]) < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= value(betas[1]) < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")


def check_betas_kind(betas) -> None:
    """Adam's rule: both betas floats or both one-element tensors."""
    if not ((isinstance(betas[0], float) and isinstance(betas[1], float))
            or (is_tensor(betas[0]) and is_tensor(betas[1]))):
        raise ValueError("betas must be either both floats or both Tensors")
    for k in (0, 1):
        check_one_element(betas[k], f"betas[{k}]")


def check_non_negative(name: str, value) -> None:
    """PyTorch's "Invalid <name> value: <value>" for a hyperparameter that must be >= 0."""
    if not 0.0 <= value:
        raise ValueError(f"Invalid {name} value: {value}")


def check_adam_family(lr, betas, eps, weight_decay) -> None:
    """The checks Adam, AdamW, Adamax, NAdam and RAdam share, in PyTorch's order."""
    check_lr(lr)
    check_eps(eps)
    check_betas(betas)
    check_non_negative("weight_decay", weight_decay)
