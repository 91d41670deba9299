"""The DistributedOptimizer's arguments, checked with Horovod's (and torch's) messages."""

from __future__ import annotations

import math

from lucid.optim import Optimizer

from . import comm as _comm
from .compression import Compressor


def check_arguments(optimizer, op, compression, passes, bucket_cap_mb) -> None:
    """Raise TypeError / ValueError for what DistributedOptimizer cannot take (it checks for itself being
    wrapped again)."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"DistributedOptimizer wraps a lucid.optim.Optimizer, not {type(optimizer).__name__}")
    try:
        _comm.ReduceOp(op)
    except ValueError:
        raise ValueError(f"unknown reduction op {op!r}: use distributed.Average or distributed.Sum") from None
    if not isinstance(compression, Compressor):
        raise ValueError(f"unknown compression {compression!r}: use Compression.none or Compression.fp16")
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"backward_passes_per_step must be an integer >= 1, got {passes!r}")
    if not bucket_cap_mb > 0:
        raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb!r}")


def parameter_names(optimizer, named_parameters) -> dict:
    """Parameter -> name, checked: unique names, every optimized parameter named."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if named_parameters is None:
        return {p: f"{g}.{i}" for g, group in enumerate(optimizer.param_groups)
                for i, p in enumerate(group["params"])}
    pairs = list(named_parameters)
    if any(not (isinstance(pair, tuple) and len(pair) == 2) for pair in pairs):
        raise ValueError("named_parameters should be a sequence of (name, parameter) tuples, usually "
                         "produced by model.named_parameters()")
    names = [name for name, _ in pairs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Parameter names in named_parameters must be unique. Found duplicates: "
                         f"{', '.join(duplicates)}")
    by_param = {p: name for name, p in pairs}
    missing = [i for i, p in enumerate(params) if p not in by_param]
    if missing:
        raise ValueError(f"named_parameters was specified, but one or more model parameters were not named "
                         f"(optimizer parameters at positions {missing}): pass model.named_parameters() of "
                         "the model the optimizer trains")
    return {p: by_param[p] for p in params}


def check_predivide(factor, op) -> float:
    """Horovod's validation of gradient_predivide_factor."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"gradient_predivide_factor must be a positive number, got {factor!r}")
    if factor != 1.0 and _comm.ReduceOp(op) is not _comm.Average:
        raise ValueError("gradient_predivide_factor not supported with op != Average")
    return float(factor)
