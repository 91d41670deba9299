"""Shard files: safetensors written straight from the arrays and hashed while written; read back only
after their header matches the manifest.

A shard is an ordinary safetensors file (other tools read it), holding this rank's piece of each
tensor as a 1-D tensor under the tensor's key, and metadata naming the format, the save id, the rank
and the world size. The reader parses the header itself, with a cap on its size, and checks it
against the manifest before any data is read: the same save, the same rank, exactly the tensors the
manifest puts on this rank, each of the manifest's dtype and piece length, data offsets that tile
the file exactly. Then a slice read is one `preadv` into the destination array. Nothing here pickles
or maps files.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np

from lucid import _backend
from lucid.serialization import atomic_write

from ._directory import open_entry, read_exactly
from ._format import DTYPE_CODES, FORMAT, MAX_HEADER_BYTES, CheckpointError, parse_json

_CHUNK = 1 << 24


def _as_bytes(array) -> memoryview:
    host = _backend.to_host(array)
    if not host.flags.c_contiguous:
        host = host.copy(order="C")
    return memoryview(host.reshape(-1).view(np.uint8))


def write_shard(path: str, tensors: dict, metadata: dict) -> dict:
    """Write 1-D `tensors` to `path` atomically; return {"sha256", "bytes"} of the file as written."""
    header, offset = {}, 0
    for name, array in tensors.items():
        code = DTYPE_CODES.get(np.dtype(array.dtype).name)
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


def shard_metadata(save_id: str, rank: int, world_size: int) -> dict:
    return {"format": FORMAT, "save_id": save_id, "rank": str(rank), "world_size": str(world_size)}


class ShardFile:
    """One rank's shard of a validated manifest, opened inside the save directory, header checked."""

    def __init__(self, save_fd: int, save_path: str, manifest, rank: int):
        entry = manifest.files[rank]
        self.shown = os.path.join(save_path, entry["file"])
        self.fd = open_entry(save_fd, entry["file"], self.shown, what="shard file")
        try:
            self.size = os.fstat(self.fd).st_size
            if self.size != entry["bytes"]:
                self.fail(f"shard file has {self.size} bytes, the manifest says {entry['bytes']} (truncated or "
                          "replaced)")
            self.expected_sha256 = entry["sha256"]
            self.tensors = self._check_header(manifest, rank)
        except BaseException:
            self.close()
            raise

    def fail(self, message: str):
        raise CheckpointError(f"{self.shown}: {message}")

    def _check_header(self, manifest, rank: int) -> dict:
        """{key: (file offset, dtype, elements)} after checking the header against the manifest."""
        (length,) = struct.unpack("<Q", read_exactly(self.fd, 0, 8, self.shown))
        if length > min(MAX_HEADER_BYTES, self.size - 8):
            self.fail(f"header of {length} bytes does not fit the file (or exceeds {MAX_HEADER_BYTES})")
        header = parse_json(read_exactly(self.fd, 8, length, self.shown), f"{self.shown} (header)")
        if not isinstance(header, dict):
            self.fail("the header is not a JSON object")
        metadata = header.pop("__metadata__", None)
        wanted = shard_metadata(manifest.save_id, rank, manifest.world_size)
        if not isinstance(metadata, dict) or any(metadata.get(k) != v for k, v in wanted.items()):
            found = {k: metadata.get(k) for k in wanted} if isinstance(metadata, dict) else metadata
            self.fail(f"header metadata {found} does not match the manifest's {wanted} (a shard of another save "
                      "or rank)")
        expected = manifest.by_rank[rank]
        if set(header) != set(expected):
            extra, missing = sorted(set(header) - set(expected)), sorted(set(expected) - set(header))
            self.fail(f"holds tensors {extra[:3]} the manifest does not put here, lacks {missing[:3]}")
        tensors, spans = {}, []
        for key, (start, stop, dtype) in expected.items():
            info, count = header[key], stop - start
            if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
                self.fail(f"malformed header entry for {key!r}")
            if info["dtype"] != DTYPE_CODES[dtype]:
                self.fail(f"{key!r} is stored as {str(info['dtype'])[:20]}; the manifest says {dtype} "
                          f"({DTYPE_CODES[dtype]})")
            if info["shape"] != [count]:
                self.fail(f"{key!r} has shape {str(info['shape'])[:40]}; the manifest's piece has {count} elements")
            offsets = info["data_offsets"]
            if (not isinstance(offsets, list) or len(offsets) != 2 or
                    not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets) or
                    offsets[1] - offsets[0] != count * np.dtype(dtype).itemsize):
                self.fail(f"{key!r} has data offsets {str(offsets)[:40]} that do not fit {count} x {dtype}")
            spans.append(tuple(offsets))
            tensors[key] = (8 + length + offsets[0], np.dtype(dtype), count)
        position = 0
        for begin, end in sorted(spans):
            if begin != position:
                self.fail("tensor data overlaps or leaves gaps")
            position = end
        if 8 + length + position != self.size:
            self.fail(f"data ends at byte {8 + length + position}, the file has {self.size}")
        return tensors

    def read_into(self, key: str, start: int, out: np.ndarray) -> None:
        """Elements [start, start + out.size) of this shard's piece `key`, read into the 1-D array `out`."""
        offset, dtype, count = self.tensors[key]
        if out.dtype != dtype or start < 0 or start + out.size > count or not out.flags.c_contiguous:
            raise CheckpointError(f"{self.shown}: a read of {key!r} outside its piece")  # a bug, not a file
        if out.size:
            read_exactly(self.fd, offset + start * dtype.itemsize, out.nbytes, self.shown, into=out.view(np.uint8))

    def verify(self) -> str | None:
        """None when the file's SHA-256 matches the manifest, else the error message."""
        digest, buffer, position = hashlib.sha256(), bytearray(min(_CHUNK, max(self.size, 1))), 0
        view = memoryview(buffer)
        while position < self.size:
            count = min(len(buffer), self.size - position)
            read_exactly(self.fd, position, count, self.shown, into=view[:count])
            digest.update(view[:count])
            position += count
        if digest.hexdigest() != self.expected_sha256:
            return f"{self.shown}: SHA-256 does not match the manifest (the file is damaged)"
        return None

    def close(self) -> None:
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)
            self.fd = None
