"""Saving: prepare, agree across ranks, lock, write the shards into a fresh save directory, publish.

1. Every rank prepares what it will write (`prepare`: no I/O) and the ranks agree on it (`_agree`);
   any difference or error raises the same CheckpointError everywhere, before anything is written.
2. Rank 0 takes the directory's save lock and creates a fresh `save-<id>/`; every rank writes its
   shard there in parallel (SHA-256 taken while writing) and reports the pieces it wrote.
3. Rank 0 assembles the manifest from those reports, checks that the pieces partition every tensor
   (names and dtypes were checked while preparing), writes it, publishes the save by renaming
   LATEST, removes older save directories and unlocks.
A failure at any step removes this save's directory and leaves LATEST, and the checkpoint it
names, as they were; every rank raises.
"""

from __future__ import annotations

import datetime
import math
import os
import secrets
from dataclasses import dataclass, field

import numpy as np

from lucid import nn
from lucid.serialization import to_structure

from . import _directory as disk
from ._agree import agree, fingerprint
from ._format import (CHECKSUM_KEY, DTYPE_CODES, FORMAT, MANIFEST, VERSION, CheckpointError, Field, checksum,
                      save_dir_name, shard_name)
from ._layout import model_piece
from ._manifest import NAME, check_pieces
from ._shards import shard_metadata, write_shard

_FAILED = "checkpoint save failed; the previous checkpoint (if any) is untouched: "
_MODEL = "model entries (name, shape, dtype)"


@dataclass
class Plan:
    """What this rank writes (no I/O yet): its tensors and pieces, the manifest's sections, the agreement."""

    tensors: dict = field(default_factory=dict)      # key -> 1-D array (this rank's piece)
    pieces: dict = field(default_factory=dict)       # key -> [start, stop]
    sections: dict = field(default_factory=dict)     # "model", "optimizer", "extra" (without pieces)
    plain: dict = field(default_factory=dict)        # the plain-state entries this rank writes (see _plain_state)
    spec: list = field(default_factory=list)         # (what, value) pairs every rank must agree on
    fingerprints: list = field(default_factory=list)  # (what, hash) of tensors every rank holds alike

    def add(self, key: str, array, start: int, stop: int) -> None:
        if np.dtype(array.dtype).name not in DTYPE_CODES:
            raise TypeError(f"checkpoint cannot store {key!r} of dtype {array.dtype}")
        name = key.split("/")[-1]
        if key.count("/") != (2 if key.startswith("optim/") else 1) or NAME.fullmatch(name) is None:
            raise TypeError(f"checkpoint cannot store {key!r}: names are 1 to 512 printable characters, no '/'")
        if stop > start:
            self.tensors[key], self.pieces[key] = array, [start, stop]


def _scalar(name: str, value):
    """A scalar state value as JSON: ints stay ints, the rest floats."""
    value = np.asarray(value).item() if isinstance(value, (np.ndarray, np.generic)) else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise TypeError(f"scalar state {name!r} is {value!r}, not a finite number")
    return int(value) if isinstance(value, int) else float(value)


def prepare(directory: str, model, target, extra, rank: int, world_size: int) -> Plan:
    plan = Plan()
    plan.spec += [("directory", os.path.abspath(directory)), ("world size", world_size)]
    if model is not None:
        _prepare_model(plan, model, rank, world_size)
    else:
        plan.spec.append((_MODEL, None))
    if target.optimizer is not None:
        _prepare_optimizer(plan, target)
    else:
        plan.spec.append(("optimizer class", None))
    structure, arrays = to_structure(extra if extra is not None else {})
    if arrays:
        raise TypeError("checkpoint extra must be JSON-able (numbers, strings, lists, dicts), not arrays")
    plan.sections["extra"] = structure
    plan.spec.append(("extra", extra))
    return plan


def _prepare_model(plan: Plan, model, rank: int, world_size: int) -> None:
    entries = []
    for name, value in model.state_dict(keep_vars=True).items():
        array, is_parameter = getattr(value, "data", value), isinstance(value, nn.Parameter)
        start, stop = model_piece(is_parameter, array.size, rank, world_size)
        plan.add(f"model/{name}", array.reshape(-1)[start:stop], start, stop)
        entries.append({"name": name, "shape": list(array.shape), "dtype": array.dtype.name})
        if is_parameter:
            plan.fingerprints.append((f"model entry {name!r}", fingerprint(array)))
    plan.sections["model"] = {"entries": entries}
    plan.spec.append((_MODEL, [(e["name"], tuple(e["shape"]), e["dtype"]) for e in entries]))


