"""Optimizer: parameter groups, per-parameter state, the step driver, zero_grad, state dicts and hooks.

Two kinds of subclass work with it:

* a plain one that defines `__init__` and `step` (PyTorch style), reading `self.param_groups` and
  `self.state`; everything else here (groups, state dicts, hooks) just works;
* an elementwise one that sets `rule` and defines `state_init`, `rule_flags` and `step_coefficients`
  (the protocol, with a worked example, is documented in `lucid.optim.elementwise`). Its parameters
  then live in flat buffers (`_flat.py`) and `step()` runs the rule once over each run of parameters
  whose coefficients agree (`_fused.py`), or once per parameter with `fused=False`.
"""

from __future__ import annotations

import functools
import warnings
from collections import OrderedDict, defaultdict

import numpy as np

from .. import _backend, autograd, dtypes
from ..tensor import Tensor
from . import _fused
from ._flat import FlatBuffer
from ._state import load_optimizer_state, optimizer_state_dict


class _RequiredParameter:
    """Marks a hyperparameter without a default (a group must give it)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()
_SET_MESSAGE = ("optimizer parameters need to be organized in ordered collections, but the ordering of "
                "tensors in sets will change between runs. Please use a list instead.")
_DUPLICATE_MESSAGE = ("optimizer contains a parameter group with duplicate parameters; in future, this will "
                      "cause an error; see github.com/pytorch/pytorch/issues/40967 for more information")


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


class HookHandle:
    """What `register_*_hook` returns: `remove()` (or leaving a `with` block) unregisters the hook."""

    _next_id = 0

    def __init__(self, table: OrderedDict):
        self._table = table
        self.id = HookHandle._next_id
        HookHandle._next_id += 1

    def remove(self) -> None:
        self._table.pop(self.id, None)

    def __enter__(self) -> "HookHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class Optimizer:
    """Base class of all optimizers, with torch.optim.Optimizer's API.

    Args:
        params: an iterable of Parameters, of (name, Parameter) pairs, or of dicts (parameter groups,
            each with a "params" entry and any hyperparameters that differ from the defaults).
        defaults: hyperparameter defaults, filled into every group that lacks them.
    """

    rule = None  # an ElementwiseRule for elementwise optimizers; None for plain ones
    scalar_state = ("step",)  # names of the per-parameter scalar state an elementwise optimizer keeps
    number_state = ()  # scalar state PyTorch keeps as Python numbers, not 0-d tensors (SparseAdam's step)
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
        self._state_dict_pre_hooks, self._state_dict_post_hooks = OrderedDict(), OrderedDict()
        self._load_state_dict_pre_hooks, self._load_state_dict_post_hooks = OrderedDict(), OrderedDict()
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

    @property
    def elementwise(self) -> bool:
        """True when this optimizer's update is an elementwise rule (its state splits by element)."""
        return self.rule is not None

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
        group["params"] = params
        if names:
            group["param_names"] = names
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization "
                                 f"parameter {name}")
            group.setdefault(name, default)
        if len({id(p) for p in params}) != len(params):
            warnings.warn(_DUPLICATE_MESSAGE, UserWarning, stacklevel=3)
        for existing in self.param_groups:
            if ("param_names" in group) != ("param_names" in existing):
                kind = "with names" if "param_names" in group else "without names"
                raise ValueError("all optimizer param groups should be with/without names. "
                                 f"cannot add param group {kind} to the optimizer")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        if self.rule is not None:
            complex_params = [[len(self.param_groups), i] for i, p in enumerate(params) if p.dtype.kind == "c"]
            if complex_params:  # the rules are real arithmetic: complex numbers would give wrong updates
                raise ValueError(f"Complex params at indices {complex_params}: {type(self).__name__} does not "
                                 "support complex parameters")
            _fused.check_protocol(self, group)
        self.param_groups.append(group)
        self._flat.append(self._build_flat(group) if self.rule is not None else None)
        if self.eager_state and self.rule is not None:
            init = self.state_init(group)
            for flat in self._flat[-1]:
                for i in range(len(flat.params)):
                    _fused.init_param_state(self, flat, i, group, init)

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
            for flat in self.flat_buffers(index):
                _fused.step_flat(self, group, flat)
        return loss

    # ------------------------------------------------------------------ the elementwise protocol

    def state_init(self, group) -> dict:
        """The per-element state this group uses -> the value each starts at."""
        return {}

    def rule_flags(self, group) -> dict:
        """The rule's flags for this group."""
        return {}

    def initial_scalars(self, group) -> dict:
        """Scalar state of a parameter whose state is created before its first step (`eager_state`)."""
        return {"step": 0}

    def step_coefficients(self, group, state: dict) -> tuple:
        """(the rule's coefficients for this step by name, the scalar state after it), given the state before it.

        `state` is the parameter's state before this step: empty on its first step. Read it, never change it.
        """
        raise NotImplementedError(f"{type(self).__name__} must define step_coefficients()")

    # ------------------------------------------------------------------ flat buffers and state storage

    def flat_buffers(self, index: int, pad_to: int = 1) -> list:
        """Group `index`'s flat buffers (one per device and dtype) of an elementwise optimizer.

        Rebuilt first, keeping the state, when a parameter's `.data` was rebound or when every buffer's
        length must be a multiple of `pad_to` (sharding pads to the world size) and is not.
        """
        flats = self._flat[index]
        if all(f.is_intact() and f.size % pad_to == 0 for f in flats):
            return flats
        group = self.param_groups[index]
        saved = [(p, dict(self.state[p])) for f in flats for p in f.params if self.state.get(p)]
        for flat in flats:
            flat.detach()
        self._flat[index] = self._build_flat(group, pad_to)
        for p, state in saved:
            self._restore_param_state(p, state, group)
        return self._flat[index]

    def _build_flat(self, group, pad_to: int = 1) -> list:
        """One FlatBuffer per (device, dtype) among the group's parameters (each parameter once)."""
        by_kind, seen = {}, set()
        for p in group["params"]:
            if id(p) not in seen:
                seen.add(id(p))
                by_kind.setdefault((_backend.device_of(p.data), p.data.dtype), []).append(p)
        return [FlatBuffer(params, pad_to) for params in by_kind.values()]

    def _restore_param_state(self, p, values: dict, group) -> None:
        """Put saved state values (arrays and scalars, told apart by name) into parameter p's storage."""
        index = next(k for k, g in enumerate(self.param_groups) if g is group)
        flat, i = next((f, i) for f in self.flat_buffers(index) for i, q in enumerate(f.params) if q is p)
        _fused.restore_param_state(self, flat, i, values)

    def scalar_value(self, name: str, value):
        """A saved scalar state value as lucid keeps it: `step` an int, the rest rounded like PyTorch's scalars."""
        value = float(np.asarray(_backend.to_host(value)))
        return int(round(value)) if name == "step" else float(scalar_dtype().type(value))

    # ------------------------------------------------------------------ state dicts

    def state_dict(self) -> dict:
        """The state in PyTorch's layout: {"state": {id: {name: value}}, "param_groups": [...]}.

        Ids number the parameters across groups in order; arrays are host NumPy copies and scalar
        state is a 0-d array (a number where PyTorch keeps one), whichever path (fused,
        per-parameter, sharded) produced it. State-dict pre hooks run first, post hooks after (each
        may return a replacement dict).
        """
        for hook in list(self._state_dict_pre_hooks.values()):
            hook(self)
        state_dict = optimizer_state_dict(self)
        for hook in list(self._state_dict_post_hooks.values()):
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict (from `state_dict()`, any path, or PyTorch's layout) onto the live parameters.

        Groups saved before a hyperparameter existed get it from this optimizer's defaults; `step`
        may be a number or a 0-d array; saved `param_names` replace the live ones, and live names
        stay when the dict has none. Load pre hooks may return a replacement dict; post hooks run after.

        Raises:
            ValueError: when the group count, a group's size, a state array's shape or a required
                state key differs; nothing is changed then.
        """
        state_dict = dict(state_dict)
        for hook in list(self._load_state_dict_pre_hooks.values()):
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        load_optimizer_state(self, state_dict)
        for hook in list(self._load_state_dict_post_hooks.values()):
            hook(self)

    # ------------------------------------------------------------------ hooks and printing

    def register_step_pre_hook(self, hook) -> HookHandle:
        """Call `hook(optimizer, args, kwargs)` before each step; it may return new (args, kwargs)."""
        return _add_hook(self._step_pre_hooks, hook)

    def register_step_post_hook(self, hook) -> HookHandle:
        """Call `hook(optimizer, args, kwargs)` after each step."""
        return _add_hook(self._step_post_hooks, hook)

    def register_state_dict_pre_hook(self, hook, prepend: bool = False) -> HookHandle:
        """Call `hook(optimizer)` before `state_dict()` builds the dict (first with `prepend`)."""
        return _add_hook(self._state_dict_pre_hooks, hook, prepend)

    def register_state_dict_post_hook(self, hook, prepend: bool = False) -> HookHandle:
        """Call `hook(optimizer, state_dict)` after `state_dict()`; a returned dict replaces it."""
        return _add_hook(self._state_dict_post_hooks, hook, prepend)

    def register_load_state_dict_pre_hook(self, hook, prepend: bool = False) -> HookHandle:
        """Call `hook(optimizer, state_dict)` (a shallow copy) before loading; a returned dict is loaded."""
        return _add_hook(self._load_state_dict_pre_hooks, hook, prepend)

    def register_load_state_dict_post_hook(self, hook, prepend: bool = False) -> HookHandle:
        """Call `hook(optimizer)` after `load_state_dict()` has loaded."""
        return _add_hook(self._load_state_dict_post_hooks, hook, prepend)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines) + "\n)"


Optimizer.step = _with_step_hooks(Optimizer.step)  # subclasses' own steps are wrapped in __init_subclass__


def _add_hook(table: OrderedDict, hook, prepend: bool = False) -> HookHandle:
    handle = HookHandle(table)
    table[handle.id] = hook
    if prepend:
        table.move_to_end(handle.id, last=False)
    return handle


def scalar_dtype() -> np.dtype:
    """The dtype PyTorch keeps scalar state in: float64 when the default dtype is float64, else float32."""
    return np.dtype(np.float64) if dtypes.get_default_dtype() == np.float64 else np.dtype(np.float32)
