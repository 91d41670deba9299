"""LRScheduler: the base class of the learning-rate schedulers, and the helpers they share.

A scheduler touches only `optimizer.param_groups` (and wraps `optimizer.step` to notice the call order, as
torch does), so it works unchanged on any wrapper whose `param_groups` is the wrapped optimizer's list.
A tensor learning rate (a `lucid.Tensor` or a 0-d array) stays a tensor: schedulers write it in place and
keep copies (never the user's tensor) of the values they remember.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import types
import warnings
import weakref

from . import _hyper

EPOCH_DEPRECATION_WARNING = (
    "The epoch parameter in `scheduler.step()` was not necessary and is being "
    "deprecated where possible. Please use `scheduler.step()` to step the "
    "scheduler. During the deprecation, if epoch is different from None, the "
    "closed form is used instead of the new chainable form, where available. "
    "Please open an issue if you are unable to replicate your use case: "
    "https://github.com/pytorch/pytorch/issues/new/choose."
)

# transient flags that are never part of a scheduler's saved state
_UNSAVED = ("optimizer", "_get_lr_called_within_step", "_is_initial")


def check_optimizer(optimizer) -> None:
    """Raise torch's TypeError unless `optimizer` has parameter groups (an optimizer or a wrapper of one)."""
    if not hasattr(optimizer, "param_groups"):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")


def per_group(name: str, optimizer, value) -> list:
    """`value` once per parameter group (tensors copied): a scalar is repeated, a list or tuple must match
    the group count."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(
                f"{name} must have the same length as optimizer.param_groups. "
                f"{name} has {len(value)} values, param_groups has {len(optimizer.param_groups)}.")
        return [_hyper.clone(v) for v in value]
    return [_hyper.clone(value) for _ in optimizer.param_groups]


def group_values(optimizer, key: str) -> list:
    """[group[key] for every parameter group]; KeyError where a group lacks it."""
    return [group[key] for group in optimizer.param_groups]


def group_copies(optimizer, key: str) -> list:
    """`group_values` with tensors copied, so later in-place changes of the groups do not show."""
    return [_hyper.clone(group[key]) for group in optimizer.param_groups]


def set_group_value(group: dict, key: str, value) -> None:
    """Set group[key]: a tensor already there is written in place (it stays the same tensor)."""
    if _hyper.is_tensor(group[key]):
        _hyper.fill(group[key], value)
    else:
        group[key] = value


def _track_optimizer_steps(optimizer) -> None:
    """Wrap `optimizer.step` (once) so it records that it ran; the first scheduler step checks that."""
    step = getattr(optimizer, "step", None)
    if step is None or getattr(step, "_wrapped_by_lr_sched", False):
        return
    function = getattr(step, "__func__", None)
    if function is None:
        return
    owner = weakref.ref(optimizer)  # no reference cycle: the optimizer can be collected

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        opt = owner()
        opt._opt_called = True
        return function.__get__(opt, type(opt))(*args, **kwargs)
    wrapper._wrapped_by_lr_sched = True
    try:
        optimizer.step = wrapper
    except AttributeError:  # an object that takes no attributes: no order check for it
        pass


def callable_state(fn):
    """What torch saves of a user callable: None for a plain function, else a copy of the object's __dict__."""
    if isinstance(fn, types.FunctionType) or not hasattr(fn, "__dict__"):
        return None
    return copy.deepcopy(fn.__dict__)


def restore_callable_state(fn, saved) -> None:
    """Put the attributes saved by `callable_state` back onto the live callable object."""
    if saved is not None:
        fn.__dict__.update(copy.deepcopy(saved))


