"""Optimizer state dicts in PyTorch's layout: packing the live state, and validating and loading one."""

from __future__ import annotations

import copy

import numpy as np

from .. import _backend
from . import _hyper


def _export_value(value, scalar_dtype):
    """A host copy of a state value: arrays (also inside lists, tuples and dicts) become NumPy copies.

    With `scalar_dtype`, numbers become 0-d arrays of it (an elementwise optimizer's scalar state, kept
    as PyTorch keeps its scalar tensors); without, they stay as the optimizer stored them.
    """
    if isinstance(value, np.ndarray) or _backend.is_gpu_array(value):
        return np.array(_backend.to_host(value), copy=True)
    if isinstance(value, (list, tuple)):
        return type(value)(_export_value(v, scalar_dtype) for v in value)
    if isinstance(value, dict):
        return {k: _export_value(v, scalar_dtype) for k, v in value.items()}
    if scalar_dtype is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        return np.array(value, dtype=scalar_dtype)
    return copy.deepcopy(value)


def _export_group_value(value):
    """A group's hyperparameter for the dict: tensors (also inside tuples, as betas) as host arrays."""
    if isinstance(value, tuple):
        return tuple(_export_group_value(v) for v in value)
    if _hyper.is_tensor(value):
        return _hyper.host_copy(value)
    return copy.deepcopy(value)


def optimizer_state_dict(optimizer) -> dict:
    """{"state": {id: {name: value}}, "param_groups": [{..., "params": [id, ...]}]} with host copies.

    Ids count parameters in group order as PyTorch counts them: a parameter repeated in a group
    keeps its first id, and each group's ids start after all the slots of the groups before it.
    """
    from .optimizer import scalar_dtype
    ids, groups, start = {}, [], 0
    for group in optimizer.param_groups:
        packed = {k: _export_group_value(v) for k, v in group.items() if k != "params"}
        for k, p in enumerate(group["params"], start):
            ids.setdefault(id(p), k)
        packed["params"] = [ids[id(p)] for p in group["params"]]
        start += len(group["params"])
        groups.append(packed)
    dtype = scalar_dtype() if optimizer.rule is not None else None
    state = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            values = optimizer.state.get(p)
            if values and ids[id(p)] not in state:
                state[ids[id(p)]] = {k: _export_value(v, None if k in optimizer.number_state else dtype)
                                     for k, v in values.items()}
    return {"state": state, "param_groups": groups}


def _check_shapes(optimizer, loaded_groups, saved_groups, saved_state):
    """Raise ValueError naming the first parameter whose saved elementwise state does not fit.

    Only elementwise optimizers are checked: their state is per element by construction. A plain
    optimizer's state is its own business (LBFGS keeps flat vectors under its first parameter).
    """
    if optimizer.rule is None:
        return
    for group, saved in zip(loaded_groups, saved_groups):
        per_element = list(optimizer.state_init(group))
        required = set(per_element) | set(optimizer.scalar_state)
        for p, pid in zip(group["params"], saved["params"]):
            values = saved_state.get(pid)
            if not values:
                continue
            missing = sorted(required - set(values))
            if missing:
                raise ValueError(f"loaded state dict is missing state {missing} for parameter {pid} "
                                 f"(a {type(optimizer).__name__} needs {sorted(required)})")
            for name in (n for n in values if n in optimizer.rule.state):
                shape = getattr(values[name], "shape", None)
                if shape is None or tuple(shape) != tuple(p.shape):
                    raise ValueError(f"loaded state '{name}' of parameter {pid} has shape "
                                     f"{None if shape is None else tuple(shape)}, but the parameter has "
                                     f"shape {tuple(p.shape)}")


def _check_sizes(optimizer, saved_groups) -> None:
    if len(saved_groups) != len(optimizer.param_groups):
        raise ValueError(f"loaded state dict has a different number of parameter groups "
                         f"({len(saved_groups)} saved, {len(optimizer.param_groups)} in the optimizer)")
    for k, (group, saved) in enumerate(zip(optimizer.param_groups, saved_groups)):
        if len(group["params"]) != len(saved["params"]):
            raise ValueError(f"loaded state dict contains a parameter group that doesn't match the size "
                             f"of optimizer's group (group {k}: {len(saved['params'])} saved, "
                             f"{len(group['params'])} in the optimizer)")


def _loaded_group(optimizer, live: dict, saved: dict) -> dict:
    """The saved group's settings on the live parameters; keys it predates come from the live defaults,
    and the live `param_names` stay when the saved group has none (PyTorch's `__setstate__` rules)."""
    group = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
    for name, default in optimizer.defaults.items():
        group.setdefault(name, copy.deepcopy(default))
    if "param_names" in live and "param_names" not in group:
        group["param_names"] = live["param_names"]
    group["params"] = live["params"]
    return group


def load_optimizer_state(optimizer, state_dict: dict) -> None:
    """Validate `state_dict` against the optimizer's groups, then load it onto the live parameters."""
    saved_groups = state_dict["param_groups"]
    _check_sizes(optimizer, saved_groups)
    saved_state = {int(k): v for k, v in state_dict["state"].items()}
    loaded = [_loaded_group(optimizer, live, saved) for live, saved in zip(optimizer.param_groups, saved_groups)]
    _check_shapes(optimizer, loaded, saved_groups, saved_state)
    for group, new in zip(optimizer.param_groups, loaded):
        group.clear()
        group.update(new)
    for group, saved in zip(optimizer.param_groups, saved_groups):
        for p, pid in zip(group["params"], saved["params"]):
            values = saved_state.get(pid)
            optimizer.state.pop(p, None)
            if not values:
                continue
            if optimizer.rule is not None:
                optimizer._restore_param_state(p, values, group)
            else:
                optimizer.state[p] = _import_plain(values, p)


def _import_plain(value, p, key=None):
    """A saved value for a plain optimizer, cast as PyTorch casts it: arrays (0-d ones too, and inside
    lists, tuples and dicts) move to the parameter's device, floating ones take its dtype; `step` is
    kept as saved. Other values are copied."""
    if isinstance(value, np.ndarray) or _backend.is_gpu_array(value):
        if key == "step":
            return value.copy()
        if value.dtype.kind == "f":
            value = value.astype(p.dtype, copy=True)
        return _backend.to_device(value.copy(), p.device)
    if isinstance(value, (list, tuple)):
        return type(value)(_import_plain(v, p) for v in value)
    if isinstance(value, dict):
        return {k: _import_plain(v, p, k) for k, v in value.items()}
    return copy.deepcopy(value)
