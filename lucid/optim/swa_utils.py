"""Stochastic weight averaging and EMA, as torch.optim.swa_utils: AveragedModel, SWALR, update_bn, averaging functions.

The averaging functions work on arrays (a parameter's `.data`, as lucid's optimizers do): the
`multi_avg_fn` kind updates lists of arrays in place, the `avg_fn` kind returns the new average.
`num_averaged` is a number or a 0-d integer array (AveragedModel passes its `n_averaged` buffer's).
They round as PyTorch's do: a tensor count gives a weight in the default dtype, as torch's division of
an integer tensor does.
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np

from .. import _backend, autograd, dtypes
from ..nn import Module
from ..tensor import Tensor
from ._schedulers_base import LRScheduler, per_group
from ._plain import lerp_

__all__ = ["AveragedModel", "update_bn", "SWALR", "get_ema_multi_avg_fn", "get_swa_multi_avg_fn",
           "get_ema_avg_fn", "get_swa_avg_fn"]


def _check_decay(decay) -> None:
    if decay < 0.0 or decay > 1.0:
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in [0,1] range.")


def _lerp_(targets, ends, weight) -> None:
    for target, end in zip(targets, ends, strict=True):
        lerp_(target, end, weight)


def _is_floating(array) -> bool:
    return array.dtype.kind in "fc"


def _count_weight(num_averaged):
    """1 / (n + 1): in the default dtype for a tensor count (torch's integer-tensor division), else a float."""
    if isinstance(num_averaged, (np.ndarray, Tensor)) or _backend.is_gpu_array(num_averaged):
        n = float(np.asarray(_backend.to_host(getattr(num_averaged, "data", num_averaged))))
        dtype = dtypes.get_default_dtype().type
        return dtype(1) / dtype(n + 1)
    return 1 / (num_averaged + 1)


def get_ema_multi_avg_fn(decay=0.999):
    """An in-place exponential moving average over lists: ema <- lerp(ema, current, 1 - decay)."""
    _check_decay(decay)

    def ema_update(ema_param_list, current_param_list, _num_averaged) -> None:
        if _is_floating(ema_param_list[0]):
            _lerp_(ema_param_list, current_param_list, 1 - decay)
        else:
            for ema, current in zip(ema_param_list, current_param_list, strict=True):
                ema[...] = ema * decay + current * (1 - decay)
    return ema_update


def get_swa_multi_avg_fn():
    """An in-place running mean over lists: avg <- lerp(avg, current, 1 / (n + 1))."""
    def swa_update(averaged_param_list, current_param_list, num_averaged) -> None:
        if not _is_floating(averaged_param_list[0]):  # torch's in-place division refuses integers too
            raise RuntimeError("Integer division of an averaged integer tensor is not supported: average "
                               "integer buffers with avg_fn, or keep them out with use_buffers=False")
        _lerp_(averaged_param_list, current_param_list, _count_weight(num_averaged))
    return swa_update


def get_ema_avg_fn(decay=0.999):
    """An exponential moving average of one array: returns decay * ema + (1 - decay) * current."""
    _check_decay(decay)

    def ema_update(ema_param, current_param, num_averaged):
        return decay * ema_param + (1 - decay) * current_param
    return ema_update


def get_swa_avg_fn():
    """A running mean of one array: returns avg + (current - avg) / (n + 1)."""
    def swa_update(averaged_param, current_param, num_averaged):
        count = num_averaged + 1
        if isinstance(count, np.ndarray) or _backend.is_gpu_array(count):
            count = count.astype(averaged_param.dtype)  # a 0-d count takes the array's dtype, as in torch
        return averaged_param + (current_param - averaged_param) / count
    return swa_update


class AveragedModel(Module):
    r"""A running average of a model's parameters (SWA by default, or EMA), as torch's AveragedModel.

    .. math:: \bar\theta_{n+1} = \bar\theta_n + \frac{\theta - \bar\theta_n}{n + 1} \quad\text{(default)}

    Args:
        model: the model to average; a deep copy of it holds the average (`module`).
        device: where to keep the copy ("cpu" or "gpu"); by default where the model is.
        avg_fn: `avg_fn(averaged, current, n) -> new average`, applied per array.
        multi_avg_fn: `multi_avg_fn(averaged_list, current_list, n)` updating the lists in place.
        use_buffers: average the buffers too (e.g. batch-norm statistics) instead of copying them.
    """

    def __init__(self, model: Module, device=None, avg_fn=None, multi_avg_fn=None, use_buffers=False) -> None:
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        self.module = copy.deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        self.register_buffer("n_averaged", Tensor(np.array(0, dtype=np.int64), device=device))
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    def forward(self, *args, **kwargs):
        """Run the averaged model."""
        return self.module(*args, **kwargs)

    def _tensors(self, model: Module):
        return itertools.chain(model.parameters(), model.buffers()) if self.use_buffers else model.parameters()

    def update_parameters(self, model: Module) -> None:
        """Fold `model`'s current parameters (and buffers with `use_buffers`) into the average."""
        ours = [t.data for t in self._tensors(self.module)]
        theirs = [_backend.to_device(t.data, _backend.device_of(mine))
                  for t, mine in zip(self._tensors(model), ours)]
        ours = ours[:len(theirs)]
        count = self.n_averaged.data
        if int(count) == 0:
            for mine, current in zip(ours, theirs):
                mine[...] = current
        elif self.multi_avg_fn is not None or self.avg_fn is None:
            for mine, current in _by_device_and_dtype(ours, theirs):
                if self.multi_avg_fn is not None:
                    self.multi_avg_fn(mine, current, count)
                elif _backend.device_of(mine[0]) == _backend.GPU:  # torch's foreach devices lerp
                    get_swa_multi_avg_fn()(mine, current, count)
                else:
                    average = get_swa_avg_fn()
                    for a, c in zip(mine, current):
                        a[...] = average(a, c, count)
        else:
            for mine, current in zip(ours, theirs):
                mine[...] = self.avg_fn(mine, current, count)
        if not self.use_buffers:  # buffers are not averaged: keep them in sync with the model
            for mine, current in zip(self.module.buffers(), model.buffers(), strict=True):
                mine.data[...] = _backend.to_device(current.data, _backend.device_of(mine.data))
        self.n_averaged.data += 1


def _by_device_and_dtype(ours, theirs) -> list:
    """Pairs of lists (averaged, current), one pair per (device, dtype), in first-seen order."""
    groups = {}
    for mine, current in zip(ours, theirs):
        pair = groups.setdefault((_backend.device_of(mine), mine.dtype), ([], []))
        pair[0].append(mine)
        pair[1].append(current)
    return list(groups.values())


def _is_batch_norm(module) -> bool:
    return callable(getattr(module, "reset_running_stats", None)) and hasattr(module, "momentum")


def update_bn(loader, model: Module, device=None) -> None:
    """Recompute the batch-norm running statistics of `model` with one pass over `loader` (cumulative averages).

    Args:
        loader: batches (a batch that is a list or tuple contributes its first element).
        model: the model whose batch-norm layers are reset and recomputed.
        device: move each batch there first.
    """
    momenta = {}
    for module in model.modules():
        if _is_batch_norm(module):
            module.reset_running_stats()
            momenta[module] = module.momentum
    if not momenta:
        return
    was_training = model.training
    model.train()
    for module in momenta:
        module.momentum = None
    with autograd.no_grad():
        for batch in loader:
            if isinstance(batch, (list, tuple)):
                batch = batch[0]
            if device is not None:
                batch = batch.to(device)
            model(batch)
    for module, momentum in momenta.items():
        module.momentum = momentum
    model.train(was_training)


class SWALR(LRScheduler):
    r"""Anneal each group's learning rate to a fixed `swa_lr` over `anneal_epochs`, then hold it.

    .. math:: \eta_t = \alpha_t \eta_{swa} + (1 - \alpha_t) \eta_{t-1}^{*}, \quad
        \alpha_t = a(\min(1, t / \text{anneal\_epochs}))

    with a(t) = (1 - cos(pi t)) / 2 ("cos") or t ("linear"), and eta* the lr the schedule started from.

    Args:
        optimizer: the optimizer.
        swa_lr: the learning rate to reach (a number, or one per group).
        anneal_epochs: epochs of the annealing phase (an int >= 0).
        anneal_strategy: "cos" or "linear".
        last_epoch: index of the last epoch; -1 starts the schedule.
    """

    def __init__(self, optimizer, swa_lr, anneal_epochs=10, anneal_strategy="cos", last_epoch=-1) -> None:
        swa_lrs = per_group("swa_lr", optimizer, swa_lr)
        for value, group in zip(swa_lrs, optimizer.param_groups, strict=True):
            group["swa_lr"] = value
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        self._set_anneal_func(anneal_strategy)
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _linear_anneal(t):
        return t

    @staticmethod
    def _cosine_anneal(t):
        return (1 - math.cos(math.pi * t)) / 2

    @staticmethod
    def _get_initial_lr(lr, swa_lr, alpha):
        if alpha == 1:
            return swa_lr
        return (lr - alpha * swa_lr) / (1 - alpha)

    def _set_anneal_func(self, anneal_strategy) -> None:
        self._anneal_strategy = anneal_strategy
        self.anneal_func = self._cosine_anneal if anneal_strategy == "cos" else self._linear_anneal

    def _resolve_options(self) -> None:
        self._set_anneal_func(self._anneal_strategy)

    def _compute_lr(self) -> list:
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        prev_alpha = self.anneal_func(max(0, min(1, (step - 1) / max(1, self.anneal_epochs))))
        prev_lrs = [self._get_initial_lr(group["lr"], group["swa_lr"], prev_alpha)
                    for group in self.optimizer.param_groups]
        alpha = self.anneal_func(max(0, min(1, step / max(1, self.anneal_epochs))))
        return [group["swa_lr"] * alpha + lr * (1 - alpha)
                for group, lr in zip(self.optimizer.param_groups, prev_lrs, strict=True)]
