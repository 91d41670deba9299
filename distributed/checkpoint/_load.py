"""Loading in two phases: stage everything (nothing live changes), agree across ranks, then commit.

Staging opens the checkpoint (`_read.Checkpoint`: pointer, manifest checksum, fields, partitions),
checks it against the live model and optimizer (names, shapes, dtypes, class, hyperparameter kinds,
state names), verifies the SHA-256 of this rank's share of the shard files, and reads every value
this rank needs into new arrays. Then one allgather carries each rank's errors and the manifest's
checksum: any error, or ranks that read different manifests, raises the same CheckpointError on
every rank, and nothing has changed. Only then are the staged values committed: the optimizer
first (its own `load_state_dict` checks again before it changes anything), then the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lucid.serialization import from_structure

from ._format import CheckpointError
from ._read import Checkpoint


@dataclass
class Staged:
    extra: object = None
    model: dict | None = None
    groups: list | None = None
    kind: str = ""
    values: dict = field(default_factory=dict)   # elementwise: {k: {name: 1-D needed range}}
    scalars: dict = field(default_factory=dict)  # elementwise: {k: {name: number}}
    plain: dict | None = None                    # plain: the state of the parameters needed ({k: {name: value}})


def load(directory: str, comm, model, target):
    """Stage, agree, commit; return the saved `extra`."""
    staged, errors, digest = None, [], None
    try:
        with Checkpoint(directory) as checkpoint:
            digest = checkpoint.manifest.sha256
            staged = stage(checkpoint, model, target, comm)
    except CheckpointError as exc:
        errors.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - whatever a crafted file provokes, every rank must hear of it
        errors.append(f"{directory}: cannot read the checkpoint ({type(exc).__name__}: {exc})")
    everyone = comm.allgather_object((digest, errors))
    messages = sorted({e for _, rank_errors in everyone for e in rank_errors})
    digests = [d for d, _ in everyone]
    if not messages and len(set(digests)) > 1:
        messages = [f"ranks read different checkpoints (manifest SHA-256 per rank: {digests}); is {directory} "
                    "the same directory on every node?"]
    if messages:
        raise CheckpointError("cannot load the checkpoint, nothing was loaded: " + "; ".join(messages))
    commit(staged, model, target)
    return staged.extra


def stage(checkpoint, model, target, comm) -> Staged:
    """Check the checkpoint against the targets and read what this rank needs (no live state changes)."""
    manifest = checkpoint.manifest
    if model is not None:
        check_model(manifest, model)
    if target.optimizer is not None:
        check_optimizer(manifest, target)
    errors = checkpoint.verify(range(comm.rank, manifest.world_size, comm.size))  # each file by one rank
    if errors:
        raise CheckpointError("; ".join(errors))
    staged = Staged(extra=manifest.extra)
    if model is not None:
        staged.model = {s.key[len("model/"):]: checkpoint.read_whole(s) for s in manifest.model}
    if target.optimizer is not None:
        section = manifest.optimizer
        staged.groups, staged.kind = section["groups"], section["kind"]
        if section["kind"] == "plain":
            staged.plain = _needed_plain_state(checkpoint, section["plain"], target)
        else:
            staged.scalars = section["scalars"]
            for entry in section["state"]:
                k = entry["param"]
                start, stop = target.view.needed(k, target.params[k])
                staged.values.setdefault(k, {})[entry["name"]] = checkpoint.read(entry["stored"], start, stop)
    return staged


def _needed_plain_state(checkpoint, plain: dict, target) -> dict:
    """The saved state of the parameters this rank needs, reading only the tensors they refer to."""
    needed = [entry for entry in plain["structure"]["dict"]
              if _nonempty(target.view.needed(entry[0], target.params[entry[0]]))]
    arrays = {name: checkpoint.read_whole(plain["tensors"][name]) for name in _tensor_names(needed)}
    return from_structure({"dict": needed}, arrays, checkpoint.manifest.file)


def _nonempty(span: tuple) -> bool:
    return span[1] > span[0]


def _tensor_names(node) -> list:
    """The tensors (and NumPy scalars) a lucid.serialization structure refers to, in order."""
    names, stack = [], [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            (tag, value), = item.items() if len(item) == 1 else ((None, None),)
            if tag in ("tensor", "scalar") and isinstance(value, str):
                names.append(value)
            else:
                stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return list(dict.fromkeys(names))


def _fail(manifest, message: str):
    raise CheckpointError(f"{manifest.file}: {message}")


def check_model(manifest, model) -> None:
    if manifest.model is None:
        _fail(manifest, "the checkpoint holds no model, but a model was given")
    saved = {s.key[len("model/"):]: s for s in manifest.model}
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or unexpected:
        _fail(manifest, f"the checkpoint is for another model: missing {missing}, unexpected {unexpected}")
    for name, array in own.items():
        if saved[name].shape != tuple(array.shape):
            _fail(manifest, f"model entry {name!r} has shape {saved[name].shape} in the checkpoint but "
                            f"{tuple(array.shape)} in the model")
        if saved[name].dtype != array.dtype.name:
            _fail(manifest, f"model entry {name!r} is {saved[name].dtype} in the checkpoint but {array.dtype} in "
                            "the model (not cast: load into a model of the saved dtype)")


def check_optimizer(manifest, target) -> None:
    section, optimizer = manifest.optimizer, target.optimizer
    if section is None:
        _fail(manifest, "the checkpoint holds no optimizer state, but an optimizer was given")
    name = type(optimizer).__name__
    if section["class"] != name:
        _fail(manifest, f"the checkpoint holds {section['class']} state; the optimizer is a {name}")
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    if section["group_sizes"] != sizes:
        _fail(manifest, f"parameter groups of sizes {section['group_sizes']} in the checkpoint, {sizes} in the "
                        "optimizer")
    for k, (saved, p) in enumerate(zip(section["params"], target.params)):
        own = target.names.get(id(p))
        if saved["shape"] != tuple(p.shape) or (saved["name"] and own and saved["name"] != own):
            _fail(manifest, f"optimizer parameter {k} is {saved['name'] or '(unnamed)'} of shape {saved['shape']} "
                            f"in the checkpoint but {own or '(unnamed)'} of shape {tuple(p.shape)} here")
        if saved["dtype"] != p.dtype.name:
            _fail(manifest, f"optimizer parameter {k} is {saved['dtype']} in the checkpoint but {p.dtype} here")
    for i, (saved, live) in enumerate(zip(section["groups"], optimizer.param_groups)):
        _check_hyperparameters(manifest, i, saved, live, optimizer.defaults)
    if section["kind"] != ("elementwise" if target.elementwise else "plain"):
        _fail(manifest, f"field optimizer.kind: {section['kind']!r} state for a {name}")
    if section["kind"] == "elementwise":
        _check_state_names(manifest, section, target)
    elif not all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k < len(section["params"])
                 and isinstance(v, dict) and all(isinstance(n, str) for n in v)
                 for k, v in section["plain"]["layout"].items()):
        _fail(manifest, "field optimizer.plain_state: not a state for these parameters")


def _check_hyperparameters(manifest, index: int, saved: dict, live: dict, defaults: dict) -> None:
    for key, value in live.items():
        if key == "params":
            continue
        if key not in saved:
            if key in defaults:
                _fail(manifest, f"parameter group {index} lacks the hyperparameter {key!r}")
            continue
        if not _compatible(saved[key], value):
            _fail(manifest, f"parameter group {index}: hyperparameter {key!r} is {saved[key]!r} in the checkpoint, "
                            f"not of the kind of {value!r}")


def _compatible(saved, live) -> bool:
    """Same kind of value: numbers with numbers, booleans with booleans, tuples of the same length..."""
    if saved is None or live is None:
        return True
    if isinstance(live, bool) or isinstance(saved, bool):
        return isinstance(live, bool) and isinstance(saved, bool)
    if isinstance(live, (int, float)):
        return isinstance(saved, (int, float))
    if isinstance(live, (tuple, list)):
        return (isinstance(saved, (tuple, list)) and len(saved) == len(live)
                and all(_compatible(s, v) for s, v in zip(saved, live)))
    return type(saved) is type(live)


def _check_state_names(manifest, section: dict, target) -> None:
    """Declared scalar state in `scalars`, array state in the shards, the same names across a group."""
    scalar_names = set(target.optimizer.scalar_state)
    arrays = {}
    for entry in section["state"]:
        if entry["name"] in scalar_names:
            _fail(manifest, f"state {entry['name']!r} of parameter {entry['param']} is scalar state, stored as "
                            "an array")
        arrays.setdefault(entry["param"], set()).add(entry["name"])
    first = 0
    for g, size in enumerate(section["group_sizes"]):
        names = {}
        for k in range(first, first + size):
            scalars = set(section["scalars"].get(k, {}))
            if scalars - scalar_names:
                _fail(manifest, f"parameter {k} has scalar state {sorted(scalars - scalar_names)}; a "
                                f"{section['class']} keeps {sorted(scalar_names)}")
            if (scalars or k in arrays) and scalars != scalar_names:
                _fail(manifest, f"parameter {k} lacks scalar state {sorted(scalar_names - scalars)}")
            if scalars or k in arrays:
                names.setdefault(frozenset(arrays.get(k, ())), k)
        if len(names) > 1:
            (a, i), (b, j) = list(names.items())[:2]
            _fail(manifest, f"parameters {i} and {j} of group {g} have different state ({sorted(a)} vs {sorted(b)})")
        first += size


# ---------------------------------------------------------------------------------------- commit


def commit(staged: Staged, model, target) -> None:
    """Apply staged values: the optimizer (which validates before changing anything), then the model."""
    if target.optimizer is not None:
        try:
            target.view.load({"state": _state_dict_state(staged, target),
                              "param_groups": _packed_groups(staged, target)})
        except ValueError as exc:  # its own validation: nothing changed
            raise CheckpointError(f"cannot load the checkpoint, nothing was loaded: the optimizer refused its "
                                  f"state ({exc})") from None
    if model is not None:
        model.load_state_dict(staged.model)


def _packed_groups(staged: Staged, target) -> list:
    packed, start = [], 0
    for group, saved in zip(target.optimizer.param_groups, staged.groups):
        packed.append({**saved, "params": list(range(start, start + len(group["params"])))})
        start += len(group["params"])
    return packed


def _state_dict_state(staged: Staged, target) -> dict:
    if staged.kind == "plain":
        return staged.plain
    state = {}
    for k in range(len(target.params)):
        if k in staged.scalars or k in staged.values:
            state[k] = {**staged.scalars.get(k, {}), **staged.values.get(k, {})}
    return state

