"""Loading: validate the manifest against the live model and optimizer, read only the needed slices,
check every shard's SHA-256 (each file by one rank), agree on errors, and only then change anything."""

from __future__ import annotations

import os

import numpy as np

from lucid.serialization import from_structure

from ._files import CheckpointError, ShardReader, read_manifest


def _fail(directory: str, message: str):
    raise CheckpointError(f"{os.path.join(directory, 'manifest.json')}: {message}")


def validate(directory: str, manifest: dict, model, target) -> None:
    """Raise CheckpointError (the same on every rank) when the checkpoint does not fit the targets."""
    if model is not None:
        if "model" not in manifest:
            _fail(directory, "the checkpoint holds no model, but a model was given")
        saved = {e["name"]: e for e in manifest["model"]["entries"]}
        own = model.state_dict()
        missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
        if missing or unexpected:
            _fail(directory, f"the checkpoint is for another model: missing {missing}, unexpected {unexpected}")
        for name, array in own.items():
            if tuple(saved[name]["shape"]) != tuple(array.shape):
                _fail(directory, f"model entry {name!r} has shape {tuple(saved[name]['shape'])} in the "
                                 f"checkpoint but {tuple(array.shape)} in the model")
    if target.optimizer is not None:
        _validate_optimizer(directory, manifest, target)


def _validate_optimizer(directory: str, manifest: dict, target) -> None:
    section = manifest.get("optimizer")
    if section is None:
        _fail(directory, "the checkpoint holds no optimizer state, but an optimizer was given")
    name = type(target.optimizer).__name__
    if section["class"] != name:
        _fail(directory, f"the checkpoint holds {section['class']} state; the optimizer is a {name}")
    sizes = [len(g["params"]) for g in target.optimizer.param_groups]
    if section["group_sizes"] != sizes:
        _fail(directory, f"parameter groups of sizes {section['group_sizes']} in the checkpoint, {sizes} in "
                         "the optimizer")
    for k, (saved, p) in enumerate(zip(section["params"], target.params)):
        own_name = target.names.get(id(p))
        if tuple(saved["shape"]) != tuple(p.shape) or (saved["name"] and own_name and saved["name"] != own_name):
            _fail(directory, f"optimizer parameter {k} is {saved['name'] or '(unnamed)'} of shape "
                             f"{tuple(saved['shape'])} in the checkpoint but {own_name or '(unnamed)'} of "
                             f"shape {tuple(p.shape)} here")


def _assemble(reader, entry_pieces, key: str, start: int, stop: int, dtype) -> np.ndarray:
    """Elements [start, stop) of a saved tensor, from the pieces (rank, s, e) that overlap them."""
    out = np.empty(stop - start, dtype=dtype)
    filled = 0
    for rank, s, e in entry_pieces:
        a, b = max(s, start), min(e, stop)
        if a < b:
            out[a - start:b - start] = reader.read(rank, key, a - s, b - s)
            filled += b - a
    if filled != stop - start:
        raise CheckpointError(f"{reader.directory}: {key!r} is incomplete in the checkpoint")
    return out


def read_model(reader, manifest: dict) -> dict:
    """Every model entry, whole (parameters are replicated on every rank)."""
    arrays = {}
    for entry in manifest["model"]["entries"]:
        numel = int(np.prod(entry["shape"], dtype=np.int64))
        flat = _assemble(reader, entry["pieces"], f"model/{entry['name']}", 0, numel, np.dtype(entry["dtype"]))
        arrays[entry["name"]] = flat.reshape(entry["shape"])
    return arrays


def _needed_range(target, p, where) -> tuple:
    """The elements of parameter p this rank must hold: its shard's part when sharded, else all."""
    if not target.sharded:
        return 0, p.numel()
    flat, i = where[id(p)]
    start, stop = flat.span(i)
    low, high = flat.storage.span
    a, b = max(start, low), min(stop, high)
    return (a - start, b - start) if a < b else (0, 0)


def read_elementwise(reader, section: dict, target) -> dict:
    """{param id: {name: 1-D array of the needed range}} of the saved per-element state."""
    where = target.locate()
    out = {}
    for entry in section["state"]:
        p = target.params[entry["param"]]
        start, stop = _needed_range(target, p, where)
        key = f"optim/{entry['param']}/{entry['name']}"
        out.setdefault(entry["param"], {})[entry["name"]] = _assemble(
            reader, entry["pieces"], key, start, stop, np.dtype(entry["dtype"]))
    return out


