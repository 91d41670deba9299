"""Optimizer state dicts in PyTorch's layout: packing the live state, and validating and loading one."""

from __future__ import annotations

import copy

import numpy as np

from .. import _backend


def _export_value(value, scalar_dtype):
    if isinstance(value, np.ndarray) or _backend.is_gpu_array(value):
        return np.array(_backend.to_host(value), copy=True)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return np.array(value, dtype=scalar_dtype)
    return copy.deepcopy(value)


def optimizer_state_dict(optimizer) -> dict:
    """{"state": {id: {name: value}}, "param_groups": [{..., "params": [id, ...]}]} with host copies."""
    from .optimizer import scalar_dtype
    ids, groups = {}, []
    for group in optimizer.param_groups:
        packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
        for p in group["params"]:
            ids.setdefault(id(p), len(ids))
        packed["params"] = [ids[id(p)] for p in group["params"]]
        groups.append(packed)
    dtype = scalar_dtype()
    state = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            values = optimizer.state.get(p)
            if values:
                state[ids[id(p)]] = {k: _export_value(v, dtype) for k, v in values.items()}
    return {"state": state, "param_groups": groups}


def _check_shapes(optimizer, saved_groups, saved_state):
    """Raise ValueError naming the first parameter whose saved state does not fit."""
    for group, saved in zip(optimizer.param_groups, saved_groups):
        required = set()
        if optimizer.rule is not None:
            settings = {**group, **{k: v for k, v in saved.items() if k != "params"}}
            required = set(optimizer._state_init(settings)) | set(optimizer.scalar_state)
        for p, pid in zip(group["params"], saved["params"]):
            values = saved_state.get(pid)
            if not values:
                continue
            missing = sorted(required - set(values))
            if missing:
                raise ValueError(f"loaded state dict is missing state {missing} for parameter {pid} "
                                 f"(a {type(optimizer).__name__} needs {sorted(required)})")
            for name, value in values.items():
                shape = getattr(value, "shape", None)
                if shape is not None and len(shape) > 0 and tuple(shape) != tuple(p.shape):
                    raise ValueError(f"loaded state '{name}' of parameter {pid} has shape {tuple(shape)}, "
                                     f"but the parameter has shape {tuple(p.shape)}")


def load_optimizer_state(optimizer, state_dict: dict) -> None:
    """Validate `state_dict` against the optimizer's groups, then load it onto the live parameters."""
    saved_groups = state_dict["param_groups"]
    saved_state = state_dict["state"]
    if len(saved_groups) != len(optimizer.param_groups):
        raise ValueError(f"loaded state dict has a different number of parameter groups "
                         f"({len(saved_groups)} saved, {len(optimizer.param_groups)} in the optimizer)")
    for k, (group, saved) in enumerate(zip(optimizer.param_groups, saved_groups)):
        if len(group["params"]) != len(saved["params"]):
            raise ValueError(f"loaded state dict contains a parameter group that doesn't match the size "
                             f"of optimizer's group (group {k}: {len(saved['params'])} saved, "
                             f"{len(group['params'])} in the optimizer)")
    saved_state = {int(k): v for k, v in saved_state.items()}
    _check_shapes(optimizer, saved_groups, saved_state)
    for group, saved in zip(optimizer.param_groups, saved_groups):
        params = group["params"]
        new = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
        group.clear()
        group.update(new)
        group["params"] = params
    for group, saved in zip(optimizer.param_groups, saved_groups):
        for p, pid in zip(group["params"], saved["params"]):
            values = saved_state.get(pid)
            optimizer.state.pop(p, None)
            if not values:
                continue
            if optimizer.rule is not None:
                optimizer._restore_param_state(p, values, group)
            else:
                optimizer.state[p] = {name: _import_plain(value, p) for name, value in values.items()}


def _import_plain(value, p):
    """A saved value for a plain optimizer: arrays go to the parameter's device and dtype."""
    if isinstance(value, np.ndarray) or _backend.is_gpu_array(value):
        if value.ndim and value.dtype.kind == "f":
            value = value.astype(p.dtype, copy=True)
        return _backend.to_device(value, p.device) if value.ndim else value.copy()
    return copy.deepcopy(value)
