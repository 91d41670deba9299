"""Checkpoint files on disk: streaming safetensors writes with SHA-256, slice reads, the manifest.

Shard files are written in the safetensors format directly from the arrays (no serialised copy of
the data in memory), hashed while they are written, flushed and renamed into place; reading uses the
safetensors library, which maps the file and returns just the slice asked for. Nothing here pickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np
from safetensors import SafetensorError, safe_open

from lucid import _backend
from lucid.serialization import atomic_write

MANIFEST = "manifest.json"
FORMAT = "lucid.distributed.checkpoint"
VERSION = 1
_CODES = {"float16": "F16", "float32": "F32", "float64": "F64", "int8": "I8", "int16": "I16",
          "int32": "I32", "int64": "I64", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64",
          "bool": "BOOL"}
_CHUNK = 1 << 24


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, damaged, or for another model or optimizer."""


def shard_name(rank: int, world_size: int, save_id: str) -> str:
    return f"shard-{rank:05d}-of-{world_size:05d}.{save_id}.safetensors"


def _as_bytes(array) -> memoryview:
    host = _backend.to_host(array)
    if not host.flags.c_contiguous:
        host = host.copy(order="C")
    return memoryview(host.reshape(-1).view(np.uint8))


def write_safetensors(path: str, tensors: dict, metadata: dict) -> dict:
    """Write 1-D `tensors` to `path` atomically; return {"sha256", "bytes"} of the file as written."""
    header, offset = {}, 0
    for name, array in tensors.items():
        code = _CODES.get(np.dtype(array.dtype).name)
        if code is None:
            raise TypeError(f"checkpoint cannot store {name!r} of dtype {array.dtype}")
        header[name] = {"dtype": code, "shape": [int(array.size)],
                        "data_offsets": [offset, offset + int(array.nbytes)]}
        offset += int(array.nbytes)
    header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # keeps the data 8-byte aligned, as safetensors writers do
    digest = hashlib.sha256()

    def write(tmp_path):
        with open(tmp_path, "wb") as f:
            for chunk in [struct.pack("<Q", len(encoded)), encoded] + [_as_bytes(a) for a in tensors.values()]:
                f.write(chunk)
                digest.update(chunk)
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, write)
    return {"sha256": digest.hexdigest(), "bytes": 8 + len(encoded) + offset}


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ShardReader:
    """Reads slices of a checkpoint's shard files, opening each file once."""

    def __init__(self, directory: str, files: list):
        self.directory = directory
        self.files = files  # per saved rank: {"file", "sha256", "bytes"}
        self._open = {}

    def read(self, rank: int, key: str, start: int = 0, stop=None) -> np.ndarray:
        """Elements [start, stop) of tensor `key` in saved rank `rank`'s file."""
        name = self.files[rank]["file"]
        handle = self._open.get(name)
        if handle is None:
            path = os.path.join(self.directory, name)
            if not os.path.isfile(path):
                raise CheckpointError(f"{path}: shard file is missing")
            try:
                handle = self._open[name] = safe_open(path, framework="np")
            except (SafetensorError, OSError) as exc:
                raise CheckpointError(f"{path}: not a readable shard ({exc})") from None
        try:
            part = handle.get_slice(key)
            stop = part.get_shape()[0] if stop is None else stop
            return np.array(part[start:stop], copy=True)
        except (SafetensorError, KeyError) as exc:
            raise CheckpointError(f"{os.path.join(self.directory, name)}: cannot read {key!r} ({exc})") from None

    def verify(self, ranks) -> list:
        """Check the SHA-256 and size of the files of `ranks`; return error messages (empty if all good)."""
        errors = []
        for rank in ranks:
            entry = self.files[rank]
            path = os.path.join(self.directory, entry["file"])
            if not os.path.isfile(path):
                errors.append(f"{path}: shard file is missing")
            elif os.path.getsize(path) != entry["bytes"]:
                errors.append(f"{path}: shard file has {os.path.getsize(path)} bytes, the manifest says "
                              f"{entry['bytes']} (truncated or replaced)")
            elif file_sha256(path) != entry["sha256"]:
                errors.append(f"{path}: SHA-256 does not match the manifest (the file is damaged)")
        return errors


def write_manifest(directory: str, manifest: dict) -> None:
    """Write manifest.json atomically: the moment it is renamed into place, the checkpoint exists."""
    def write(tmp_path):
        with open(tmp_path, "w") as f:
            json.dump(manifest, f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
    atomic_write(os.path.join(directory, MANIFEST), write)


def read_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no manifest, so no complete checkpoint in {directory} "
                              "(the manifest is written last: a save that did not finish leaves none)")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a lucid distributed checkpoint manifest")
    if manifest.get("version") != VERSION:
        raise CheckpointError(f"{path}: format version {manifest.get('version')!r}; this code reads {VERSION}")
    return manifest


def remove_stale(directory: str, manifest: dict) -> None:
    """Delete shard files and temporaries the current manifest does not name (older or interrupted saves)."""
    keep = {entry["file"] for entry in manifest["files"]} | {MANIFEST}
    for name in os.listdir(directory):
        stale_shard = name.startswith("shard-") and name.endswith(".safetensors")
        temporary = name.startswith(".") and name.endswith(".tmp")
        if name not in keep and (stale_shard or temporary):
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                pass
