"""Schedulers made of schedulers: SequentialLR (one after another) and ChainedScheduler (all at once)."""

from __future__ import annotations

from bisect import bisect_right

from ._schedulers_base import LRScheduler, check_optimizer, group_copies, set_group_value
from ._schedulers_plateau import ReduceLROnPlateau


def _check_members(owner: str, schedulers, optimizer) -> None:
    """Raise torch's errors unless every scheduler is a plain scheduler of `optimizer`."""
    for index, scheduler in enumerate(schedulers):
        if not hasattr(scheduler, "optimizer"):
            raise TypeError(f"{owner} at index {index} should have `optimizer` as its attribute.")
        if isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError(
                f"{owner} does not support `ReduceLROnPlateau` scheduler as it "
                "requires additional kwargs to be specified when calling `step`, "
                f"but got one at index {index} in the given schedulers sequence.")
        if optimizer != scheduler.optimizer:
            raise ValueError(
                f"{owner} expects all schedulers to belong to the same optimizer, but "
                f"got scheduler {scheduler.__class__.__name__} at index {index} has {scheduler.optimizer}, "
                f"which is different from {optimizer.__class__.__name__}.")


class _Composite(LRScheduler):
    """A scheduler over `_schedulers`, whose states it saves and loads as a list of their state dicts."""

    _custom_state = ("_schedulers",)

    def state_dict(self) -> dict:
        """The state, with each member's state dict under "_schedulers"."""
        state = super().state_dict()
        state["_schedulers"] = [scheduler.state_dict() for scheduler in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state, and each member's state from "_schedulers"."""
        super().load_state_dict(state_dict)
        for scheduler, state in zip(self._schedulers, state_dict["_schedulers"], strict=True):
            scheduler.load_state_dict(state)


class SequentialLR(_Composite):
    r"""Run schedulers one after another, switching at the milestones.

    .. math:: \eta_e = \text{schedulers}[i](e - m_{i-1}), \quad i = \#\{m \in \text{milestones} : m \le e\}

    At construction the groups go back to their "initial_lr", every member's construction step is undone
    and the first member takes its initial step; at a milestone the next member restarts from epoch 0.

    Args:
        optimizer: the optimizer all members schedule.
        schedulers: the schedulers, in order (not ReduceLROnPlateau).
        milestones: the epochs at which the next scheduler takes over (one fewer than schedulers).
        last_epoch: index of the last epoch; -1 starts the schedule.

    Raises:
        ValueError: for no schedulers, a member of another optimizer, a ReduceLROnPlateau member, or a
            milestone count that is not one fewer than the scheduler count.
        TypeError: for a member without an `optimizer`.
    """

    def __init__(self, optimizer, schedulers: list, milestones: list, last_epoch: int = -1) -> None:
        if len(schedulers) < 1:
            raise ValueError(f"{self.__class__.__name__} expects at least one scheduler, but got no scheduler.")
        _check_members(self.__class__.__name__, schedulers, optimizer)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more "
                f"than the number of milestone points, but got number of schedulers {len(schedulers)} and the "
                f"number of milestones to be equal to {len(milestones)}")
        check_optimizer(optimizer)
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            set_group_value(group, "lr", group["initial_lr"])
        self.recursive_undo()
        first = self._schedulers[bisect_right(milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    def recursive_undo(self, sched=None) -> None:
        """Take back the construction step of every member (and of the members' members)."""
        scheds = self if sched is None else sched
        if hasattr(scheds, "_schedulers"):
            for member in scheds._schedulers:
                self.recursive_undo(member)
        elif hasattr(scheds, "last_epoch"):
            scheds.last_epoch -= 1

    def step(self) -> None:
        """Advance one epoch: the member in charge steps, or restarts from epoch 0 at its milestone."""
        self.last_epoch += 1
        index = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()


class ChainedScheduler(_Composite):
    r"""Step several schedulers together, each on the learning rate the previous one left.

    .. math:: \eta_e = (s_n \circ \dots \circ s_1)(\eta_{e-1}) \text{ for chainable schedulers } s_i

    Args:
        schedulers: the schedulers (not ReduceLROnPlateau), stepped in order.
        optimizer: the optimizer they all schedule; defaults to the first scheduler's.

    Raises:
        ValueError: for no schedulers, a member of another optimizer, or a ReduceLROnPlateau member.
        TypeError: for a member without an `optimizer`.
    """

    def __init__(self, schedulers, optimizer=None) -> None:
        if len(schedulers) < 1:
            raise ValueError(f"{self.__class__.__name__} expects at least one scheduler to be chained, "
                             "but got no scheduler.")
        optimizer = optimizer if optimizer is not None else schedulers[0].optimizer
        _check_members(self.__class__.__name__, schedulers, optimizer)
        self._schedulers = schedulers
        self.optimizer = optimizer
        self._last_lr = group_copies(schedulers[-1].optimizer, "lr")

    def step(self) -> None:
        """Step every member, in order."""
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = group_copies(self._schedulers[-1].optimizer, "lr")