def read_plain(reader, section: dict, directory: str):
    """A non-elementwise optimizer's whole state (rank 0 of the saving run wrote it)."""
    arrays = {name: reader.read(0, f"plain/{name}").reshape(shape)
              for name, shape in section["plain_shapes"].items()}
    return from_structure(section["plain_state"], arrays, os.path.join(directory, "manifest.json"))


def _decode(structure, directory: str):
    """A JSON structure from the manifest; a malformed (or crafted) one is a CheckpointError."""
    try:
        return from_structure(structure, {}, os.path.join(directory, "manifest.json"))
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def load(directory: str, comm, model, target):
    """Validate, read and verify collectively, then apply; return the saved `extra`."""
    errors, payload = [], {}
    try:  # any failure on any rank is agreed on below: a rank that raised alone would leave the others waiting
        manifest = read_manifest(directory)
        validate(directory, manifest, model, target)
        files = sorted(manifest["files"], key=lambda f: f["rank"])
        reader = ShardReader(directory, files)
        errors = reader.verify(range(comm.rank, len(files), comm.size))  # each file checked by one rank
        # everything is decoded and read before anything changes, so a bad entry loads nothing
        payload["extra"] = _decode(manifest.get("extra", {"dict": []}), directory)
        if model is not None:
            payload["model"] = read_model(reader, manifest)
        if target.optimizer is not None:
            section = manifest["optimizer"]
            payload["groups"] = _decode(section["param_groups"], directory)
            payload["optimizer"] = (read_plain(reader, section, directory) if section["kind"] == "plain"
                                    else read_elementwise(reader, section, target))
    except CheckpointError as exc:
        errors.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - a damaged or crafted checkpoint
        errors.append(f"{os.path.join(directory, 'manifest.json')}: cannot read the checkpoint "
                      f"({type(exc).__name__}: {exc})")
    everyone = [e for rank_errors in comm.allgather_object(errors) for e in rank_errors]
    if everyone:
        raise CheckpointError("cannot load the checkpoint, nothing was loaded: " + "; ".join(sorted(set(everyone))))
    if target.optimizer is not None:  # first: its load_state_dict validates before it changes anything
        _apply_optimizer(manifest["optimizer"], payload["groups"], payload["optimizer"], target)
    if model is not None:
        model.load_state_dict(payload["model"])
    return payload["extra"]


def _apply_optimizer(section: dict, groups: list, values, target) -> None:
    ids = list(range(len(target.params)))
    packed, start = [], 0
    for group, saved in zip(target.optimizer.param_groups, groups):
        packed.append({**saved, "params": ids[start:start + len(group["params"])]})
        start += len(group["params"])
    if section["kind"] == "plain":
        target.optimizer.load_state_dict({"state": values, "param_groups": packed})
        return
    scalars = {int(k): v for k, v in section["scalars"].items()}
    if target.sharded:
        _apply_sharded(target, packed, scalars, values)
        return
    state = {}
    for k, p in enumerate(target.params):
        if k in scalars or k in values:
            state[k] = {**scalars.get(k, {}),
                        **{n: v.reshape(p.shape) for n, v in values.get(k, {}).items()}}
    target.optimizer.load_state_dict({"state": state, "param_groups": packed})


def _apply_sharded(target, packed: list, scalars: dict, values: dict) -> None:
    """Put each rank's slice straight into its shard storage (no full-size arrays on any rank)."""
    optimizer = target.optimizer
    for group, saved in zip(optimizer.param_groups, packed):
        params = group["params"]
        group.clear()
        group.update({k: v for k, v in saved.items() if k != "params"})
        group["params"] = params
    where = target.locate()
    optimizer.state.clear()
    for k, p in enumerate(target.params):
        if k not in scalars and k not in values:
            continue
        flat, i = where[id(p)]
        state = optimizer.state[p]
        for name, value in values.get(k, {}).items():
            view = flat.storage.view(name, i)
            flat.xp.copyto(view, flat.xp.asarray(value), casting="unsafe")
            state[name] = view
        for name, value in scalars.get(k, {}).items():
            state[name] = optimizer._scalar_value(name, value)
