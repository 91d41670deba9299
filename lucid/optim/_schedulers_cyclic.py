"""Cyclic schedules: CyclicLR and OneCycleLR (which also cycle momentum), CosineAnnealingWarmRestarts."""

from __future__ import annotations

import math
from functools import partial

from ._schedulers_base import (LRScheduler, callable_state, check_optimizer, per_group,
                               restore_callable_state, set_group_value)
from ._schedulers_decay import cosine_factor

# ---------------------------------------------------------------------- momentum cycling


def uses_beta1(optimizer) -> bool:
    """Whether momentum is cycled through betas[0] (Adam's family) rather than "momentum" (SGD, RMSprop)."""
    group = optimizer.param_groups[0]
    if "momentum" not in group and "betas" not in group:
        raise ValueError("optimizer must support momentum or beta1 with `cycle_momentum` option enabled")
    return "betas" in group


def set_momentum(group: dict, use_beta1: bool, value: float) -> None:
    """Write a cycled momentum into a group: betas[0] keeps betas[1] as it is."""
    if use_beta1:
        group["betas"] = (value, *group["betas"][1:])
    else:
        group["momentum"] = value


def start_momentum(optimizer, use_beta1: bool, max_momentums: list, base_momentums: list) -> None:
    """Start every group at its max momentum and record both bounds in it, as torch does."""
    for top, low, group in zip(max_momentums, base_momentums, optimizer.param_groups, strict=True):
        set_momentum(group, use_beta1, top)
        group["max_momentum"] = top
        group["base_momentum"] = low


# ---------------------------------------------------------------------- CyclicLR


def _triangular(x: float) -> float:
    return 1.0


def _triangular2(x: float) -> float:
    return 1 / (2.0 ** (x - 1))


def _exp_range(gamma: float, x: float) -> float:
    return gamma ** x


# mode -> (its amplitude scale as a function of gamma, what the scale is a function of)
_CYCLIC_MODES = {
    "triangular": (lambda gamma: _triangular, "cycle"),
    "triangular2": (lambda gamma: _triangular2, "cycle"),
    "exp_range": (lambda gamma: partial(_exp_range, gamma), "iterations"),
}


