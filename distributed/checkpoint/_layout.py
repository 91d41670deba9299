"""Which elements of which tensor each rank writes, and which each rank needs when loading.

Model entries are split evenly per tensor. Optimizer state follows the flat buffers: rank r owns
elements [r*L, (r+1)*L) of each flat buffer with L = ceil(numel / world size), exactly the slice a
sharded optimizer keeps, so sharded ranks write what they hold and replicated ranks write slice r
of what they all hold. Pieces are recorded in the manifest as parameter-relative [start, stop).
"""

from __future__ import annotations

from dataclasses import dataclass

from lucid.optim import Optimizer


def even_pieces(numel: int, world_size: int) -> list:
    """[start, stop) of each rank's piece of a tensor of `numel` elements (empty pieces allowed)."""
    length = -(-numel // world_size) if numel else 0
    return [(min(r * length, numel), min((r + 1) * length, numel)) for r in range(world_size)]


def flat_pieces(flat, world_size: int) -> list:
    """For each parameter of a flat buffer: the [start, stop) each rank owns, parameter-relative."""
    ranges = even_pieces(flat.numel, world_size)
    pieces = []
    for i in range(len(flat.params)):
        start, stop = flat.span(i)
        own = []
        for low, high in ranges:
            a, b = max(start, low), min(stop, high)
            own.append((a - start, b - start) if a < b else (0, 0))
        pieces.append(own)
    return pieces


@dataclass
class Target:
    """What a checkpoint is saved from or loaded into, reduced to what the format needs."""

    optimizer: object       # the lucid optimizer (unwrapped), or None
    dist: object            # the DistributedOptimizer, or None
    flats: list             # flat buffers in registration order (elementwise optimizers)
    names: dict             # id(param) -> name, when the parameters have real names

    @property
    def params(self) -> list:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def sharded(self) -> bool:
        return self.dist is not None and self.dist._sharding is not None

    @property
    def elementwise(self) -> bool:
        return self.optimizer is not None and self.optimizer.rule is not None

    def locate(self) -> dict:
        """id(param) -> (flat, index in the flat)."""
        return {id(p): (flat, i) for flat in self.flats for i, p in enumerate(flat.params)}


def describe(model, optimizer) -> Target:
    """Unwrap a DistributedOptimizer and find the flat buffers and parameter names."""
    from ..optimizer import DistributedOptimizer
    dist = optimizer if isinstance(optimizer, DistributedOptimizer) else None
    inner = dist.optimizer if dist is not None else optimizer
    if inner is not None and not isinstance(inner, Optimizer):
        raise TypeError(f"checkpoint takes a lucid optimizer or a DistributedOptimizer, not "
                        f"{type(optimizer).__name__}")
    flats = []
    if dist is not None:
        flats = list(dist._flats)
    elif inner is not None and inner.rule is not None:
        flats = [f for i in range(len(inner.param_groups)) for f in inner._flat_buffers(i)]
    names = {}
    if model is not None:
        names = {id(p): name for name, p in model.named_parameters()}
    elif dist is not None and dist._user_named:
        names = {id(p): name for p, name in dist._names.items()}
    return Target(inner, dist, flats, names)
