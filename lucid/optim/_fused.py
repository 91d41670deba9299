"""The step of an elementwise optimizer over one flat buffer, and its per-parameter state in flat storage.

Each parameter with a gradient gets its coefficients for this step from the optimizer's
`step_coefficients(group, state)`; consecutive parameters whose computed coefficients are equal form
a run, and the rule runs once per run over that range of the flat buffer (once per parameter with
`fused=False`). Parameters alike in what coefficients may depend on by the protocol
(`lucid.optim.elementwise`: scalar state and which state exists) share one computation.

State lives in the buffer's storage (`_flat.FullStorage`, or a shard of it when the state is sharded):
per-element state as views into flat arrays, scalar state (told apart by its name) as numbers.
"""

from __future__ import annotations

import numpy as np

from .. import _backend


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) or _backend.is_gpu_array(value)


def check_protocol(optimizer, group) -> None:
    """Raise TypeError unless the group's coefficients, flags, state and scalars fit the optimizer's rule."""
    rule = optimizer.rule
    coefficients, scalars = optimizer.step_coefficients(group, {})
    rule.check(coefficients, optimizer.rule_flags(group))
    name = type(optimizer).__name__
    unknown = [s for s in optimizer.state_init(group) if s not in rule.state]
    if unknown:
        raise TypeError(f"{name}.state_init names state {unknown} that the rule {rule.name} does not have")
    undeclared = [s for s in scalars if s not in optimizer.scalar_state]
    if undeclared:
        raise TypeError(f"{name}.step_coefficients returns scalar state {undeclared} missing from "
                        f"{name}.scalar_state {optimizer.scalar_state}")


_NO_STATE = object()  # the key of parameters that have no state yet


def plan_runs(optimizer, group, flat, present, init_names) -> tuple:
    """The runs of parameters that step together, and which parameters need state created.

    Returns ([[first, last, coefficients, [scalars after, per parameter]], ...], [index, ...]). By the
    protocol, coefficients depend only on the group, the scalar state (`scalar_state`) and which
    per-element state exists: parameters alike in those share one computation.
    """
    per_parameter = group.get("fused") is False
    scalar_names, states, params = optimizer.scalar_state, optimizer.state, flat.params
    computed, runs, fresh = {}, [], []
    last = None
    for i, has_grad in enumerate(present):
        if not has_grad:
            continue
        state = states.get(params[i])
        if state:
            exists = tuple(map(state.__contains__, init_names))
            if not all(exists):
                fresh.append(i)
            key = (*map(state.get, scalar_names), exists)
        else:
            state, key = {}, _NO_STATE
            fresh.append(i)
        try:
            result = computed.get(key)
        except TypeError:  # an unhashable scalar: compute it every time
            key, result = None, None
        if result is None:
            result = optimizer.step_coefficients(group, state)
            if key is not None:
                computed[key] = result
        coefficients, scalars = result
        if last is not None and not per_parameter and last[1] == i and (
                last[2] is coefficients or last[2] == coefficients):
            last[1] = i + 1
            last[3].append(scalars)
        else:
            last = [i, i + 1, coefficients, [scalars]]
            runs.append(last)
    return runs, fresh


def step_flat(optimizer, group, flat) -> None:
    """Run the rule over one flat buffer: one call per run of parameters that step together.

    Only the range the buffer's state storage covers is updated: all of it normally, this rank's
    slice when the state is sharded (the storage decides; see `_flat.FullStorage`).
    """
    present = flat.gather_grads()
    init = optimizer.state_init(group)
    runs, fresh = plan_runs(optimizer, group, flat, present, tuple(init))  # before state creation
    if not runs:
        return
    for i in fresh:
        init_param_state(optimizer, flat, i, group, init)
    flags = optimizer.rule_flags(group)
    active = tuple(init)
    low, high = flat.storage.span
    states = optimizer.state
    for first, last, coefficients, scalars in runs:
        start, stop = max(flat.offsets[first], low), min(flat.span(last - 1)[1], high)
        if start < stop:
            optimizer.rule.apply(flat.data[start:stop], flat.grad[start:stop],
                                 flat.storage.arrays(active, start, stop), coefficients, flags)
        if any(scalars):
            for p, after in zip(flat.params[first:last], scalars):
                states[p].update(after)


def init_param_state(optimizer, flat, i, group, init: dict) -> None:
    """Create parameter i's state (views into the flat state arrays, filled with `init`) where missing."""
    state = optimizer.state[flat.params[i]]
    for name, start in init.items():
        if name not in state:
            view = flat.storage.view(name, i)
            view.fill(start)
            state[name] = view
    if optimizer.eager_state:
        for name, value in optimizer.initial_scalars(group).items():
            state.setdefault(name, value)


def restore_param_state(optimizer, flat, i, values: dict) -> None:
    """Put saved values into parameter i's state: scalar state (by name) as numbers, the rule's state
    into flat storage; anything else is kept as a copy, as PyTorch keeps unknown state."""
    state = optimizer.state[flat.params[i]]
    state.clear()
    for name, value in values.items():
        if name in optimizer.scalar_state:
            state[name] = optimizer.scalar_value(name, value)
        elif name in optimizer.rule.state and _is_array(value):
            state[name] = flat.storage.load(name, i, value)
        else:
            state[name] = value.copy() if _is_array(value) else value
