"""inspect and consolidate: one process reads a whole checkpoint (the CLI's two commands)."""

from __future__ import annotations

import functools
import os

from ._format import CheckpointError
from ._read import Checkpoint


def reported(function):
    """Whatever a crafted or damaged checkpoint provokes comes out as a CheckpointError naming the path."""
    @functools.wraps(function)
    def wrapper(path, *args, **kwargs):
        try:
            return function(path, *args, **kwargs)
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001 - RecursionError, MemoryError, OSError, ...
            raise CheckpointError(f"{os.fspath(path)}: cannot read the checkpoint ({type(exc).__name__}: "
                                  f"{exc})") from None
    return wrapper


@reported
def inspect(path, verify: bool = True) -> dict:
    """A summary of a checkpoint (one process): world size, optimizer, parameters, files, checksums."""
    path = os.fspath(path)
    with Checkpoint(path) as checkpoint:
        manifest = checkpoint.manifest
        errors = checkpoint.verify(range(manifest.world_size)) if verify else None
        optimizer = manifest.optimizer
        return {"path": path, "save": checkpoint.save, "world_size": manifest.world_size,
                "created": manifest.created, "optimizer": None if optimizer is None else optimizer["class"],
                "param_groups": None if optimizer is None else optimizer["groups"],
                "model": [(s.key[len("model/"):], s.shape, s.dtype) for s in manifest.model or []],
                "files": [(f["file"], f["bytes"]) for f in manifest.files],
                "total_bytes": sum(f["bytes"] for f in manifest.files),
                "checksums": None if errors is None else ("ok" if not errors else errors),
                "extra": manifest.extra}


def check_output(path: str, out: str) -> None:
    """Refuse an output that is a directory, or inside (or equal to) the checkpoint directory."""
    if os.path.isdir(out):
        raise CheckpointError(f"{out}: is a directory; give a file name for the consolidated checkpoint")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise CheckpointError(f"{out}: no such directory {parent}")
    inside, real_out = os.path.realpath(path), os.path.realpath(out)
    if os.path.commonpath([inside, real_out]) == inside:
        raise CheckpointError(f"{out}: inside the checkpoint directory {path}; refused (writing there could "
                              "overwrite the checkpoint being read)")


@reported
def consolidate(path, out) -> None:
    """Write a one-file checkpoint ({"model", "optimizer", "extra"}) that `lucid.load` reads.

    The output is written atomically (lucid.save) and never inside the checkpoint directory.
    """
    import lucid
    path, out = os.fspath(path), os.fspath(out)
    check_output(path, out)
    with Checkpoint(path) as checkpoint:
        manifest = checkpoint.manifest
        errors = checkpoint.verify(range(manifest.world_size))
        if errors:
            raise CheckpointError("cannot consolidate: " + "; ".join(errors))
        result = {"extra": manifest.extra}
        if manifest.model is not None:
            result["model"] = {s.key[len("model/"):]: checkpoint.read_whole(s) for s in manifest.model}
        if manifest.optimizer is not None:
            result["optimizer"] = full_optimizer_state(checkpoint, manifest.optimizer)
    try:
        lucid.save(result, out)
    except OSError as exc:
        raise CheckpointError(f"{out}: cannot write the consolidated checkpoint ({exc.strerror or exc})") from None


def full_optimizer_state(checkpoint, section: dict) -> dict:
    """The optimizer's state dict in PyTorch's layout, assembled from every shard."""
    from lucid.serialization import from_structure
    groups, start = [dict(g) for g in section["groups"]], 0
    for group, size in zip(groups, section["group_sizes"]):
        group["params"] = list(range(start, start + size))
        start += size
    if section["kind"] == "plain":
        arrays = {name: checkpoint.read_whole(s) for name, s in section["plain"]["tensors"].items()}
        state = from_structure(section["plain"]["structure"], arrays, checkpoint.manifest.file)
        return {"state": state, "param_groups": groups}
    state = {k: dict(v) for k, v in section["scalars"].items()}
    for entry in section["state"]:
        state.setdefault(entry["param"], {})[entry["name"]] = checkpoint.read_whole(entry["stored"])
    return {"state": state, "param_groups": groups}
