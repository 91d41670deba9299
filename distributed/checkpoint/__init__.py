"""Sharded checkpoints: every rank writes its own slice; they load at any world size.

Layout of a checkpoint directory (format version 2)::

    CKPT/
      LATEST                              the published save: {"save": "save-<id>", "manifest_sha256": ...}
      .lock                               held by the saving job's rank 0 during a save (never removed)
      save-<id>/                          one directory per save; only the published one is kept
        manifest.json                     what was saved, with its own SHA-256
        shard-00000-of-00003.safetensors  one per saving rank: its piece of every tensor
        ...

The manifest holds the format version, the world size at save, the model's entries (name, shape,
dtype), the optimizer's class, hyperparameters and parameters, for every stored tensor its pieces
(rank, element range), scalar state, `extra` as JSON, the SHA-256 and size of every shard file, and
`manifest_sha256`, the SHA-256 of its own canonical content.

Guarantees (each has a test that would catch its failure):

- A save is atomic: all files go into a fresh save directory, and one rename of LATEST publishes it;
  a save that fails or is killed leaves LATEST, and the checkpoint it names, untouched.
- Two saves into one directory cannot interleave: the second finds the lock taken and raises
  CheckpointError on every rank before writing anything. A save removes only files this format
  writes (older `save-<id>/` directories and its own temporaries); other files stay.
- Ranks agree before anything is written (directory, world size, parameter names, shapes, dtypes,
  optimizer class, hyperparameters, scalar state, `extra`, and a cheap fingerprint of every tensor
  all ranks should hold alike); any difference raises the same CheckpointError on every rank.
- A load trusts nothing it has not checked: the manifest's checksum first, then every field; shard
  names must be the ones the format derives (no path parts), symbolic links are refused, pieces
  must partition every tensor exactly, dtypes must agree between shard, manifest and live tensor,
  every shard's header must match the manifest and its SHA-256 the recorded one; sizes are capped
  before anything is read. There is no pickle anywhere, so loading can never run code.
- A load changes nothing unless everything loads, and a problem on any rank raises the same
  CheckpointError on every rank.

`python -m distributed.checkpoint inspect|consolidate` works on the directory.
"""

from __future__ import annotations

import os

from .. import comm as _comm
from ._format import CheckpointError
from ._layout import describe
from ._tools import consolidate, inspect


def _communicator(optimizer):
    return getattr(optimizer, "comm", None) or _comm.world()


def save(path, *, model=None, optimizer=None, extra=None) -> None:
    """Save `model` and `optimizer` (collective: every rank calls it; each writes its own shard).

    Args:
        path: the checkpoint directory (created if missing; the checkpoint there is replaced only once
            this one is complete).
        model: a lucid Module (its state dict: parameters split among the ranks, buffers from rank 0).
        optimizer: a DistributedOptimizer (sharded or not) or a plain lucid optimizer.
        extra: JSON-able metadata to keep alongside (epoch, step, ...), the same on every rank.

    Raises:
        CheckpointError: on every rank, when the ranks disagree on what they save, another save into
            `path` is running, or writing fails; the checkpoint already in `path` is then untouched.
    """
    from ._save import save as _save
    comm = _communicator(optimizer)
    _save(os.fspath(path), comm, model, describe(model, optimizer, comm), extra)


def load(path, *, model=None, optimizer=None):
    """Load a checkpoint saved at any world size (collective); return the saved `extra`.

    Each rank reads the element ranges it needs, every shard's SHA-256 is checked, and a problem on
    any rank raises the same CheckpointError on every rank before anything is changed.
    """
    from ._load import load as _load
    comm = _communicator(optimizer)
    return _load(os.fspath(path), comm, model, describe(model, optimizer, comm))


__all__ = ["save", "load", "inspect", "consolidate", "CheckpointError"]
