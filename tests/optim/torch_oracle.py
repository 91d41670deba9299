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


def config_table(oracle):
    """[(optimizer name, index, description)] of every optimizer input, as PyTorch lists them on the CPU."""
    if oracle is None:
        return []
    torch, common = oracle
    rows = []
    for name, info in infos(common).items():
        for k, inp in enumerate(info.optim_inputs_func(device="cpu", dtype=torch.float32)):
            rows.append((name, k, inp.desc))
    return rows


def error_table(oracle):
    """[(optimizer name, index, description)] of every error input on the CPU."""
    if oracle is None:
        return []
    torch, common = oracle
    rows = []
    for name, info in infos(common).items():
        for k, err in enumerate(info.optim_error_inputs_func(device="cpu", dtype=torch.float32)):
            rows.append((name, k, err.optimizer_error_input.desc))
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


def state_dict_to_lucid(sd, torch):
    """A torch optimizer state dict with every tensor as a NumPy array (what lucid.load would give)."""
    def convert(v):
        if isinstance(v, torch.Tensor):
            return v.detach().numpy().copy()
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(convert(x) for x in v)
        return copy.deepcopy(v)
    return convert(sd)


def state_dict_to_torch(sd, torch):
    """A lucid optimizer state dict with every array as a torch tensor."""
    def convert(v):
        if isinstance(v, np.ndarray):
            return torch.from_numpy(v.copy())
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(convert(x) for x in v)
        return copy.deepcopy(v)
    return convert(sd)


def as_number(v):
    """A state value for comparison: arrays/tensors as float64 NumPy, numbers as they are."""
    if hasattr(v, "detach"):
        v = v.detach().numpy()
    return np.asarray(v, dtype=np.float64)
