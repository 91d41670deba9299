"""manifest.json: what it must contain, checked field by field before anything else reads it.

`validate(document, file)` turns a parsed manifest (its checksum already checked) into a `Manifest`
whose every number has its type and range, whose shard file names are the ones the format derives
(so none can point outside the save directory), and whose tensors' pieces partition each tensor
exactly: sorted, contiguous, no gap, no overlap, within bounds, at most one piece per rank, each on a
rank that saved. Structures (hyperparameters, `extra`, a plain optimizer's state) are decoded here
too, so a crafted one fails on every rank alike, before any shard is opened.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from lucid.serialization import from_structure

from ._format import (CHECKSUM_KEY, DTYPE_CODES, FORMAT, MAX_WORLD_SIZE, VERSION, CheckpointError, Field,
                      shard_name)

_NAME = r"[^\x00-\x1f/]{1,512}"   # a state or tensor name: printable, no path separator
NAME = re.compile(_NAME)


@dataclass(frozen=True)
class Stored:
    """One tensor as the shards hold it: its key in the shard files, shape, dtype and pieces."""

    key: str
    shape: tuple
    dtype: str
    pieces: tuple   # ((rank, start, stop), ...) sorted by start, partitioning [0, numel)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class Manifest:
    """A validated manifest; `stored` holds every tensor by key, `by_rank` what each shard must hold."""

    file: str
    sha256: str
    save_id: str
    world_size: int
    created: str
    files: list                     # [{"rank", "file", "bytes", "sha256"}] in rank order
    model: list | None              # [Stored] of the model's state dict entries ("model/<name>")
    optimizer: dict | None          # the section, with "groups" (decoded) and "stored"/"plain" added
    extra: object                   # decoded
    stored: dict = field(default_factory=dict)
    by_rank: list = field(default_factory=list)   # per rank: {key: (start, stop, dtype)}


def check_pieces(value, numel: int, world_size: int, where: Field) -> tuple:
    """The pieces [[rank, start, stop], ...] of a tensor of `numel` elements, checked to partition it."""
    pieces, seen, expected = [], set(), 0
    for i, item in enumerate(where.list(value)):
        if not (type(item) is list and len(item) == 3 and all(type(v) is int for v in item)):
            rank, start, stop = (where[i][j].int(v) for j, v in enumerate(where[i].list(item, 3)))  # raises
        rank, start, stop = item
        if rank < 0 or start < 0:
            where[i].fail(f"{min(rank, start)} is out of range [0, {world_size}]")
        if rank >= world_size:
            where[i].fail(f"rank {rank} does not exist (the checkpoint was saved by {world_size} ranks)")
        if start != expected:
            where[i].fail(f"piece starts at {start}; expected {expected} (pieces must be sorted, with no gap "
                          "or overlap)")
        if stop <= start or stop > numel:
            where[i].fail(f"piece [{start}, {stop}) is empty or outside [0, {numel})")
        if rank in seen:
            where[i].fail(f"rank {rank} holds two pieces of one tensor")
        seen.add(rank)
        pieces.append((rank, start, stop))
        expected = stop
    if expected != numel:
        where.fail(f"pieces cover [0, {expected}) of {numel} elements")
    return tuple(pieces)


def validate(document, file: str, sha256: str) -> Manifest:
    """Check every field of a parsed manifest; raise CheckpointError naming the file and the field."""
    top = Field(file)
    top.obj(document, ("format", "version", "save_id", "created", "world_size", "files", "model", "optimizer",
                       "extra", CHECKSUM_KEY))
    top["format"].str(document["format"], choices={FORMAT})
    if document["version"] != VERSION:
        top["version"].fail(f"format version {document['version']!r}; this code reads version {VERSION}")
    n = top["world_size"].int(document["world_size"], 1, MAX_WORLD_SIZE)
    manifest = Manifest(file, sha256, top["save_id"].str(document["save_id"], r"[0-9a-f]{12}"), n,
                        top["created"].str(document["created"]), _files(document["files"], n, top["files"]),
                        None, None, _structure(document["extra"], {}, top["extra"]))
    manifest.by_rank = [{} for _ in range(n)]
    if document["model"] is not None:
        manifest.model = _model(document["model"], manifest, top["model"])
    if document["optimizer"] is not None:
        manifest.optimizer = _optimizer(document["optimizer"], manifest, top["optimizer"])
    itemsize = {name: np.dtype(name).itemsize for name in DTYPE_CODES}
    for rank, expected in enumerate(manifest.by_rank):  # a cheap cap before any allocation
        data = sum((stop - start) * itemsize[dtype] for start, stop, dtype in expected.values())
        if data > manifest.files[rank]["bytes"]:
            top["files"][rank].fail(f"the pieces of rank {rank} need {data} bytes; its file has "
                                    f"{manifest.files[rank]['bytes']}")
    return manifest


def _files(value, world_size: int, where: Field) -> list:
    files = []
    for rank, item in enumerate(where.list(value, world_size)):
        at = where[rank]
        at.obj(item, ("rank", "file", "bytes", "sha256"))
        if at["rank"].int(item["rank"]) != rank:
            at["rank"].fail(f"expected {rank} (files are listed in rank order)")
        # the name is derived, not trusted: no path part, no "..", nothing outside the save directory
        at["file"].str(item["file"], choices={shard_name(rank, world_size)})
        files.append({"rank": rank, "file": item["file"], "bytes": at["bytes"].int(item["bytes"], 8),
                      "sha256": at["sha256"].sha256(item["sha256"])})
    return files


def _add(manifest: Manifest, key: str, shape: tuple, dtype: str, pieces_value, where: Field) -> Stored:
    if key in manifest.stored:
        where.fail(f"tensor {key!r} is described twice")
    pieces = check_pieces(pieces_value, math.prod(shape), manifest.world_size, where["pieces"])
    stored = manifest.stored[key] = Stored(key, shape, dtype, pieces)
    for rank, start, stop in pieces:
        manifest.by_rank[rank][key] = (start, stop, dtype)
    return stored


def _model(value, manifest: Manifest, where: Field) -> list:
    entries = where["entries"].list(where.obj(value, ("entries",))["entries"])
    stored = []
    for i, entry in enumerate(entries):
        at = where["entries"][i]
        at.obj(entry, ("name", "shape", "dtype", "pieces"))
        name = at["name"].str(entry["name"], _NAME)
        stored.append(_add(manifest, f"model/{name}", at["shape"].shape(entry["shape"]),
                           at["dtype"].dtype(entry["dtype"]), entry["pieces"], at))
    return stored


def _optimizer(value, manifest: Manifest, where: Field) -> dict:
    common = ("class", "kind", "param_groups", "group_sizes", "params")
    kind = where["kind"].str(where.mapping(value).get("kind"), choices={"elementwise", "plain"})
    where.obj(value, common + (("scalars", "state") if kind == "elementwise" else ("plain_state", "plain_tensors")))
    section = {"class": where["class"].str(value["class"], r"[A-Za-z_][A-Za-z0-9_]{0,200}"), "kind": kind}
    sizes = [where["group_sizes"][i].int(n, 0, MAX_WORLD_SIZE * 1024)
             for i, n in enumerate(where["group_sizes"].list(value["group_sizes"]))]
    section["group_sizes"] = sizes
    section["groups"] = _groups(value["param_groups"], len(sizes), where["param_groups"])
    params = []
    for i, item in enumerate(where["params"].list(value["params"], sum(sizes))):
        at = where["params"][i]
        at.obj(item, ("name", "shape", "dtype"))
        params.append({"name": None if item["name"] is None else at["name"].str(item["name"], _NAME),
                       "shape": at["shape"].shape(item["shape"]), "dtype": at["dtype"].dtype(item["dtype"])})
    section["params"] = params
    if kind == "elementwise":
        section["scalars"] = _scalars(value["scalars"], len(params), where["scalars"])
        section["state"] = _state(value["state"], params, manifest, where["state"])
    else:
        section["plain"] = _plain(value, manifest, where)
    return section


def _groups(value, count: int, where: Field) -> list:
    groups = _structure(value, {}, where)
    if not isinstance(groups, list) or len(groups) != count:
        where.fail(f"expected a list of {count} parameter groups")
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or not all(isinstance(k, str) for k in group) or "params" in group:
            where[i].fail("a parameter group must map hyperparameter names to values")
    return groups


def _scalars(value, count: int, where: Field) -> dict:
    scalars = {}
    for key, entry in where.mapping(value).items():
        if re.fullmatch(r"0|[1-9][0-9]{0,9}", key) is None or int(key) >= count:
            where.fail(f"{key[:40]!r} is not a parameter index (there are {count} parameters)")
        scalars[int(key)] = {where[key].str(name, _NAME): where[key][name].number(number)
                      for name, number in where[key].mapping(entry).items()}
    return scalars


def _state(value, params: list, manifest: Manifest, where: Field) -> list:
    entries = []
    for i, entry in enumerate(where.list(value)):
        at = where[i]
        at.obj(entry, ("param", "name", "dtype", "pieces"))
        k = at["param"].int(entry["param"], 0, len(params) - 1)
        name = at["name"].str(entry["name"], _NAME)
        dtype = at["dtype"].dtype(entry["dtype"])
        if dtype != params[k]["dtype"]:
            at["dtype"].fail(f"state {name!r} of parameter {k} is {dtype}; the parameter is {params[k]['dtype']}")
        stored = _add(manifest, f"optim/{k}/{name}", params[k]["shape"], dtype, entry["pieces"], at)
        entries.append({"param": k, "name": name, "stored": stored})
    return entries


def _plain(value, manifest: Manifest, where: Field) -> dict:
    """A plain optimizer's state: its structure and the tensors it refers to (rank 0 holds them)."""
    tensors, placeholders = {}, {}
    for i, entry in enumerate(where["plain_tensors"].list(value["plain_tensors"])):
        at = where["plain_tensors"][i]
        at.obj(entry, ("name", "shape", "dtype", "pieces"))
        name = at["name"].str(entry["name"], _NAME)
        shape, dtype = at["shape"].shape(entry["shape"]), at["dtype"].dtype(entry["dtype"])
        tensors[name] = _add(manifest, f"plain/{name}", shape, dtype, entry["pieces"], at)
        placeholders[name] = np.broadcast_to(np.zeros((), dtype), shape)  # no memory: only checks the structure
    state = _structure(value["plain_state"], placeholders, where["plain_state"])
    if not isinstance(state, dict):
        where["plain_state"].fail("expected the optimizer's state as an object")
    return {"structure": value["plain_state"], "tensors": tensors, "layout": state}


def _structure(value, arrays: dict, where: Field):
    """Decode a lucid.serialization structure; any malformation is this field's CheckpointError."""
    try:
        return from_structure(value, arrays, f"{where.file}: field {where.path}")
    except (ValueError, TypeError) as exc:
        raise CheckpointError(str(exc)) from None

