"""ReduceLROnPlateau: cut the learning rate when a monitored metric stops improving."""

from __future__ import annotations

import math
import warnings

from ._schedulers_base import (EPOCH_DEPRECATION_WARNING, LRScheduler, check_optimizer, group_copies,
                               set_group_value)


def _below_relative(a, best, threshold):
    return a < best * (1.0 - threshold)


def _below_absolute(a, best, threshold):
    return a < best - threshold


def _above_relative(a, best, threshold):
    return a > best * (threshold + 1.0)


def _above_absolute(a, best, threshold):
    return a > best + threshold


# (mode, threshold_mode) -> whether a metric improves on the best one, and the worst possible best
_IMPROVES = {("min", "rel"): _below_relative, ("min", "abs"): _below_absolute,
             ("max", "rel"): _above_relative, ("max", "abs"): _above_absolute}
_WORST = {"min": math.inf, "max": -math.inf}


class ReduceLROnPlateau(LRScheduler):
    r"""Multiply each group's learning rate by `factor` when a metric has not improved for `patience` steps.

    A metric a improves on the best b when, by `mode` and `threshold_mode` (t = `threshold`):

    .. math::
        \text{min, rel: } a < b (1 - t) \quad \text{min, abs: } a < b - t \quad
        \text{max, rel: } a > b (1 + t) \quad \text{max, abs: } a > b + t

    After more than `patience` non-improving steps, lr <- max(lr * factor, min_lr) for each group (skipped
    when the change would be at most `eps`), then `cooldown` steps pass in which bad steps are not counted.

    Args:
        optimizer: the optimizer.
        mode: "min" (the metric should fall) or "max" (it should rise).
        factor: the multiplier, < 1.
        patience: number of non-improving steps tolerated before a cut.
        threshold: how much better a metric must be to count as an improvement.
        threshold_mode: "rel" or "abs".
        cooldown: steps to wait after a cut before counting bad steps again.
        min_lr: lower bound on the learning rate (a number, or one per group).
        eps: smallest change of learning rate worth making.

    Raises:
        ValueError: for `factor` >= 1, an unknown mode, or a `min_lr` list of the wrong length.
    """

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr=0,
                 eps: float = 1e-8) -> None:
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        self.factor = factor
        check_optimizer(optimizer)
        self.optimizer = optimizer
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(optimizer.param_groups):
                raise ValueError(f"expected {len(optimizer.param_groups)} min_lrs, got {len(min_lr)}")
            self.default_min_lr = None
            self.min_lrs = list(min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = group_copies(optimizer, "lr")
        if mode not in _WORST:
            raise ValueError("mode " + mode + " is unknown!")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError("threshold mode " + threshold_mode + " is unknown!")
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self._resolve_options()
        self._reset()

    def _resolve_options(self) -> None:
        self.mode_worse = _WORST[self.mode]
        self._improves = _IMPROVES[self.mode, self.threshold_mode]

    def _reset(self) -> None:
        """Forget the best metric and the bad-step and cooldown counters."""
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        """Whether bad steps are being ignored after a recent cut."""
        return self.cooldown_counter > 0

    def step(self, metrics, epoch=None) -> None:
        """Record one value of the monitored metric (a number or a 0-d tensor) and cut the lr if due.

        Args:
            metrics: the metric's value at this step.
            epoch: deprecated, as in torch: the epoch to record instead of last_epoch + 1.
        """
        current = float(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self.last_epoch = epoch
        if self._improves(current, self.best, self.threshold):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad steps in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = group_copies(self.optimizer, "lr")

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):  # a group was added since construction
            if self.default_min_lr is None:
                raise RuntimeError(
                    "The number of param groups in the `optimizer` "
                    f"({len(groups)}) differs "
                    f"from when `ReduceLROnPlateau` was initialized "
                    f"({len(self.min_lrs)}), usually due to a new "
                    "param group being added to the optimizer. Please "
                    "modify the `min_lrs` field to match the length "
                    "of the `optimizer` param groups.")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs, strict=True):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                set_group_value(group, "lr", new_lr)
