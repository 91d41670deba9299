"""The small training workload both checkpoint test files use: a continued run must end where an
uninterrupted one does, so the model, optimizers, batches and loop are defined once, here."""

from __future__ import annotations

import functools

import numpy as np

import lucid
from lucid import nn, optim

IN, HIDDEN, OUT, BATCH = 7, 10, 3, 12  # 113 parameters: splits unevenly at 2 and 3 ranks


def make_model(seed: int = 0, hidden: int = HIDDEN):
    lucid.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN, hidden), nn.ReLU(), nn.Linear(hidden, OUT))


def make_optimizer(name: str, model):
    """Two parameter groups with different learning rates, so groups and hyperparameters round-trip."""
    params = list(model.parameters())
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.02}]
    if name == "adam":
        return optim.Adam(groups, lr=0.01)
    return optim.SGD(groups, lr=0.05, momentum=0.9)


def batch(step: int):
    rng = np.random.default_rng(100 + step)
    return rng.standard_normal((BATCH, IN)).astype(np.float32), rng.integers(0, OUT, BATCH)


def train(model, opt, steps, rank: int = 0, size: int = 1) -> None:
    """Data-parallel steps: rank r takes the r-th equal part of each batch (12 splits evenly by 1, 2, 3)."""
    loss_fn = nn.CrossEntropyLoss()
    for step in steps:
        x, y = batch(step)
        x, y = np.array_split(x, size)[rank], np.array_split(y, size)[rank]
        opt.zero_grad()
        loss_fn(model(lucid.Tensor(x)), lucid.Tensor(y)).backward()
        opt.step()


def flat_params(model) -> np.ndarray:
    return np.concatenate([p.data.ravel() for p in model.parameters()])


@functools.cache
def uninterrupted(name: str) -> np.ndarray:
    """Six steps in one process, never saved: what every continued run must end at."""
    model = make_model(0)
    opt = make_optimizer(name, model)
    train(model, opt, range(6))
    return flat_params(model)