class LRScheduler:
    """Base class of the learning-rate schedulers, with torch.optim.lr_scheduler.LRScheduler's API.

    The constructor records each group's "initial_lr" (once; the first scheduler on an optimizer sets it),
    takes `base_lrs` from it and performs an initial step, so the epoch-0 learning rate is in the optimizer
    as soon as the scheduler exists. Each `step()` then advances `last_epoch` and writes `get_lr()` into
    the groups. A subclass implements `_compute_lr()` (or, torch style, overrides `get_lr()`), and may add
    `_get_closed_form_lr()`, which `step(epoch)` prefers.

    Args:
        optimizer: the optimizer (or optimizer wrapper) whose `param_groups` are scheduled.
        last_epoch: index of the last epoch seen; -1 starts a fresh schedule. A resumed scheduler
            (last_epoch >= 0) needs "initial_lr" in every group, as the optimizer's state dict carries it.

    Raises:
        TypeError: when `optimizer` has no `param_groups`.
        KeyError: when resuming and a group has no "initial_lr".
    """

    _get_lr_called_within_step = False
    _is_initial = False
    _custom_state = ()  # attributes a subclass saves and loads in its own form

    def __init__(self, optimizer, last_epoch: int = -1) -> None:
        check_optimizer(optimizer)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", _hyper.clone(group["lr"]))
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when resuming scheduler "
                        "with last_epoch >= 0.\n"
                        "This typically happens when:\n"
                        "1. You're trying to resume training from a checkpoint but haven't properly loaded "
                        "the optimizer state\n"
                        "2. You're using last_epoch >= 0 for a fresh training run (not recommended)")
        self.base_lrs = group_copies(optimizer, "initial_lr")
        self.last_epoch = last_epoch
        _track_optimizer_steps(optimizer)
        self._initial_step()

    def _initial_step(self) -> None:
        """Reset the step count and take the step that applies the schedule's current (epoch-0) value."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    # ------------------------------------------------------------------ stepping

    def step(self, epoch=None) -> None:
        """Advance the schedule by one epoch (call it after `optimizer.step()`).

        Args:
            epoch: deprecated, as in torch: jump to this epoch, using the closed form where there is one.
        """
        self._warn_if_optimizer_not_stepped()
        self._step_count += 1
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _warn_if_optimizer_not_stepped(self) -> None:
        # the first step after construction is where torch catches the pre-1.1 order
        if self._step_count != 1:
            return
        step = getattr(self.optimizer, "step", None)
        if step is not None and not hasattr(step, "_wrapped_by_lr_sched"):
            warnings.warn(
                "Seems like `optimizer.step()` has been overridden after learning rate scheduler "
                "initialization. Please, make sure to call `optimizer.step()` before "
                "`lr_scheduler.step()`. See more details at "
                "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate",
                UserWarning, stacklevel=3)
        elif step is not None and not getattr(self.optimizer, "_opt_called", False):
            warnings.warn(
                "Detected call of `lr_scheduler.step()` before `optimizer.step()`. "
                "In PyTorch 1.1.0 and later, you should call them in the opposite order: "
                "`optimizer.step()` before `lr_scheduler.step()`.  Failure to do this "
                "will result in PyTorch skipping the first value of the learning rate schedule. "
                "See more details at "
                "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate",
                UserWarning, stacklevel=3)

    def _update_lr(self, epoch=None) -> None:
        """Set `last_epoch` (+1, or to `epoch`) and write the schedule's values into the groups."""
        with self._within_step():
            if epoch is None:
                self.last_epoch += 1
                values = self.get_lr()
            else:
                self.last_epoch = epoch
                closed_form = getattr(self, "_get_closed_form_lr", None)
                values = closed_form() if closed_form is not None else self.get_lr()
        self._write_lrs(values)

    @contextlib.contextmanager
    def _within_step(self):
        self._get_lr_called_within_step = True
        try:
            yield
        finally:
            self._get_lr_called_within_step = False

    def _write_lrs(self, values) -> None:
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            set_group_value(group, "lr", lr)
        self._last_lr = group_copies(self.optimizer, "lr")

    # ------------------------------------------------------------------ learning rates

    def get_lr(self) -> list:
        """The learning rates the schedule gives at `last_epoch` (use `get_last_lr()` to read the current ones)."""
        if not self._get_lr_called_within_step:
            warnings.warn("To get the last learning rate computed by the scheduler, please use "
                          "`get_last_lr()`.", UserWarning, stacklevel=2)
        return self._compute_lr()

    def _compute_lr(self) -> list:
        raise NotImplementedError

    def get_last_lr(self) -> list:
        """The learning rates this scheduler last wrote, one per parameter group (copies, never the groups' tensors)."""
        return list(self._last_lr)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """The scheduler's state: its attributes except the optimizer and callables (those are rebuilt)."""
        return {key: copy.deepcopy(value) for key, value in self.__dict__.items()
                if key not in _UNSAVED and key not in self._custom_state and not callable(value)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state from `state_dict()`; the optimizer's own state dict carries the learning rates."""
        self.__dict__.update(copy.deepcopy({key: value for key, value in state_dict.items()
                                            if key not in self._custom_state}))
        self._resolve_options()

    def _resolve_options(self) -> None:
        """Turn saved option strings into the functions the schedule runs (subclasses that have options)."""


class _LRScheduler(LRScheduler):
    """The pre-2.0 name of LRScheduler, kept as its own class as torch does."""
