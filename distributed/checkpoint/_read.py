"""An opened checkpoint: the published save's manifest, checked in order, and slice reads from its shards.

Opening follows LATEST to the save directory (a plain name of the format's own pattern, not a
symbolic link), reads manifest.json with a size cap, checks its checksum against its own content and
against the one LATEST recorded, and only then validates its fields (`_manifest.validate`). Shards
are opened lazily, each once, with their headers checked against the manifest.
"""

from __future__ import annotations

import os

import numpy as np

from ._directory import open_directory, open_entry, read_entry, read_pointer
from ._format import CHECKSUM_KEY, MANIFEST, MAX_MANIFEST_BYTES, CheckpointError, checksum, parse_json
from ._manifest import validate
from ._shards import ShardFile


class Checkpoint:
    """The checkpoint published in directory `path` (use as a context manager: it holds descriptors)."""

    def __init__(self, path: str):
        self.path, self.save_fd, self._shards = path, None, {}
        self.fd = open_directory(path)
        try:
            pointer = read_pointer(self.fd, path)
            self.save = pointer["save"]
            self.save_path = os.path.join(path, self.save)
            self.save_fd = open_entry(self.fd, self.save, self.save_path, directory=True, what="save directory")
            self.manifest = self._read_manifest(pointer["manifest_sha256"])
        except BaseException:
            self.close()
            raise

    def _read_manifest(self, expected: str):
        shown = os.path.join(self.save_path, MANIFEST)
        document = parse_json(read_entry(self.save_fd, MANIFEST, shown, MAX_MANIFEST_BYTES), shown)
        stored = document.get(CHECKSUM_KEY) if isinstance(document, dict) else None
        if not isinstance(stored, str):
            raise CheckpointError(f"{shown}: no {CHECKSUM_KEY} field (not a manifest of this format)")
        actual = checksum(document)
        if stored != actual:
            raise CheckpointError(f"{shown}: its content does not match its {CHECKSUM_KEY} (the manifest is "
                                  "damaged or was edited)")
        if actual != expected:
            raise CheckpointError(f"{shown}: not the manifest {os.path.join(self.path, 'LATEST')} published "
                                  "(it was replaced)")
        manifest = validate(document, shown, actual)
        if f"save-{manifest.save_id}" != self.save:
            raise CheckpointError(f"{shown}: field save_id: {manifest.save_id!r} does not match its directory "
                                  f"{self.save!r}")
        return manifest

    def shard(self, rank: int) -> ShardFile:
        shard = self._shards.get(rank)
        if shard is None:
            shard = self._shards[rank] = ShardFile(self.save_fd, self.save_path, self.manifest, rank)
        return shard

    def verify(self, ranks) -> list:
        """Check the headers and SHA-256 of the shard files of `ranks`; return the error messages."""
        errors = []
        for rank in ranks:
            try:
                problem = self.shard(rank).verify()
            except CheckpointError as exc:
                problem = str(exc)
            if problem:
                errors.append(problem)
        return errors

    def read(self, stored, start: int = 0, stop=None) -> np.ndarray:
        """Elements [start, stop) of a stored tensor (flattened), from the pieces that overlap them."""
        stop = stored.numel if stop is None else stop
        out = np.empty(stop - start, dtype=stored.dtype)
        for rank, s, e in stored.pieces:  # validated: they partition the tensor exactly
            a, b = max(s, start), min(e, stop)
            if a < b:
                self.shard(rank).read_into(stored.key, a - s, out[a - start:b - start])
        return out

    def read_whole(self, stored) -> np.ndarray:
        return self.read(stored).reshape(stored.shape)

    def close(self) -> None:
        for shard in self._shards.values():
            shard.close()
        self._shards.clear()
        for name in ("save_fd", "fd"):
            if getattr(self, name, None) is not None:
                os.close(getattr(self, name))
                setattr(self, name, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
