"""Saving: every rank writes its own shard file in parallel; rank 0 writes the manifest last."""

from __future__ import annotations

import datetime
import os
import secrets

import numpy as np

from lucid.serialization import to_structure

from ._files import FORMAT, VERSION, remove_stale, shard_name, write_manifest, write_safetensors
from ._layout import even_pieces, flat_pieces


def _scalar(value):
    """A scalar state value as JSON: ints stay ints, the rest floats."""
    value = np.asarray(value).item() if isinstance(value, np.ndarray) else value
    return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else float(value)


def model_part(model, rank: int, world_size: int):
    """(this rank's tensors, the manifest's model section) for a model's state dict."""
    tensors, entries = {}, []
    for name, array in model.state_dict().items():
        pieces = even_pieces(int(array.size), world_size)
        a, b = pieces[rank]
        if b > a:
            tensors[f"model/{name}"] = array.reshape(-1)[a:b]
        entries.append({"name": name, "shape": list(array.shape), "dtype": array.dtype.name,
                        "pieces": [[r, s, e] for r, (s, e) in enumerate(pieces) if e > s]})
    return tensors, {"entries": entries}


def _array_state_names(state: dict) -> list:
    return [name for name, value in state.items() if hasattr(value, "ndim") and value.ndim > 0]


def elementwise_part(target, rank: int, world_size: int):
    """(this rank's tensors, the manifest's state entries) for an elementwise optimizer's state."""
    ids = {id(p): k for k, p in enumerate(target.params)}
    tensors, entries = {}, []
    for flat in target.flats:
        for i, (p, pieces) in enumerate(zip(flat.params, flat_pieces(flat, world_size))):
            state = target.optimizer.state.get(p) or {}
            for name in _array_state_names(state):
                view = state[name].reshape(-1)
                a, b = pieces[rank]
                if b > a:
                    # a sharded view already is this rank's piece; a replicated one is the whole param
                    tensors[f"optim/{ids[id(p)]}/{name}"] = view if view.size == b - a else view[a:b]
                entries.append({"param": ids[id(p)], "name": name, "dtype": state[name].dtype.name,
                                "pieces": [[r, s, e] for r, (s, e) in enumerate(pieces) if e > s]})
    return tensors, entries


def optimizer_part(target, rank: int, world_size: int):
    """(this rank's tensors, the manifest's optimizer section)."""
    optimizer = target.optimizer
    groups, group_arrays = to_structure([{k: v for k, v in g.items() if k != "params"}
                                         for g in optimizer.param_groups])
    if group_arrays:
        raise TypeError("checkpoint: parameter group hyperparameters must be plain numbers, strings or "
                        "tuples, not arrays")
    params = [{"name": target.names.get(id(p)), "shape": list(p.shape), "dtype": p.dtype.name}
              for p in target.params]
    section = {"class": type(optimizer).__name__, "param_groups": groups,
               "group_sizes": [len(g["params"]) for g in optimizer.param_groups], "params": params}
    if not target.elementwise:
        section["kind"] = "plain"
        structure, arrays = to_structure(optimizer.state_dict()["state"])
        section["plain_state"] = structure
        section["plain_shapes"] = {k: list(v.shape) for k, v in arrays.items()}
        return ({f"plain/{k}": v.reshape(-1) for k, v in arrays.items()} if rank == 0 else {}), section
    section["kind"] = "elementwise"
    section["scalars"] = {str(k): {n: _scalar(v) for n, v in (optimizer.state.get(p) or {}).items()
                                   if n not in _array_state_names(optimizer.state[p])}
                          for k, p in enumerate(target.params) if optimizer.state.get(p)}
    tensors, section["state"] = elementwise_part(target, rank, world_size)
    return tensors, section


def save(directory: str, comm, model, target, extra) -> dict:
    """Write this rank's shard; gather the checksums; rank 0 writes the manifest; all wait for it."""
    rank, world_size = comm.rank, comm.size
    problem = None
    if rank == 0:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:  # the others must hear of it, or they wait in the broadcast forever
            problem = f"rank 0: {type(exc).__name__}: {exc}"
    save_id, problem = comm.broadcast_object((secrets.token_hex(6), problem) if rank == 0 else None)
    if problem:
        raise RuntimeError(f"checkpoint save failed; the previous checkpoint (if any) is untouched: {problem}")
    comm.barrier()  # the directory exists before anyone writes into it
    tensors, manifest = {}, {"format": FORMAT, "version": VERSION, "world_size": world_size, "save_id": save_id,
                             "created": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    error = None
    try:
        if model is not None:
            part, manifest["model"] = model_part(model, rank, world_size)
            tensors.update(part)
        if target.optimizer is not None:
            part, manifest["optimizer"] = optimizer_part(target, rank, world_size)
            tensors.update(part)
        manifest["extra"], extra_arrays = to_structure(extra if extra is not None else {})
        if extra_arrays:
            raise TypeError("checkpoint extra must be JSON-able (numbers, strings, lists, dicts), not arrays")
        name = shard_name(rank, world_size, save_id)
        info = {"rank": rank, "file": name,
                **write_safetensors(os.path.join(directory, name), tensors, {"save_id": save_id})}
    except Exception as exc:  # every rank must learn of it, or the others wait forever below
        error, info = f"rank {rank}: {type(exc).__name__}: {exc}", None
    infos = comm.allgather_object((info, error))
    errors = [e for _, e in infos if e]
    if errors:
        raise RuntimeError("checkpoint save failed; the previous checkpoint (if any) is untouched: "
                           + "; ".join(errors))
    manifest["files"] = [i for i, _ in infos]
    problem = None
    if rank == 0:
        try:
            write_manifest(directory, manifest)
            remove_stale(directory, manifest)
        except Exception as exc:  # noqa: BLE001 - as above: every rank raises, none waits forever
            problem = f"rank 0: {type(exc).__name__}: {exc}"
    problem = comm.broadcast_object(problem)  # also: nobody returns before the manifest is in place
    if problem:
        raise RuntimeError(f"checkpoint save failed writing the manifest: {problem}")
    return manifest
