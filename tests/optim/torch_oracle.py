"""PyTorch as the oracle: its own optimizer test configurations, and conversions between torch and lucid.

The configurations are read at run time from the installed wheel's
`torch/testing/_internal/common_optimizers.py` (`optim_db`: each OptimizerInfo's `optim_inputs_func` and
`optim_error_inputs_func`); importing it needs torch and `expecttest`. Without either, `load()` returns
None and the cross-check tests skip.
"""

import copy

import numpy as np

import lucid
from lucid import nn

PLAIN = ("LBFGS", "Adafactor", "Muon")  # no flat-buffer step: no fused / per-parameter choice


def load():
    """(torch, common_optimizers) or None when torch or its test helpers do not import."""
    try:
        import torch
        from torch.testing._internal import common_optimizers
    except ImportError:
        return None
    return torch, common_optimizers


def infos(common):
    return {info.optim_cls.__name__: info for info in common.optim_db}


def inputs(info, kind: str, torch):
    """An OptimizerInfo's inputs on the CPU: "configs" (OptimizerInput) or "errors" (ErrorOptimizerInput)."""
    function = info.optim_inputs_func if kind == "configs" else info.optim_error_inputs_func
    return function(device="cpu", dtype=torch.get_default_dtype())


def table(oracle, kind: str):
    """[(optimizer name, index, description)] of every input of `kind`, as PyTorch lists them."""
    if oracle is None:
        return []
    torch, common = oracle
    rows = []
    for name, info in infos(common).items():
        for k, inp in enumerate(inputs(info, kind, torch)):
            rows.append((name, k, inp.desc if kind == "configs" else inp.optimizer_error_input.desc))
    return rows


def to_lucid(value, torch, memo):
    """A torch value as lucid's: tensors -> lucid Tensors (Parameters stay Parameters, the same torch
    tensor twice gives the same lucid one), containers converted inside; everything else as it is."""
    if isinstance(value, torch.Tensor):
        key = id(value)
        if key not in memo:
            data = value.detach().numpy().copy()
            if isinstance(value, torch.nn.Parameter) and data.dtype.kind == "f":
                converted = nn.Parameter(data)
            else:
                converted = lucid.Tensor(data)
            if value.grad is not None:
                converted.grad = value.grad.detach().numpy().copy()
            memo[key] = converted
        return memo[key]
    if isinstance(value, dict):
        return {k: to_lucid(v, torch, memo) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_lucid(v, torch, memo) for v in value)
    return value


def _map_leaves(value, leaf):
    """`value` with `leaf(x)` in place of each x that `leaf` converts (returns not None), containers rebuilt."""
    converted = leaf(value)
    if converted is not None:
        return converted
    if isinstance(value, dict):
        return {k: _map_leaves(x, leaf) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_leaves(x, leaf) for x in value)
    return copy.deepcopy(value)


def state_dict_to_lucid(sd, torch):
    """A torch optimizer state dict with every tensor as a NumPy array (what lucid.load would give)."""
    return _map_leaves(sd, lambda v: v.detach().numpy().copy() if isinstance(v, torch.Tensor) else None)


def state_dict_to_torch(sd, torch):
    """A lucid optimizer state dict with every array as a torch tensor."""
    return _map_leaves(sd, lambda v: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else None)


def as_number(v):
    """A state value for comparison: arrays/tensors as float64 NumPy, numbers as they are."""
    if hasattr(v, "detach"):
        v = v.detach().numpy()
    return np.asarray(v, dtype=np.float64)
