"""Ranks agree on what they save before anything is written: one small collective.

Every rank describes its save as a list of (what, value) pairs: the directory, the world size, the
model's entries (names, shapes, dtypes), the optimizer's class, hyperparameters, parameters, state
names and scalar state, whether state is sharded, and `extra`. It also fingerprints every tensor all
ranks must hold alike (model parameters, unsharded optimizer state). One allgather carries each
rank's digest of its description, its fingerprints and any error it met while preparing; only when
they differ does a second one fetch the descriptions, to name what differs and where.

A fingerprint hashes a fixed, evenly strided sample of a tensor (at most about 2 x 4096 elements, plus
its dtype, shape and last element) rather than all of it: replicas that diverged (another seed, a
missed all-reduce, a rank that skipped steps) differ almost everywhere, and the check costs
microseconds, not another pass over the data. Model buffers (BatchNorm statistics) may legitimately
differ between ranks and are not fingerprinted: rank 0's are saved.
"""

from __future__ import annotations

import hashlib

import numpy as np

from lucid import _backend

from ._format import CheckpointError

_SAMPLES = 4096
_SHOWN = 160


def fingerprint(array) -> str:
    """A cheap hash of a strided sample of `array` (with its dtype and shape)."""
    flat = array.reshape(-1)
    step = max(1, flat.size // _SAMPLES)
    sample = np.ascontiguousarray(_backend.to_host(flat[::step]))
    last = np.ascontiguousarray(_backend.to_host(flat[-1:]))
    digest = hashlib.blake2b(f"{array.dtype.str}{tuple(array.shape)}".encode(), digest_size=8)
    digest.update(sample.view(np.uint8))
    digest.update(last.view(np.uint8))
    return digest.hexdigest()


def agree(comm, spec: list, fingerprints: list, problem) -> None:
    """Raise the same CheckpointError on every rank unless all ranks prepared the same save."""
    digest = hashlib.sha256(repr(spec).encode()).hexdigest()
    everyone = comm.allgather_object((digest, fingerprints, problem))
    problems = [p for _, _, p in everyone if p]
    if problems:
        raise CheckpointError("checkpoint save failed; nothing was written: " + "; ".join(problems))
    if len({d for d, _, _ in everyone}) > 1:
        specs = comm.allgather_object(spec)
        raise CheckpointError("checkpoint save refused, ranks disagree on what they save; nothing was written: "
                              + describe_difference(specs))
    prints = [f for _, f, _ in everyone]
    for i, (what, _) in enumerate(prints[0]):
        holders = _by_value([p[i][1] for p in prints])
        if len(holders) > 1:
            raise CheckpointError(f"checkpoint save refused; nothing was written: ranks hold different values of "
                                  f"{what} ({_ranks_list(holders)}): replicas that diverged must not be mixed "
                                  "into one checkpoint")


def describe_difference(specs: list) -> str:
    """Name the first (what, value) pair where ranks' descriptions differ, and which ranks hold what."""
    for position in range(max(len(s) for s in specs)):
        items = [s[position] if position < len(s) else ("(nothing)", None) for s in specs]
        if len({repr(item) for item in items}) > 1:
            return _narrow(items[0][0], [item[1] for item in items])
    return "their descriptions differ"


class _Nothing:
    def __repr__(self) -> str:
        return "(nothing)"


_NOTHING = _Nothing()


def _narrow(what: str, values: list) -> str:
    """Descend into lists and dicts to the first element where the ranks' values differ."""
    while True:
        if all(isinstance(v, list) for v in values):  # (a tuple is one value: (name, shape, dtype))
            keys = range(max(len(v) for v in values))
            pick, name = (lambda v, k: v[k] if k < len(v) else _NOTHING), "item {}"
        elif all(isinstance(v, dict) for v in values):
            keys = list(dict.fromkeys(k for v in values for k in v))
            pick, name = (lambda v, k: v.get(k, _NOTHING)), "{!r}"
        else:
            return f"{what}: " + _held([repr(v) for v in values])
        key = next(k for k in keys if len({repr(pick(v, k)) for v in values}) > 1)
        what, values = f"{what}, {name.format(key)}", [pick(v, key) for v in values]


def _by_value(values: list) -> dict:
    holders = {}
    for rank, value in enumerate(values):
        holders.setdefault(value, []).append(rank)
    return holders


def _held(values: list) -> str:
    return "; ".join(f"{_short(value)} on ranks {ranks}" for value, ranks in _by_value(values).items())


def _ranks_list(holders: dict) -> str:
    return " vs ".join(f"ranks {ranks}" for ranks in holders.values())


def _short(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
