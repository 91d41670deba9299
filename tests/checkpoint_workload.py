"""The small training workload the checkpoint test files use (a continued run must end where an
uninterrupted one does, so the model, optimizers, batches and loop are defined once, here), and the
helpers that find, damage and (as an attacker would, checksums fixed) rewrite a checkpoint's files."""

from __future__ import annotations

import functools
import hashlib
import json
import pathlib
import struct

import numpy as np

import lucid
from lucid import nn, optim

IN, HIDDEN, OUT, BATCH = 7, 10, 3, 12  # 113 parameters: splits unevenly at 2 and 3 ranks


def make_model(seed: int = 0, hidden: int = HIDDEN):
    lucid.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN, hidden), nn.ReLU(), nn.Linear(hidden, OUT))


def make_optimizer(name: str, model):
    """Two parameter groups with different learning rates, so groups and hyperparameters round-trip."""
    params = list(model.parameters())
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.02}]
    if name == "adam":
        return optim.Adam(groups, lr=0.01)
    return optim.SGD(groups, lr=0.05, momentum=0.9)


def batch(step: int):
    rng = np.random.default_rng(100 + step)
    return rng.standard_normal((BATCH, IN)).astype(np.float32), rng.integers(0, OUT, BATCH)


def train(model, opt, steps, rank: int = 0, size: int = 1) -> None:
    """Data-parallel steps: rank r takes the r-th equal part of each batch (12 splits evenly by 1, 2, 3)."""
    loss_fn = nn.CrossEntropyLoss()
    for step in steps:
        x, y = batch(step)
        x, y = np.array_split(x, size)[rank], np.array_split(y, size)[rank]
        opt.zero_grad()
        loss_fn(model(lucid.Tensor(x)), lucid.Tensor(y)).backward()
        opt.step()


def flat_params(model) -> np.ndarray:
    return np.concatenate([p.data.ravel() for p in model.parameters()])


@functools.cache
def uninterrupted(name: str) -> np.ndarray:
    """Six steps in one process, never saved: what every continued run must end at."""
    model = make_model(0)
    opt = make_optimizer(name, model)
    train(model, opt, range(6))
    return flat_params(model)


# ---------------------------------------------------------------------------------------- checkpoint files


def published(directory) -> pathlib.Path:
    """The save directory LATEST names."""
    directory = pathlib.Path(directory)
    return directory / json.loads((directory / "LATEST").read_text())["save"]


def manifest_path(directory) -> pathlib.Path:
    return published(directory) / "manifest.json"


def read_manifest(directory) -> dict:
    return json.loads(manifest_path(directory).read_text())


def shard(directory, rank: int) -> pathlib.Path:
    (path,) = published(directory).glob(f"shard-{rank:05d}-of-*.safetensors")
    return path


def flip_byte(path: pathlib.Path, offset: int, mask: int = 0x40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def write_manifest_as_attacker(directory, manifest: dict) -> None:
    """Write `manifest` with a correct checksum and point LATEST at it: only the content can be wrong."""
    from distributed.checkpoint._format import CHECKSUM_KEY, checksum
    manifest[CHECKSUM_KEY] = checksum(manifest)
    manifest_path(directory).write_text(json.dumps(manifest))
    pointer_path = pathlib.Path(directory) / "LATEST"
    pointer = json.loads(pointer_path.read_text())
    pointer["manifest_sha256"] = manifest[CHECKSUM_KEY]
    pointer_path.write_text(json.dumps(pointer))


def edit_manifest(directory, edit) -> None:
    """Apply `edit(manifest)` and rewrite the manifest with valid checksums."""
    manifest = read_manifest(directory)
    edit(manifest)
    write_manifest_as_attacker(directory, manifest)


def refresh_shard_checksum(path: pathlib.Path) -> None:
    """Make the manifest's SHA-256 and size for shard `path` match its current content."""
    directory = path.parent.parent
    manifest = read_manifest(directory)
    for entry in manifest["files"]:
        if entry["file"] == path.name:
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            entry["bytes"] = path.stat().st_size
    write_manifest_as_attacker(directory, manifest)


def rewrite_shard_header(path: pathlib.Path, change) -> None:
    """Apply `change(header)` to a shard's safetensors header (the file stays valid safetensors), then fix
    the manifest's SHA-256 and size for it."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    change(header)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + length:])
    refresh_shard_checksum(path)