class CyclicLR(LRScheduler):
    r"""Cycle each group's learning rate between `base_lr` and `max_lr` (Smith, 2017), momentum inversely.

    .. math::
        c = \lfloor 1 + e / (u + d) \rfloor, \quad x = 1 + e / (u + d) - c, \quad r = u / (u + d) \\
        h = x / r \text{ if } x \le r \text{ else } (x - 1) / (r - 1) \\
        \eta_e = \eta_{low} + (\eta_{high} - \eta_{low}) \cdot h \cdot s, \quad
        m_e = m_{high} - (m_{high} - m_{low}) \cdot h \cdot s

    with u, d = `step_size_up`, `step_size_down` and s the scale: 1 ("triangular"), 1/2^(c-1)
    ("triangular2"), gamma^e ("exp_range"), or `scale_fn` of c or e (`scale_mode` "cycle" / "iterations").

    Args:
        optimizer: the optimizer.
        base_lr: lower learning-rate bound (a number, or one per group); set as the lr at construction.
        max_lr: upper learning-rate bound (a number, or one per group).
        step_size_up: epochs (batches) of the rising half of a cycle.
        step_size_down: epochs of the falling half; defaults to `step_size_up`.
        mode: "triangular", "triangular2" or "exp_range"; ignored when `scale_fn` is given.
        gamma: the base of "exp_range".
        scale_fn: a custom amplitude scale, 0 <= scale_fn(x) <= 1.
        scale_mode: what `scale_fn` takes: "cycle" (the cycle number) or "iterations" (the epoch).
        cycle_momentum: cycle "momentum" (or betas[0]) inversely between the momentum bounds.
        base_momentum: lower momentum bound (number or one per group).
        max_momentum: upper momentum bound (number or one per group).
        last_epoch: index of the last batch; -1 starts the schedule.

    Raises:
        ValueError: for an unknown mode without `scale_fn`, per-group lists of the wrong length, or
            `cycle_momentum` with an optimizer that has neither "momentum" nor "betas".
    """

    _custom_state = ("_scale_fn_custom",)

    def __init__(self, optimizer, base_lr, max_lr, step_size_up: int = 2000, step_size_down=None,
                 mode: str = "triangular", gamma: float = 1.0, scale_fn=None, scale_mode: str = "cycle",
                 cycle_momentum: bool = True, base_momentum=0.8, max_momentum=0.9, last_epoch: int = -1) -> None:
        check_optimizer(optimizer)
        self.optimizer = optimizer
        base_lrs = per_group("base_lr", optimizer, base_lr)
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups, strict=True):
                set_group_value(group, "lr", lr)
        self.max_lrs = per_group("max_lr", optimizer, max_lr)
        step_size_up = float(step_size_up)
        step_size_down = float(step_size_down) if step_size_down is not None else step_size_up
        self.total_size = step_size_up + step_size_down
        self.step_ratio = step_size_up / self.total_size
        if mode not in _CYCLIC_MODES and scale_fn is None:
            raise ValueError("mode is invalid and scale_fn is None")
        self.mode, self.gamma, self.scale_mode = mode, gamma, scale_mode
        self._scale_fn_custom = scale_fn
        self._resolve_options()
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1 = uses_beta1(optimizer)
            self.base_momentums = per_group("base_momentum", optimizer, base_momentum)
            self.max_momentums = per_group("max_momentum", optimizer, max_momentum)
            if last_epoch == -1:
                start_momentum(optimizer, self.use_beta1, self.max_momentums, self.base_momentums)
        super().__init__(optimizer, last_epoch)
        # torch takes the initial step from "initial_lr" and cycles from base_lr afterwards
        self.base_lrs = base_lrs

    def _resolve_options(self) -> None:
        if self._scale_fn_custom is not None:
            self._scale_fn = self._scale_fn_custom
        else:  # a built-in mode decides what its scale is a function of
            make_scale, self.scale_mode = _CYCLIC_MODES[self.mode]
            self._scale_fn = make_scale(self.gamma)
        self._scale_by_cycle = self.scale_mode == "cycle"

    def scale_fn(self, x: float) -> float:
        """The amplitude scale at x (a cycle number or an epoch, by `scale_mode`)."""
        return self._scale_fn(x)

    def _compute_lr(self) -> list:
        cycle = math.floor(1 + self.last_epoch / self.total_size)
        x = 1.0 + self.last_epoch / self.total_size - cycle
        height = x / self.step_ratio if x <= self.step_ratio else (x - 1) / (self.step_ratio - 1)
        scale = self._scale_fn(cycle if self._scale_by_cycle else self.last_epoch)
        lrs = [low + (high - low) * height * scale for low, high in zip(self.base_lrs, self.max_lrs, strict=True)]
        if self.cycle_momentum:
            for group, low, high in zip(self.optimizer.param_groups, self.base_momentums, self.max_momentums,
                                        strict=True):
                set_momentum(group, self.use_beta1, high - (high - low) * height * scale)
        return lrs

    def state_dict(self) -> dict:
        """The state; a custom `scale_fn` is saved as its attributes if it is a callable object, else None."""
        state = super().state_dict()
        state["_scale_fn_custom"] = callable_state(self._scale_fn_custom)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state; saved `scale_fn` attributes go onto this scheduler's own `scale_fn`."""
        super().load_state_dict(state_dict)
        restore_callable_state(self._scale_fn_custom, state_dict.get("_scale_fn_custom"))


# ---------------------------------------------------------------------- OneCycleLR


def _anneal_cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _anneal_linear(start: float, end: float, pct: float) -> float:
    return (end - start) * pct + start


_ANNEALERS = {"cos": _anneal_cos, "linear": _anneal_linear}


