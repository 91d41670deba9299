"""Optimizer: parameter groups, per-parameter state, the step driver, zero_grad, state dicts and hooks.

Two kinds of subclass work with it:

* a plain one that defines `__init__` and `step` (PyTorch style), reading `self.param_groups` and
  `self.state`; everything else here (groups, state dicts, hooks) just works;
* an elementwise one that sets `rule` (an `ElementwiseRule`) and describes its state, flags and per-step
  coefficients (`rule`, `scalar_state`, `_state_init`, `_flags`, `_step_coefficients`). Its
  parameters then live in flat buffers (`_flat.py`) and `step()` runs the rule once over each buffer
  (or once per parameter, with the same numbers, when some gradients are missing or `fused=False`).
"""

from __future__ import annotations

import functools
from collections import OrderedDict, defaultdict

import numpy as np

from .. import _backend, autograd, dtypes
from ..tensor import Tensor
from ._flat import FlatBuffer
from ._state import load_optimizer_state, optimizer_state_dict


class _RequiredParameter:
    """Marks a hyperparameter without a default (a group must give it)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()
_SET_MESSAGE = ("optimizer parameters need to be organized in ordered collections, but the ordering of "
                "tensors in sets will change between runs. Please use a list instead.")


def _with_step_hooks(step):
    """Wrap a subclass's `step` so registered pre/post hooks run once around the outermost call."""
    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        if self.__dict__.get("_in_step"):
            return step(self, *args, **kwargs)
        for hook in list(self._step_pre_hooks.values()):
            changed = hook(self, args, kwargs)
            if changed is not None:
                args, kwargs = changed
        self._in_step = True
        try:
            out = step(self, *args, **kwargs)
        finally:
            self._in_step = False
        self._step_count += 1
        for hook in list(self._step_post_hooks.values()):
            hook(self, args, kwargs)
        return out
    wrapper._lucid_hooked = True
    return wrapper


class _HookHandle:
    def __init__(self, table: OrderedDict, key: int):
        self._table, self._key = table, key

    def remove(self) -> None:
        self._table.pop(self._key, None)


