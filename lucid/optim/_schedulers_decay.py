"""Schedules that scale each group's base learning rate by a factor of the epoch (StepLR ... CosineAnnealingLR)."""

from __future__ import annotations

import math
from collections import Counter

from ._schedulers_base import LRScheduler, group_values


def cosine_factor(t: float, period: float) -> float:
    """(1 + cos(pi t / period)) / 2: from 1 at t = 0 down to 0 at t = period (halving is exact in floats)."""
    return (1 + math.cos(math.pi * t / period)) / 2


class _FactorLR(LRScheduler):
    """A schedule lr_e = anchor + (base_lr - anchor) * factor(e), stepped in torch's chainable form.

    A subclass gives `_factor(epoch)` and, if the schedule is not anchored at zero, `_anchor()`. `step()`
    rescales the group's current lr by factor(e) / factor(e - 1) around the anchor, so changes made by
    other schedulers (ChainedScheduler) or by hand carry forward as in torch; `step(epoch)` uses the
    closed form. The formula is written once, in `_factor`; both forms come from it.
    """

    # torch re-applies the step on a resumed scheduler's initial step for these discrete-event
    # schedules, but keeps the loaded lr for the continuous ones (which set this to False)
    _rescale_on_resume = True

    def _factor(self, epoch: int) -> float:
        raise NotImplementedError

    def _anchor(self) -> float:
        return 0.0

    def _compute_lr(self) -> list:
        epoch = self.last_epoch
        if self._is_initial and epoch > 0 and not self._rescale_on_resume:
            return group_values(self.optimizer, "lr")
        before = self._factor(epoch - 1) if epoch > 0 else 1.0  # before the schedule starts: unscaled
        now = self._factor(epoch)
        anchor = self._anchor()
        lrs = []
        for lr, base_lr in zip(group_values(self.optimizer, "lr"), self.base_lrs, strict=True):
            if now == before:
                lrs.append(lr)
            elif before == 0:  # nothing left to rescale: climb back by the closed form's increment
                lrs.append(lr + (base_lr - anchor) * now)
            else:
                lrs.append(anchor + (lr - anchor) * (now / before))
        return lrs

    def _get_closed_form_lr(self) -> list:
        now, anchor = self._factor(self.last_epoch), self._anchor()
        return [anchor + (base_lr - anchor) * now for base_lr in self.base_lrs]


class StepLR(_FactorLR):
    r"""Decay each group's learning rate by `gamma` every `step_size` epochs.

    .. math:: \eta_e = \eta_{base} \cdot \gamma^{\lfloor e / \text{step\_size} \rfloor}

    Args:
        optimizer: the optimizer.
        step_size: period of the decay, in epochs.
        gamma: multiplicative factor of the decay.
        last_epoch: index of the last epoch; -1 starts the schedule.
    """

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _factor(self, epoch):
        return self.gamma ** (epoch // self.step_size)


class MultiStepLR(_FactorLR):
    r"""Decay each group's learning rate by `gamma` at each milestone (a repeated milestone decays again).

    .. math:: \eta_e = \eta_{base} \cdot \gamma^{\#\{m \in \text{milestones} : m \le e\}}

    Args:
        optimizer: the optimizer.
        milestones: epoch indices (a list; counted with multiplicity).
        gamma: multiplicative factor of the decay.
        last_epoch: index of the last epoch; -1 starts the schedule.
    """

    def __init__(self, optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _factor(self, epoch):
        # a plain dict works too: that is what a saved Counter loads back as
        return self.gamma ** sum(count for milestone, count in self.milestones.items() if milestone <= epoch)


class ConstantLR(_FactorLR):
    r"""Scale each group's learning rate by a constant `factor` until `total_iters` epochs have passed.

    .. math:: \eta_e = \eta_{base} \cdot (\text{factor} \text{ if } e < \text{total\_iters} \text{ else } 1)

    Args:
        optimizer: the optimizer.
        factor: the scale, in [0, 1].
        total_iters: number of epochs the scale lasts.
        last_epoch: index of the last epoch; -1 starts the schedule.

    Raises:
        ValueError: when `factor` is outside [0, 1].
    """

    def __init__(self, optimizer, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1) -> None:
        if factor > 1.0 or factor < 0:
            raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _factor(self, epoch):
        return self.factor + (epoch >= self.total_iters) * (1 - self.factor)


class LinearLR(_FactorLR):
    r"""Scale each group's learning rate by a factor going linearly from `start_factor` to `end_factor`.

    .. math:: \eta_e = \eta_{base} \left(s + (t - s) \frac{\min(e, T)}{T}\right),
        \quad s = \text{start\_factor},\ t = \text{end\_factor},\ T = \text{total\_iters}

    Args:
        optimizer: the optimizer.
        start_factor: the scale at epoch 0, in (0, 1].
        end_factor: the scale from epoch `total_iters` on, in [0, 1].
        total_iters: number of epochs of the ramp.
        last_epoch: index of the last epoch; -1 starts the schedule.

    Raises:
        ValueError: when a factor is out of its range.
    """

    _rescale_on_resume = False

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5,
                 last_epoch: int = -1) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError(
                "Starting multiplicative factor expected to be greater than 0 and less or equal to 1.")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _factor(self, epoch):
        return (self.start_factor
                + (self.end_factor - self.start_factor) * min(self.total_iters, epoch) / self.total_iters)


class ExponentialLR(_FactorLR):
    r"""Decay each group's learning rate by `gamma` every epoch.

    .. math:: \eta_e = \eta_{base} \cdot \gamma^e

    Args:
        optimizer: the optimizer.
        gamma: multiplicative factor of the decay.
        last_epoch: index of the last epoch; -1 starts the schedule.
    """

    _rescale_on_resume = False

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _factor(self, epoch):
        return self.gamma ** epoch


class PolynomialLR(_FactorLR):
    r"""Decay each group's learning rate polynomially to zero over `total_iters` epochs.

    .. math:: \eta_e = \eta_{base} \left(1 - \frac{\min(e, T)}{T}\right)^{\text{power}},
        \quad T = \text{total\_iters}

    Args:
        optimizer: the optimizer.
        total_iters: number of epochs of the decay.
        power: the polynomial's power.
        last_epoch: index of the last epoch; -1 starts the schedule.
    """

    _rescale_on_resume = False

    def __init__(self, optimizer, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1) -> None:
        self.total_iters = total_iters
        self.power = power
        super().__init__(optimizer, last_epoch)

    def _factor(self, epoch):
        return (1.0 - min(self.total_iters, epoch) / self.total_iters) ** self.power


class CosineAnnealingLR(_FactorLR):
    r"""Anneal each group's learning rate along a cosine from its base value to `eta_min` (SGDR without restarts).

    .. math:: \eta_e = \eta_{min} + (\eta_{base} - \eta_{min}) \frac{1 + \cos(\pi e / T_{max})}{2}

    Past `T_max` the cosine continues, so the learning rate climbs back (period 2 `T_max`).

    Args:
        optimizer: the optimizer.
        T_max: number of epochs from the base value to `eta_min`.
        eta_min: the minimum learning rate.
        last_epoch: index of the last epoch; -1 starts the schedule.
    """

    _rescale_on_resume = False

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def _anchor(self):
        return self.eta_min

    def _factor(self, epoch):
        return cosine_factor(epoch, self.T_max)
