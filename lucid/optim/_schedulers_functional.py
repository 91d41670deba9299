"""Schedules given by a function of the epoch: LambdaLR and MultiplicativeLR (user functions), NoamScheduler."""

from __future__ import annotations

from ._schedulers_base import (LRScheduler, callable_state, check_optimizer, group_values,
                               restore_callable_state)


class _UserFunctionLR(LRScheduler):
    """A schedule driven by one user function per group; saves only what torch saves of them."""

    _custom_state = ("lr_lambdas",)
    _require_callable = False  # MultiplicativeLR checks its lambdas up front; LambdaLR fails when calling one

    def __init__(self, optimizer, lr_lambda, last_epoch: int) -> None:
        check_optimizer(optimizer)
        count = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != count:
                raise ValueError(f"Expected {count} lr_lambdas, but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * count
        for fn in self.lr_lambdas if self._require_callable else ():
            if not callable(fn):
                raise TypeError(f"lr_lambda should be a function, but got {type(fn).__name__}")
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict:
        """The state, with each lambda's attributes if it is a callable object (plain functions: None)."""
        state = super().state_dict()
        state["lr_lambdas"] = [callable_state(fn) for fn in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state; saved lambda attributes go onto this scheduler's own lambdas."""
        super().load_state_dict(state_dict)
        for fn, saved in zip(self.lr_lambdas, state_dict["lr_lambdas"], strict=True):
            restore_callable_state(fn, saved)


class LambdaLR(_UserFunctionLR):
    r"""Set each group's learning rate to its base value times a function of the epoch.

    .. math:: \eta_e = \eta_{base} \cdot \lambda(e)

    Args:
        optimizer: the optimizer.
        lr_lambda: a function of the epoch, or a list of them, one per parameter group.
        last_epoch: index of the last epoch; -1 starts the schedule.

    Raises:
        ValueError: when a list of functions does not have one per group.
    """

    def __init__(self, optimizer, lr_lambda, last_epoch: int = -1) -> None:
        super().__init__(optimizer, lr_lambda, last_epoch)

    def _compute_lr(self) -> list:
        return [base_lr * fn(self.last_epoch) for fn, base_lr in zip(self.lr_lambdas, self.base_lrs, strict=True)]


class MultiplicativeLR(_UserFunctionLR):
    r"""Multiply each group's current learning rate by a function of the epoch, every epoch after the first.

    .. math:: \eta_e = \eta_{e-1} \cdot \lambda(e), \quad \eta_0 = \eta_{base}

    Args:
        optimizer: the optimizer.
        lr_lambda: a function of the epoch, or a list of them, one per parameter group.
        last_epoch: index of the last epoch; -1 starts the schedule.

    Raises:
        ValueError: when a list of functions does not have one per group.
        TypeError: when a lambda is not callable.
    """

    _require_callable = True

    def __init__(self, optimizer, lr_lambda, last_epoch: int = -1) -> None:
        super().__init__(optimizer, lr_lambda, last_epoch)

    def _compute_lr(self) -> list:
        lrs = group_values(self.optimizer, "lr")
        if self._is_initial:  # the base lr stands at epoch 0 (and a resumed lr stays as loaded)
            return lrs
        return [lr * fn(self.last_epoch) for fn, lr in zip(self.lr_lambdas, lrs, strict=True)]


class NoamScheduler(LRScheduler):
    r"""The Transformer's warm-up then inverse-square-root schedule (Vaswani et al., 2017); not in torch.

    .. math:: \eta_e = \text{factor} \cdot d^{-1/2} \cdot \min(s^{-1/2},\ s \cdot w^{-3/2}),
        \quad s = \max(e, 1),\ d = \text{model\_size},\ w = \text{warmup\_steps}

    The learning rate is absolute: the groups' own (base) learning rates are not used.

    Args:
        optimizer: the optimizer.
        model_size: the model width d (also accepted as `d_model=`).
        warmup_steps: number of steps of the linear warm-up.
        factor: overall scale.
        last_epoch: index of the last step; -1 starts the schedule.

    Raises:
        TypeError: when `model_size` (or `d_model`) or `warmup_steps` is missing, or both names are given.
        ValueError: when `model_size` or `warmup_steps` is not positive.
    """

    def __init__(self, optimizer, model_size=None, warmup_steps=None, factor: float = 1.0, last_epoch: int = -1,
                 *, d_model=None) -> None:
        if model_size is not None and d_model is not None:
            raise TypeError("NoamScheduler got both model_size and its alias d_model; pass one")
        model_size = d_model if model_size is None else model_size
        for name, value in (("model_size", model_size), ("warmup_steps", warmup_steps)):
            if value is None:
                raise TypeError(f"NoamScheduler missing required argument: '{name}'")
            if value <= 0:
                raise ValueError(f"Expected positive {name}, but got {value}")
        self.model_size = model_size
        self.warmup_steps = warmup_steps
        self.factor = factor
        super().__init__(optimizer, last_epoch)

    def _compute_lr(self) -> list:
        s = max(self.last_epoch, 1)
        lr = self.factor * self.model_size ** -0.5 * min(s ** -0.5, s * self.warmup_steps ** -1.5)
        return [lr] * len(self.optimizer.param_groups)