def _prepare_optimizer(plan: Plan, target) -> None:
    optimizer = target.optimizer
    groups, group_arrays = to_structure([{k: v for k, v in g.items() if k != "params"}
                                         for g in optimizer.param_groups])
    if group_arrays:
        raise TypeError("parameter group hyperparameters must be plain numbers, strings or tuples, not arrays")
    params = [{"name": target.names.get(id(p)), "shape": list(p.shape), "dtype": p.dtype.name}
              for p in target.params]
    section = {"class": type(optimizer).__name__, "param_groups": groups,
               "group_sizes": [len(g["params"]) for g in optimizer.param_groups], "params": params}
    plan.spec += [("optimizer class", section["class"]),
                  ("hyperparameters of group", [{k: v for k, v in g.items() if k != "params"}
                                                for g in optimizer.param_groups]),
                  ("parameter group sizes", section["group_sizes"]),
                  ("optimizer parameters (name, shape, dtype)",
                   [(p["name"], tuple(p["shape"]), p["dtype"]) for p in params]),
                  ("sharded optimizer state", target.sharded)]
    if target.elementwise:
        section.update(kind="elementwise", **_elementwise_state(plan, target))
    else:
        section.update(kind="plain")
        _plain_state(plan, target)
    plan.sections["optimizer"] = section


def _elementwise_state(plan: Plan, target) -> dict:
    """An elementwise optimizer's state: declared scalars into the manifest, arrays into the shards (each
    rank the part its state view says it writes)."""
    scalar_names = set(target.optimizer.scalar_state)
    view = target.view
    scalars, entries = {}, []
    for k, p in enumerate(target.params):
        for name, value in (target.optimizer.state.get(p) or {}).items():
            if name in scalar_names:
                scalars.setdefault(str(k), {})[name] = _scalar(name, value)
                continue
            (low, high), (start, stop) = view.held(k, p), view.written(k, p)
            flat = value.reshape(-1) if hasattr(value, "reshape") else None
            if flat is None or flat.size != high - low:
                raise TypeError(f"state {name!r} of parameter {k} is neither scalar state "
                                f"{sorted(scalar_names)} nor an array of the parameter's elements")
            plan.add(f"optim/{k}/{name}", flat[start - low:stop - low], start, stop)
            entries.append({"param": k, "name": name, "dtype": value.dtype.name})
            if view.replicated:
                plan.fingerprints.append((f"optimizer state {name!r} of parameter {k}", fingerprint(value)))
    plan.spec += [("scalar state of parameter", scalars),
                  ("optimizer state entries", [(e["param"], e["name"]) for e in entries])]
    return {"scalars": scalars, "state": entries}


def _plain_state(plan: Plan, target) -> None:
    """A plain optimizer's state, parameter by parameter: each written whole by the rank its state view
    names (with sharded state, the parameter's owner). Every rank reports the entries it writes
    (`plan.plain`); rank 0 merges them into the manifest."""
    view = target.view
    entries, tensors, everything = [], [], []
    for k, values in target.optimizer.state_dict()["state"].items():
        structure, arrays = to_structure({k: values})
        entry = structure["dict"][0]
        everything.append(entry)
        start, stop = view.written(k, target.params[k])
        if stop > start:
            entries.append(entry)
        for name, array in arrays.items():
            if stop > start:
                plan.add(f"plain/{name}", array.reshape(-1), 0, array.size)
                tensors.append({"name": name, "shape": list(array.shape), "dtype": array.dtype.name})
            if view.replicated:
                plan.fingerprints.append((f"optimizer state {name!r}", fingerprint(array)))
    plan.plain = {"entries": entries, "tensors": tensors}
    # every rank holds the whole state when replicated: all must agree on it; sharded, each its owners' part
    plan.spec.append(("optimizer state", everything if view.replicated else "held by each parameter's owner"))


# ---------------------------------------------------------------------------------------- the collective save


def save(directory: str, comm, model, target, extra) -> dict:
    """Prepare and agree, write this rank's shard, and (rank 0) publish; every rank returns or raises."""
    rank, world_size = comm.rank, comm.size
    plan, problem = None, None
    try:
        plan = prepare(directory, model, target, extra, rank, world_size)
    except Exception as exc:  # noqa: BLE001 - every rank must hear of it, or the others wait forever
        problem = f"rank {rank}: {type(exc).__name__}: {exc}"
    agree(comm, plan.spec if plan else None, plan.fingerprints if plan else [], problem)
    lock = disk.SaveLock(directory) if rank == 0 else None
    save_id, problem = comm.broadcast_object(_start(lock) if rank == 0 else None)
    if problem:
        raise CheckpointError(_FAILED + problem)
    save_path = os.path.join(directory, save_dir_name(save_id))
    info, error = None, None
    try:
        written = write_shard(os.path.join(save_path, shard_name(rank, world_size)), plan.tensors,
                              shard_metadata(save_id, rank, world_size))
        info = {**written, "pieces": plan.pieces, "plain": plan.plain}
    except Exception as exc:  # noqa: BLE001 - as above
        error = f"rank {rank}: {type(exc).__name__}: {exc}"
    infos = comm.allgather_object((info, error))
    manifest, problem = None, None
    if rank == 0:
        manifest, problem = _finish(directory, save_id, plan, infos, world_size, lock)
    problem = comm.broadcast_object(problem)  # also: nobody returns before the checkpoint is published
    if problem:
        raise CheckpointError(_FAILED + problem)
    return manifest


