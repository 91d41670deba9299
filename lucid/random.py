"""The global random number generator behind rand/randn/randint, initialisers and dropout."""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Seed lucid's global generator (same seed, same numbers) and return it."""
    global _generator
    _generator = np.random.default_rng(int(seed))
    return _generator


def default_generator() -> np.random.Generator:
    """The global generator (a numpy.random.Generator)."""
    return _generator


def get_rng_state() -> dict:
    """The generator's state, for checkpoints."""
    return _generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state from `get_rng_state()`."""
    _generator.bit_generator.state = state
