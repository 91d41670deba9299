"""Sharded checkpoints: every rank writes its own slice; they load at any world size.

A checkpoint is a directory holding `manifest.json` and one safetensors file per saving rank. The
manifest (format version, world size at save, model entries with shapes and dtypes, the optimizer's
class and hyperparameters, for every state entry its parameter, name and element ranges, scalar
state, `extra`, and the SHA-256 of every shard file) is written last, atomically: a save that dies
half way leaves the previous checkpoint whole. There is no pickle anywhere, so loading can never run
code. `python -m distributed.checkpoint inspect|consolidate` works on the directory.
"""

from __future__ import annotations

import os

from .. import comm as _comm
from ._files import CheckpointError, ShardReader, read_manifest
from ._layout import describe


def _communicator(optimizer):
    return getattr(optimizer, "comm", None) or _comm.world()


def save(path, *, model=None, optimizer=None, extra=None) -> None:
    """Save `model` and `optimizer` (collective: every rank calls it; each writes its own shard).

    Args:
        path: the checkpoint directory (created if missing; an older checkpoint there is replaced
            only once this one is complete).
        model: a lucid Module (its state dict is saved, each rank writing one slice of every entry).
        optimizer: a DistributedOptimizer (sharded or not) or a plain lucid optimizer.
        extra: JSON-able metadata to keep alongside (epoch, step, ...).
    """
    from ._save import save as _save
    target = describe(model, optimizer)
    _save(os.fspath(path), _communicator(optimizer), model, target, extra)


def load(path, *, model=None, optimizer=None):
    """Load a checkpoint saved at any world size (collective); return the saved `extra`.

    Each rank reads the element ranges it needs, every shard's SHA-256 is checked, and a problem
    on any rank raises the same CheckpointError on every rank before anything is changed.
    """
    from ._load import load as _load
    target = describe(model, optimizer)
    return _load(os.fspath(path), _communicator(optimizer), model, target)


def inspect(path, verify: bool = True) -> dict:
    """A summary of a checkpoint (one process): world size, optimizer, parameters, files, checksums."""
    path = os.fspath(path)
    manifest = read_manifest(path)
    files = sorted(manifest["files"], key=lambda f: f["rank"])
    errors = ShardReader(path, files).verify(range(len(files))) if verify else None
    optimizer = manifest.get("optimizer")
    return {"path": path, "world_size": manifest["world_size"], "created": manifest.get("created"),
            "optimizer": None if optimizer is None else optimizer["class"],
            "param_groups": None if optimizer is None else _groups(optimizer, path),
            "model": [(e["name"], tuple(e["shape"]), e["dtype"]) for e in manifest.get("model", {}).get("entries", [])],
            "files": [(f["file"], f["bytes"]) for f in files], "total_bytes": sum(f["bytes"] for f in files),
            "checksums": None if errors is None else ("ok" if not errors else errors),
            "extra": _extra(manifest, path)}


def _groups(section: dict, path: str) -> list:
    from lucid.serialization import from_structure
    return from_structure(section["param_groups"], {}, os.path.join(path, "manifest.json"))


def _extra(manifest: dict, path: str):
    from lucid.serialization import from_structure
    return from_structure(manifest.get("extra", {"dict": []}), {}, os.path.join(path, "manifest.json"))


def consolidate(path, out) -> None:
    """Write a one-file checkpoint ({"model", "optimizer", "extra"}) that `lucid.load` reads."""
    import lucid
    from ._load import read_model
    path = os.fspath(path)
    manifest = read_manifest(path)
    files = sorted(manifest["files"], key=lambda f: f["rank"])
    reader = ShardReader(path, files)
    errors = reader.verify(range(len(files)))
    if errors:
        raise CheckpointError("cannot consolidate: " + "; ".join(errors))
    result = {"extra": _extra(manifest, path)}
    if "model" in manifest:
        result["model"] = read_model(reader, manifest)
    section = manifest.get("optimizer")
    if section is not None:
        result["optimizer"] = _full_optimizer_state(reader, section, path)
    lucid.save(result, out)


def _full_optimizer_state(reader, section: dict, path: str) -> dict:
    """The optimizer's state dict in PyTorch's layout, assembled from every shard."""
    from ._load import _assemble, read_plain
    groups, start = _groups(section, path), 0
    for group, size in zip(groups, section["group_sizes"]):
        group["params"] = list(range(start, start + size))
        start += size
    if section["kind"] == "plain":
        return {"state": read_plain(reader, section, path), "param_groups": groups}
    state = {int(k): dict(v) for k, v in section["scalars"].items()}
    for entry in section["state"]:
        shape = section["params"][entry["param"]]["shape"]
        numel = 1
        for n in shape:
            numel *= n
        array = _assemble(reader, entry["pieces"], f"optim/{entry['param']}/{entry['name']}", 0, numel,
                          entry["dtype"])
        state.setdefault(entry["param"], {})[entry["name"]] = array.reshape(shape)
    return {"state": state, "param_groups": groups}


__all__ = ["save", "load", "inspect", "consolidate", "CheckpointError"]
