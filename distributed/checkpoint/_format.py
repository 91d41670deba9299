"""The checkpoint format's vocabulary: names, limits, the error type, strict JSON and its checksums.

Everything a load trusts passes through here first: file names are derived from the format and
compared, never joined from what a file says; JSON is parsed with caps on size and depth, without
duplicate keys or non-finite constants; a document's checksum is the SHA-256 of its canonical
encoding (sorted keys, no spaces, ASCII), so any change to its content is an error and a change that
keeps the content (letter case in `1e-08`) is harmless. `Field` names the file and the field in
every error.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

from lucid.serialization import too_deep

FORMAT = "lucid.distributed.checkpoint"
VERSION = 2
POINTER = "LATEST"        # names the published save directory; replaced atomically
LOCK = ".lock"            # held (flock) by the saving job's rank 0 for the whole save
MANIFEST = "manifest.json"
CHECKSUM_KEY = "manifest_sha256"

MAX_POINTER_BYTES = 4096
MAX_MANIFEST_BYTES = 128 << 20
MAX_HEADER_BYTES = 100 << 20     # a shard's safetensors header (safetensors' own cap)
MAX_DEPTH = 200                  # JSON nesting (user `extra` and hyperparameters included)
MAX_NDIM = 64
MAX_NUMEL = 1 << 50
MAX_WORLD_SIZE = 1 << 20

DTYPE_CODES = {"float16": "F16", "float32": "F32", "float64": "F64", "int8": "I8", "int16": "I16",
               "int32": "I32", "int64": "I64", "uint8": "U8", "uint16": "U16", "uint32": "U32",
               "uint64": "U64", "bool": "BOOL"}

_SAVE_DIR = re.compile(r"save-[0-9a-f]{12}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# what a killed save may leave behind: atomic_write's temporaries of the files this format writes
_TEMPORARY = re.compile(r"\.(LATEST|manifest\.json|shard-\d{5,}-of-\d{5,}\.safetensors)\.\d+\.[0-9a-f]{8}\.tmp")
_SHARD = re.compile(r"shard-\d{5,}-of-\d{5,}\.safetensors")


class CheckpointError(ValueError):
    """A checkpoint that cannot be saved or loaded: missing, damaged, crafted, or for another model."""


def shard_name(rank: int, world_size: int) -> str:
    """The one file name rank `rank` of a `world_size`-rank save writes."""
    return f"shard-{rank:05d}-of-{world_size:05d}.safetensors"


def save_dir_name(save_id: str) -> str:
    return f"save-{save_id}"


def is_save_dir_name(name: str) -> bool:
    return _SAVE_DIR.fullmatch(name) is not None


def is_own_file_name(name: str) -> bool:
    """True for the names this format writes inside a save directory (files and their temporaries)."""
    return name == MANIFEST or _SHARD.fullmatch(name) is not None or is_temporary_name(name)


def is_temporary_name(name: str) -> bool:
    return _TEMPORARY.fullmatch(name) is not None


# ---------------------------------------------------------------------------------------- JSON


def canonical(document) -> bytes:
    """The canonical encoding a checksum covers: sorted keys, no whitespace, ASCII, finite numbers."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


def checksum(document: dict) -> str:
    """SHA-256 of a document's canonical encoding without its own checksum field."""
    return hashlib.sha256(canonical({k: v for k, v in document.items() if k != CHECKSUM_KEY})).hexdigest()


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def parse_json(data: bytes, where: str):
    """Strictly parse a JSON document: UTF-8, no duplicate keys, finite numbers, bounded depth."""
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates,
                              parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise CheckpointError(f"{where}: not valid JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, huge ints, the hooks above
        raise CheckpointError(f"{where}: not valid JSON ({exc})") from None
    check_depth(document, where)
    return document


def check_depth(document, where: str, limit: int = MAX_DEPTH) -> None:
    """Raise unless `document` nests at most `limit` lists/objects deep (iteratively: no recursion)."""
    if too_deep(document, limit):
        raise CheckpointError(f"{where}: nested more than {limit} levels deep")


# ---------------------------------------------------------------------------------------- fields


class Field:
    """A position in a parsed document ("manifest.json", field optimizer.state[3].pieces), for errors.

    Cheap to make (a manifest has thousands of fields): the path is spelled out only for a message.
    """

    __slots__ = ("file", "parent", "key")

    def __init__(self, file: str, parent: Field | None = None, key=None):
        self.file, self.parent, self.key = file, parent, key

    def __getitem__(self, key) -> Field:
        return Field(self.file, self, key)

    @property
    def path(self) -> str:
        keys, field = [], self
        while field.parent is not None:
            keys.append(field.key)
            field = field.parent
        return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in reversed(keys)).lstrip(".")

    def fail(self, message: str):
        where = f"field {self.path}: " if self.path else ""
        raise CheckpointError(f"{self.file}: {where}{message}")

    # -- typed reads; each returns the checked value

    def obj(self, value, required=(), optional=()) -> dict:
        """A JSON object with exactly the `required` keys and any of the `optional` ones."""
        if not isinstance(value, dict):
            self.fail(f"expected an object, found {_kind(value)}")
        for key in required:
            if key not in value:
                self.fail(f"missing key {key!r}")
        if len(value) > len(required):
            unknown = sorted(set(value) - set(required) - set(optional))
            if unknown:
                self.fail(f"unexpected key {unknown[0]!r}")
        return value

    def mapping(self, value) -> dict:
        """A JSON object with any keys."""
        if not isinstance(value, dict):
            self.fail(f"expected an object, found {_kind(value)}")
        return value

    def int(self, value, low: int = 0, high: int = MAX_NUMEL) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"expected an integer, found {_kind(value)}")
        if not low <= value <= high:
            self.fail(f"{value} is out of range [{low}, {high}]")
        return value

    def number(self, value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"expected a number, found {_kind(value)}")
        return value

    def str(self, value, pattern=None, choices=None) -> str:
        if not isinstance(value, str):
            self.fail(f"expected a string, found {_kind(value)}")
        if choices is not None and value not in choices:
            self.fail(f"{value[:80]!r} is not one of {sorted(choices)}")
        if pattern is not None and _compiled(pattern).fullmatch(value) is None:
            self.fail(f"{value[:80]!r} is not a valid value here")
        return value

    def sha256(self, value) -> str:
        return self.str(value, _SHA256.pattern)

    def list(self, value, length=None) -> list:
        if not isinstance(value, list):
            self.fail(f"expected a list, found {_kind(value)}")
        if length is not None and len(value) != length:
            self.fail(f"expected {length} items, found {len(value)}")
        return value

    def dtype(self, value) -> str:
        return self.str(value, choices=DTYPE_CODES)

    def shape(self, value) -> tuple:
        items = self.list(value)
        if len(items) > MAX_NDIM:
            self.fail(f"{len(items)} dimensions (at most {MAX_NDIM})")
        if not all(type(n) is int and 0 <= n <= MAX_NUMEL for n in items):
            [self[i].int(n) for i, n in enumerate(items)]  # raises, naming the dimension
        shape = tuple(items)
        if math.prod(shape) > MAX_NUMEL:
            self.fail(f"shape {shape} has more than {MAX_NUMEL} elements")
        return shape


_PATTERNS = {}


def _compiled(pattern: str):
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled


def _kind(value) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object"}
    return names.get(type(value), type(value).__name__)