def _total_steps(total_steps, epochs, steps_per_epoch) -> int:
    """The cycle's length: `total_steps`, else `epochs * steps_per_epoch` (torch's checks and messages)."""
    if total_steps is not None:
        if total_steps <= 0 or not isinstance(total_steps, int):
            raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
        return total_steps
    if epochs is not None and steps_per_epoch is not None:
        if not isinstance(epochs, int) or epochs <= 0:
            raise ValueError(f"Expected positive integer epochs, but got {epochs}")
        if not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
            raise ValueError(f"Expected positive integer steps_per_epoch, but got {steps_per_epoch}")
        return epochs * steps_per_epoch
    raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")


def _phase(end_step, start_lr, end_lr, start_momentum, end_momentum) -> dict:
    # the names are keys of the parameter groups, where OneCycleLR keeps each group's bounds
    return {"end_step": end_step, "start_lr": start_lr, "end_lr": end_lr,
            "start_momentum": start_momentum, "end_momentum": end_momentum}


def _phases(total_steps: int, pct_start: float, three_phase: bool) -> list:
    """The schedule's phases: up to the peak, then down (two phases), or down and on to min_lr (three)."""
    peak = float(pct_start * total_steps) - 1
    if three_phase:
        return [_phase(peak, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                _phase(float(2 * pct_start * total_steps) - 2, "max_lr", "initial_lr", "base_momentum",
                       "max_momentum"),
                _phase(total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
    return [_phase(peak, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
            _phase(total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]


class OneCycleLR(LRScheduler):
    r"""The 1cycle policy (Smith & Topin, 2017): warm up to `max_lr`, then anneal far below the start.

    .. math::
        \eta_{init} = \eta_{max} / \text{div\_factor}, \quad
        \eta_{min} = \eta_{init} / \text{final\_div\_factor} \\
        \eta_e = A(\eta_{from}, \eta_{to}, (e - e_{start}) / (e_{end} - e_{start}))
        \text{ within the phase } [e_{start}, e_{end}] \text{ that holds } e

    with phases init -> max over the first `pct_start` of the steps, then max -> min (or, with
    `three_phase`, max -> init symmetrically, then init -> min); A(a, b, p) = b + (a - b)(1 + cos(pi p))/2
    ("cos") or a + (b - a) p ("linear"). Momentum runs the opposite way between its bounds.

    Args:
        optimizer: the optimizer.
        max_lr: peak learning rate (a number, or one per group).
        total_steps: number of steps of the cycle; or give `epochs` and `steps_per_epoch`.
        epochs: number of epochs (with `steps_per_epoch`).
        steps_per_epoch: number of steps an epoch (with `epochs`).
        pct_start: fraction of the cycle spent warming up (a float in [0, 1]).
        anneal_strategy: "cos" or "linear".
        cycle_momentum: cycle "momentum" (or betas[0]) inversely between the momentum bounds.
        base_momentum: lower momentum bound (number or one per group).
        max_momentum: upper momentum bound (number or one per group).
        div_factor: initial lr = max_lr / div_factor.
        final_div_factor: min lr = initial lr / final_div_factor.
        three_phase: use the three-phase schedule of the paper instead of fastai's two phases.
        last_epoch: index of the last batch; -1 starts the schedule.

    Raises:
        ValueError: for a bad cycle length, `pct_start` or `anneal_strategy`, per-group lists of the wrong
            length, `cycle_momentum` without momentum or betas, and on stepping past `total_steps`.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum=0.85, max_momentum=0.95, div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False, last_epoch: int = -1) -> None:
        check_optimizer(optimizer)
        self.optimizer = optimizer
        self.total_steps = _total_steps(total_steps, epochs, steps_per_epoch)
        self._schedule_phases = _phases(self.total_steps, pct_start, three_phase)
        if pct_start < 0 or pct_start > 1 or not isinstance(pct_start, float):
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in _ANNEALERS:
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        self._anneal_func_type = anneal_strategy
        self._resolve_options()
        max_lrs = per_group("max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for top, group in zip(max_lrs, optimizer.param_groups, strict=True):
                group["initial_lr"] = top / div_factor
                group["max_lr"] = top
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1 = uses_beta1(optimizer)
            max_momentums = per_group("max_momentum", optimizer, max_momentum)
            base_momentums = per_group("base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                start_momentum(optimizer, self.use_beta1, max_momentums, base_momentums)
        super().__init__(optimizer, last_epoch)

    def _resolve_options(self) -> None:
        self._anneal = _ANNEALERS[self._anneal_func_type]

    def _phase_at(self, step: int):
        """(the phase that holds `step`, how far into it `step` is); the last phase extends past its end."""
        start = 0.0
        for i, phase in enumerate(self._schedule_phases):
            if step <= phase["end_step"] or i == len(self._schedule_phases) - 1:
                return phase, (step - start) / (phase["end_step"] - start)
            start = phase["end_step"]

    def _compute_lr(self) -> list:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"Tried to step {step} times. The specified number of total steps is {self.total_steps}")
        phase, pct = self._phase_at(step)
        lrs = []
        for group in self.optimizer.param_groups:
            lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
            if self.cycle_momentum:
                momentum = self._anneal(group[phase["start_momentum"]], group[phase["end_momentum"]], pct)
                set_momentum(group, self.use_beta1, momentum)
        return lrs


# ---------------------------------------------------------------------- CosineAnnealingWarmRestarts


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter, 2017).

    .. math:: \eta = \eta_{min} + (\eta_{base} - \eta_{min}) \frac{1 + \cos(\pi T_{cur} / T_i)}{2}

    with T_cur the epochs since the last restart and T_i the current period: T_0, then multiplied by
    `T_mult` at each restart. `step(epoch)` accepts fractional epochs (e.g. epoch + batch / batches).

    Args:
        optimizer: the optimizer.
        T_0: epochs until the first restart (a positive int).
        T_mult: factor by which the period grows after each restart (an int >= 1).
        eta_min: the minimum learning rate.
        last_epoch: index of the last epoch; -1 starts the schedule.

    Raises:
        ValueError: for a bad T_0, T_mult or eta_min, or a negative `epoch` given to `step`.
    """

    def __init__(self, optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if T_0 <= 0 or not isinstance(T_0, int):
            raise ValueError(f"Expected positive integer T_0, but got {T_0}")
        if T_mult < 1 or not isinstance(T_mult, int):
            raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
        if not isinstance(eta_min, (float, int)):
            raise ValueError(f"Expected float or int eta_min, but got {eta_min} of type {type(eta_min)}")
        self.T_0 = T_0
        self.T_i = T_0
        self.T_mult = T_mult
        self.eta_min = eta_min
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def _compute_lr(self) -> list:
        factor = cosine_factor(self.T_cur, self.T_i)
        return [self.eta_min + (base_lr - self.eta_min) * factor for base_lr in self.base_lrs]

    def step(self, epoch=None) -> None:
        """Advance one epoch, or go to `epoch` (fractional allowed); may be called after every batch.

        As in torch, this step neither counts steps nor warns about the call order.
        """
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            self._seek(epoch)
        self.last_epoch = math.floor(epoch)
        with self._within_step():
            values = self.get_lr()
        self._write_lrs(values)

    def _seek(self, epoch: float) -> None:
        """Set T_cur and T_i for a given (possibly fractional) epoch: which period holds it, and where."""
        if epoch < 0:
            raise ValueError(f"Expected non-negative epoch, but got {epoch}")
        if epoch < self.T_0:
            self.T_i, self.T_cur = self.T_0, epoch
        elif self.T_mult == 1:
            self.T_cur = epoch % self.T_0
        else:  # periods T_0 * T_mult**k: restarts at T_0 (T_mult**n - 1) / (T_mult - 1)
            n = int(math.log((epoch / self.T_0 * (self.T_mult - 1) + 1), self.T_mult))
            self.T_cur = epoch - self.T_0 * (self.T_mult ** n - 1) / (self.T_mult - 1)
            self.T_i = self.T_0 * self.T_mult ** n