def _start(lock) -> tuple:
    """(rank 0) Take the save lock and create a fresh save directory: (save id, None) or (None, problem)."""
    try:
        lock.acquire()
        save_id = secrets.token_hex(6)
        disk.create_save_dir(lock.path, save_dir_name(save_id))
        return save_id, None
    except CheckpointError as exc:
        lock.release()
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - the others wait in the broadcast for the answer
        lock.release()
        return None, f"rank 0: {type(exc).__name__}: {exc}"


def _finish(directory: str, save_id: str, plan: Plan, infos: list, world_size: int, lock) -> tuple:
    """(rank 0) Write the manifest and publish the save, or remove it: (manifest, None) or (None, problem)."""
    save_path = os.path.join(directory, save_dir_name(save_id))
    try:
        errors = [e for _, e in infos if e]
        if errors:
            raise CheckpointError("; ".join(errors))
        manifest = assemble(save_id, plan, [i for i, _ in infos], world_size)
        check_partitions(manifest, os.path.join(save_path, MANIFEST))  # the one part the ranks assembled
        disk.write_json(os.path.join(save_path, MANIFEST), manifest)
        disk.publish(directory, save_dir_name(save_id), manifest[CHECKSUM_KEY])
    except Exception as exc:  # noqa: BLE001 - every rank raises; the previous checkpoint stays published
        disk.remove_save_dir(save_path)
        lock.release()
        return None, str(exc) if isinstance(exc, CheckpointError) else f"rank 0: {type(exc).__name__}: {exc}"
    try:
        disk.remove_stale(directory, keep=save_dir_name(save_id))
    except OSError:
        pass  # the new checkpoint is published; an older save directory left behind goes next time
    lock.release()
    return manifest, None


def check_partitions(manifest: dict, file: str) -> None:
    """Check that the pieces the ranks reported partition every tensor (as a load will check them)."""
    params = manifest["optimizer"]["params"] if manifest["optimizer"] else []
    section = manifest["optimizer"] or {}
    records = [(e, e["shape"]) for e in (manifest["model"] or {}).get("entries", [])]
    records += [(e, params[e["param"]]["shape"]) for e in section.get("state", [])]
    records += [(t, t["shape"]) for t in section.get("plain_tensors", [])]
    for record, shape in records:
        check_pieces(record["pieces"], math.prod(shape), manifest["world_size"], Field(file)["pieces"])


def assemble(save_id: str, plan: Plan, infos: list, world_size: int) -> dict:
    """The manifest: rank 0's sections, each tensor's pieces as the ranks reported writing them."""
    def pieces(key: str) -> list:
        found = [[r, *info["pieces"][key]] for r, info in enumerate(infos) if key in info["pieces"]]
        return sorted(found, key=lambda piece: piece[1])

    sections = plan.sections
    model = sections.get("model")
    if model is not None:
        model = {"entries": [{**e, "pieces": pieces(f"model/{e['name']}")} for e in model["entries"]]}
    optimizer = sections.get("optimizer")
    if optimizer is not None and optimizer["kind"] == "elementwise":
        optimizer = {**optimizer, "state": [{**e, "pieces": pieces(f"optim/{e['param']}/{e['name']}")}
                                            for e in optimizer["state"]]}
    elif optimizer is not None:
        entries = sorted((e for info in infos for e in info["plain"]["entries"]), key=lambda e: e[0])
        tensors = [t for info in infos for t in info["plain"]["tensors"]]
        optimizer = {**optimizer, "plain_state": {"dict": entries},
                     "plain_tensors": [{**t, "pieces": pieces(f"plain/{t['name']}")} for t in tensors]}
    manifest = {"format": FORMAT, "version": VERSION, "save_id": save_id,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(), "world_size": world_size,
                "files": [{"rank": r, "file": shard_name(r, world_size), "bytes": info["bytes"],
                           "sha256": info["sha256"]} for r, info in enumerate(infos)],
                "model": model, "optimizer": optimizer, "extra": sections["extra"]}
    manifest[CHECKSUM_KEY] = checksum(manifest)
    return manifest