class Optimizer:
    """Base class of all optimizers, with torch.optim.Optimizer's API.

    Args:
        params: an iterable of Parameters, of (name, Parameter) pairs, or of dicts (parameter groups,
            each with a "params" entry and any hyperparameters that differ from the defaults).
        defaults: hyperparameter defaults, filled into every group that lacks them.
    """

    rule = None  # an ElementwiseRule for elementwise optimizers; None for plain ones
    scalar_state = ("step",)  # names of the per-parameter scalar state an elementwise optimizer keeps
    eager_state = False  # create state at construction (PyTorch's Adagrad does) instead of at first step
    requires_closure = False  # step() re-evaluates the model itself (LBFGS): wrappers must pass a closure

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_lucid_hooked", False):
            cls.step = _with_step_hooks(step)

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state = defaultdict(dict)
        self.param_groups = []
        self._flat = []  # per group: list of FlatBuffer (elementwise optimizers only)
        self._step_pre_hooks, self._step_post_hooks = OrderedDict(), OrderedDict()
        self._hook_id = 0
        self._step_count = 0
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or "
                            f"dicts, but got {type(params).__name__}")
        if isinstance(params, set):
            raise TypeError(_SET_MESSAGE)
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------ groups

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters (with its own hyperparameters) to optimize."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(_SET_MESSAGE)
        params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names and len(names) != len(params):
            raise ValueError("all optimizer params should be with/without names. Some param names are missing")
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = params
        if names:
            group["param_names"] = names
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization "
                                 f"parameter {name}")
            group.setdefault(name, default)
        self.param_groups.append(group)
        self._flat.append(self._build_flat(group) if self.rule is not None else None)
        if self.eager_state and self.rule is not None:
            for flat in self._flat[-1]:
                for i in range(len(flat.params)):
                    self._init_param_state(flat, i, group)

    # ------------------------------------------------------------------ gradients

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized parameters (to None, or to zeros in place)."""
        for group, flats in zip(self.param_groups, self._flat):
            if flats is not None and all(f.is_intact() for f in flats):
                for flat in flats:
                    flat.zero_grad(set_to_none)
                continue
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.fill(0)

    # ------------------------------------------------------------------ step

    def step(self, closure=None):
        """Perform one optimization step; `closure` re-evaluates the model and returns the loss."""
        if self.rule is None:
            raise NotImplementedError(f"{type(self).__name__} must implement step()")
        loss = None
        if closure is not None:
            with autograd.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            for flat in self._flat_buffers(index):
                self._step_flat(group, flat)
        return loss

    def _step_flat(self, group, flat) -> None:
        """Run the rule over one flat buffer: one call per run of parameters that can step together.

        Only the range the buffer's state storage covers is updated: all of it normally, this rank's
        slice when the state is sharded (the storage decides; see `_flat.FullStorage`).
        """
        present = flat.gather_grads()
        runs = self._runs(group, flat, present)
        befores = [dict(self.state[flat.params[first]]) for first, _ in runs]  # before state creation
        for i, has_grad in enumerate(present):
            if has_grad:
                self._init_param_state(flat, i, group)
        flags = self._flags(group)
        active = tuple(self._state_init(group))
        low, high = flat.storage.span
        for (first, last), before in zip(runs, befores):
            coefficients, scalars = self._step_coefficients(group, before)
            start, stop = max(flat.offsets[first], low), min(flat.span(last - 1)[1], high)
            if start < stop:
                self.rule.apply(flat.data[start:stop], flat.grad[start:stop],
                                flat.storage.arrays(active, start, stop), coefficients, flags)
            for p in flat.params[first:last]:
                self.state[p].update(scalars)

    def _runs(self, group, flat, present):
        """Ranges [first, last) of consecutive parameters with a gradient and equal scalar state."""
        runs, first, first_key = [], None, None
        per_parameter = group.get("fused") is False
        for i, has_grad in enumerate(present + [False]):
            key = self._run_key(self.state.get(flat.params[i])) if has_grad else None
            if first is not None and (not has_grad or per_parameter or key != first_key):
                runs.append((first, i))
                first = None
            if has_grad and first is None:
                first, first_key = i, key
        return runs

    # ------------------------------------------------------------------ elementwise subclass protocol

    def _state_init(self, group) -> dict:
        """State arrays this group uses -> the value each starts at."""
        return {}

    def _flags(self, group) -> dict:
        """The rule's flags for this group."""
        return {}

    def _initial_scalars(self, group) -> dict:
        """Scalar state of a parameter whose state is created before its first step (`eager_state`)."""
        return {"step": 0}

    def _step_coefficients(self, group, before: dict) -> tuple:
        """(the rule's coefficients for this step, the scalar state after it), given the state before it.

        `before` is the parameter's state before this step: empty on its first step.
        """
        raise NotImplementedError

    def _run_key(self, state) -> tuple:
        """Parameters whose keys are equal share their coefficients, so one rule call covers them."""
        return tuple(state.get(name) for name in self.scalar_state) if state else ()

    # ------------------------------------------------------------------ flat buffers and state storage

    def _build_flat(self, group) -> list:
        """One FlatBuffer per (device, dtype) among the group's parameters."""
        by_kind = {}
        for p in group["params"]:
            by_kind.setdefault((_backend.device_of(p.data), p.data.dtype), []).append(p)
        return [FlatBuffer(params) for params in by_kind.values()]

    def _flat_buffers(self, index: int, pad_to: int = 1) -> list:
        """The group's flat buffers, rebuilt first if a parameter's `.data` was rebound or padding changed."""
        flats = self._flat[index]
        if all(f.is_intact() and f.size % pad_to == 0 for f in flats):
            return flats
        group = self.param_groups[index]
        saved = [(p, dict(self.state[p])) for f in flats for p in f.params if self.state.get(p)]
        for flat in flats:
            flat.detach()
        by_kind = {}
        for p in group["params"]:
            by_kind.setdefault((_backend.device_of(p.data), p.data.dtype), []).append(p)
        self._flat[index] = [FlatBuffer(params, pad_to) for params in by_kind.values()]
        for p, state in saved:
            self._restore_param_state(p, state, group)
        return self._flat[index]

    def _locate(self, p, group_index: int):
        for flat in self._flat_buffers(group_index):
            for i, q in enumerate(flat.params):
                if q is p:
                    return flat, i
        raise KeyError("parameter not in this group")

    def _init_param_state(self, flat, i, group) -> None:
        """Create the state of parameter i (views into the flat state arrays) where it is missing."""
        p = flat.params[i]
        state = self.state[p]
        for name, start in self._state_init(group).items():
            if name not in state:
                view = flat.storage.view(name, i)
                view.fill(start)
                state[name] = view
        if self.eager_state:
            for name, value in self._initial_scalars(group).items():
                state.setdefault(name, value)

    def _restore_param_state(self, p, values: dict, group) -> None:
        """Put saved state values (arrays and scalars) into parameter p's storage."""
        index = next(k for k, g in enumerate(self.param_groups) if g is group)
        flat, i = self._locate(p, index)
        state = self.state[p]
        state.clear()
        for name, value in values.items():
            if isinstance(value, (np.ndarray,)) or _backend.is_gpu_array(value):
                if value.ndim == 0:
                    state[name] = self._scalar_value(name, value)
                    continue
                state[name] = flat.storage.load(name, i, value)
            else:
                state[name] = self._scalar_value(name, value)

    def _scalar_value(self, name, value):
        """A scalar state value as lucid keeps it: `step` an int, the rest rounded like PyTorch's scalars."""
        value = float(np.asarray(_backend.to_host(value)))
        return int(round(value)) if name == "step" else float(scalar_dtype().type(value))

    # ------------------------------------------------------------------ state dicts

    def state_dict(self) -> dict:
        """The state in PyTorch's layout: {"state": {id: {name: value}}, "param_groups": [...]}.

        Ids number the parameters across groups in order; arrays are host NumPy copies and scalar
        state is a 0-d array, whichever path (fused, per-parameter, sharded) produced it.
        """
        return optimizer_state_dict(self)

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict (from `state_dict()`, any path, or PyTorch's layout) onto the live parameters.

        Raises:
            ValueError: when the group count, a group's size, a state array's shape or a required
                state key differs; nothing is changed then.
        """
        load_optimizer_state(self, state_dict)

    # ------------------------------------------------------------------ hooks and printing

    def register_step_pre_hook(self, hook):
        """Call `hook(optimizer, args, kwargs)` before each step; it may return new (args, kwargs)."""
        return self._add_hook(self._step_pre_hooks, hook)

    def register_step_post_hook(self, hook):
        """Call `hook(optimizer, args, kwargs)` after each step."""
        return self._add_hook(self._step_post_hooks, hook)

    def _add_hook(self, table, hook):
        self._hook_id += 1
        table[self._hook_id] = hook
        return _HookHandle(table, self._hook_id)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines) + "\n)"


Optimizer.step = _with_step_hooks(Optimizer.step)  # subclasses' own steps are wrapped in __init_subclass__


def scalar_dtype() -> np.dtype:
    """The dtype PyTorch keeps scalar state in: float64 when the default dtype is float64, else float32."""
    return np.dtype(np.float64) if dtypes.get_default_dtype() == np.float64 else np.dtype(np.float32)
