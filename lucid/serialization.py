"""lucid.save / lucid.load: state dicts in one safetensors file; arrays as tensors, the rest as JSON.

No pickle anywhere: the file is a safetensors file whose tensors are the arrays of the saved object
and whose metadata holds the object's structure as JSON. Loading parses JSON and reads tensors, so a
file, however crafted, can never run code.

What can be saved: dicts (int or str keys, order kept), lists, tuples, NumPy/CuPy arrays and lucid
Tensors (saved as their data), NumPy scalars, and the JSON-able scalars int, float (nan and inf too),
str, bool and None, nested in any way. Round trips are exact:

- arrays come back as NumPy arrays (or on `device`) with their dtype and shape, 0-d ones included;
  a lucid Tensor comes back as its array (as `Module.state_dict()` holds them);
- NumPy scalars (`np.float32(1.5)`, `np.int64(3)`, `np.bool_(True)`) come back as NumPy scalars of
  the same dtype, never as Python numbers or 0-d arrays;
- int keys stay ints, tuples stay tuples, dict subclasses (OrderedDict) come back as plain dicts
  in the same order; an object seen twice (tied weights) is stored once and comes back shared.

Encoding of the structure (the "lucid.structure" metadata entry): null, booleans, strings, ints and
finite floats are JSON themselves; a list is a JSON array; everything else is a one-key object:
{"tuple": [...]}, {"dict": [[key, value], ...]}, {"float": "nan" | "inf" | "-inf"},
{"tensor": name} for an array and {"scalar": name} for a NumPy scalar (stored as a 0-d tensor).
A safetensors file without that entry (written by another tool) loads as {tensor name: array}.
"""

from __future__ import annotations

import json
import math
import os
import secrets

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from . import _backend
from .tensor import Tensor

FORMAT_KEY = "lucid.format"
STRUCTURE_KEY = "lucid.structure"
FORMAT_VERSION = "1"

# The dtypes safetensors stores and reads back as the same NumPy dtype.
_DTYPES = frozenset(np.dtype(t) for t in (
    np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
    np.float16, np.float32, np.float64, np.complex64))
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
# safetensors' codes for those dtypes: anything else in a file (BF16, F8_*) is refused by name
_CODES = frozenset({"BOOL", "I8", "U8", "I16", "U16", "I32", "U32", "I64", "U64", "F16", "F32", "F64", "C64"})
MAX_DEPTH = 200  # nesting of a saved structure (a state dict nests 4 levels; its encoding about 3x that)


# ---------------------------------------------------------------------------------------- save


def _path_str(path: tuple) -> str:
    """A key path as the user would index it, e.g. ["state"][0]["exp_avg"]."""
    return "".join(f"[{key!r}]" for key in path) or "<root>"


class _Encoder:
    """Walks an object once, collecting its arrays under generated names and its structure as JSON."""

    def __init__(self):
        self.tensors = {}   # name -> contiguous host array
        self._seen = {}     # id(array) -> name, so one array object is stored once
        self._keep = []     # keeps the originals alive while their ids are in _seen

    def encode(self, obj, path: tuple):
        if isinstance(obj, np.generic):  # first: np.float64 and np.str_ subclass float and str
            return {"scalar": self._add_array(np.asarray(obj), path)}
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return float(obj) if math.isfinite(obj) else {"float": repr(float(obj))}
        if isinstance(obj, Tensor):
            return {"tensor": self._add_array(obj.data, path)}
        if isinstance(obj, np.ndarray) or _backend.is_gpu_array(obj):
            return {"tensor": self._add_array(obj, path)}
        if isinstance(obj, dict):
            return {"dict": [[self._key(k, path), self.encode(v, path + (k,))] for k, v in obj.items()]}
        if isinstance(obj, (list, tuple)):
            items = [self.encode(v, path + (i,)) for i, v in enumerate(obj)]
            return {"tuple": items} if isinstance(obj, tuple) else items
        raise TypeError(f"lucid.save cannot store a {type(obj).__name__} at {_path_str(path)}: "
                        "only dicts, lists, tuples, arrays, Tensors, NumPy scalars, int, float, str, "
                        "bool and None are supported")

    @staticmethod
    def _key(key, path: tuple):
        if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
            return key if isinstance(key, str) else int(key)
        raise TypeError(f"lucid.save needs int or str dict keys; found the {type(key).__name__} key "
                        f"{key!r} in {_path_str(path)}")

    def _add_array(self, array, path: tuple) -> str:
        if id(array) in self._seen:
            return self._seen[id(array)]
        # safetensors writes raw memory, so make it C-contiguous (not np.ascontiguousarray: 0-d -> 1-d)
        host = _backend.to_host(array)
        host = host if host.flags.c_contiguous else host.copy(order="C")
        if not host.dtype.isnative:
            host = host.astype(host.dtype.newbyteorder("="))
        if host.dtype not in _DTYPES:
            raise TypeError(f"lucid.save cannot store data of dtype {host.dtype} at {_path_str(path)}: "
                            f"supported dtypes are {', '.join(sorted(d.name for d in _DTYPES))}")
        # Readable names (a flat module state dict keeps its keys); a suffix settles clashes such
        # as int key 0 beside str key "0". The structure, not the name, says where an array goes.
        base = name = ".".join(str(key) for key in path) or "tensor"
        while name in self.tensors:
            name = f"{base}#{len(self.tensors)}"
            base = name
        self.tensors[name] = host
        self._seen[id(array)] = name
        self._keep.append(array)
        return name


def to_structure(obj) -> tuple:
    """(JSON-able structure, {name: host array}) for `obj`: what `save` puts in a file, for other formats.

    The distributed checkpoint uses it for optimizer hyperparameters, non-elementwise optimizer state
    and user extras, so one encoding serves both formats.
    """
    encoder = _Encoder()
    too_deep_error = ValueError(f"cannot save an object nested this deeply: its structure may nest at most "
                                f"{MAX_DEPTH} JSON levels (a list adds one, a dict or tuple two or three)")
    try:
        structure = encoder.encode(obj, ())
    except RecursionError:
        raise too_deep_error from None
    if too_deep(structure, MAX_DEPTH):
        raise too_deep_error
    return structure, encoder.tensors


def too_deep(node, limit: int) -> bool:
    """True when the JSON value `node` nests lists/dicts more than `limit` levels (checked iteratively)."""
    stack = [(node, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def from_structure(structure, arrays: dict, source: str):
    """Rebuild the object `to_structure` encoded; `source` names the file in error messages.

    Raises:
        ValueError: naming `source`, for any malformed structure (unknown entries, missing arrays,
            nesting deeper than MAX_DEPTH).
    """
    return _Decoder(arrays, source, None, "not a valid structure").decode_checked(structure)


def _create_temp(path: str) -> str:
    """Create an empty, new temporary file beside `path` and return its name.

    Beside `path` so that the final rename stays on one file system (and is atomic); created with
    mode 0o666 so that the umask decides the saved file's permissions, as for any new file.
    """
    directory, base = os.path.split(os.path.abspath(path))
    while True:
        tmp_path = os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp_path
        except FileExistsError:
            continue


def _write_file(tensors: dict, metadata: dict, tmp_path: str) -> None:
    """Serialize into `tmp_path` and force it to disk (a separate step so tests can fail it)."""
    save_file(tensors, tmp_path, metadata=metadata)
    with open(tmp_path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable (POSIX); platforms that cannot open a directory skip it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(obj, path) -> None:
    """Save a state dict (or any nesting of dicts, lists, tuples, arrays and scalars) to `path`.

    The write is atomic: the file is written under a temporary name in the same directory, flushed
    to disk and renamed over `path`, so a crash or error mid-save leaves any previous file whole.
    An error removes the temporary file; a killed process may leave it behind (".<name>.*.tmp").

    Args:
        obj: what to save; see the module docstring for the supported types.
        path: a file path (str or os.PathLike).

    Raises:
        TypeError: for an unsupported value, key or dtype; the message names its key path.
        ValueError: for an object nested too deeply to load back.
    """
    path = os.fspath(path)
    structure, tensors = to_structure(obj)
    metadata = {FORMAT_KEY: FORMAT_VERSION,
                STRUCTURE_KEY: json.dumps(structure, allow_nan=False, separators=(",", ":"))}
    atomic_write(path, lambda tmp_path: _write_file(tensors, metadata, tmp_path))


def atomic_write(path: str, write) -> None:
    """Create `path` all at once: `write(tmp_path)` fills a temporary file beside it, which is then
    renamed over `path` (and the directory entry flushed). If `write` fails, the temporary file is
    removed and any previous `path` is untouched; a killed process may leave ".<name>.*.tmp" behind.
    """
    tmp_path = _create_temp(path)
    mode = os.stat(tmp_path).st_mode & 0o777  # what the umask gives a new file
    try:
        write(tmp_path)
        os.chmod(tmp_path, mode)  # a writer may recreate the file privately (safetensors: 0o600)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


# ---------------------------------------------------------------------------------------- load


class _Decoder:
    """Rebuilds an object from its JSON structure and the file's arrays."""

    def __init__(self, arrays: dict, path: str, device, problem: str = "not a valid lucid.save file"):
        self.arrays = arrays
        self.path = path
        self.device = device
        self.problem = problem
        self._placed = {}  # name -> array on `device`, so a shared array stays shared

    def fail(self, what: str):
        raise ValueError(f"{self.path}: {self.problem}: {what}")

    def decode_checked(self, node):
        """`decode`, after checking the nesting depth without recursion (so no RecursionError escapes)."""
        if too_deep(node, MAX_DEPTH):
            self.fail(f"nested more than {MAX_DEPTH} levels deep")
        return self.decode(node)

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict) or len(node) != 1:
            self.fail(f"unexpected structure entry {str(node)[:80]}")
        (tag, value), = node.items()
        if tag == "tuple" and isinstance(value, list):
            return tuple(self.decode(v) for v in value)
        if tag == "dict" and isinstance(value, list):
            return {self._key(pair): self.decode(pair[1]) for pair in value}
        if tag == "float" and isinstance(value, str) and value in _NONFINITE:
            return _NONFINITE[value]
        if tag in ("tensor", "scalar") and isinstance(value, str):
            if value not in self.arrays:
                self.fail(f"the structure refers to a tensor {value!r} that the file does not hold")
            if tag == "tensor":
                return self.place(value)
            if self.arrays[value].ndim != 0:
                self.fail(f"the scalar {value!r} is stored with shape {self.arrays[value].shape}")
            return self.arrays[value][()]
        self.fail(f"unknown structure entry {str(node)[:80]}")

    def place(self, name: str):
        """The array `name`, moved to the requested device once."""
        if name not in self._placed:
            array = self.arrays[name]
            self._placed[name] = array if self.device is None else _backend.to_device(array, self.device)
        return self._placed[name]

    def _key(self, pair):
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (int, str))
                and not isinstance(pair[0], bool)):
            self.fail(f"bad dict entry {str(pair)[:80]}")
        return pair[0]


def _read_file(path: str) -> tuple[dict, dict]:
    """The metadata and the arrays (fresh, writable NumPy arrays) of a safetensors file.

    Each tensor's dtype is checked by name before it is read: NumPy has no bfloat16 or float8, and a
    file holding them is refused with its tensor named (not with a TypeError from deep inside).
    """
    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            names = list(f.keys())
            for name in names:
                code = f.get_slice(name).get_dtype()
                if code not in _CODES:
                    raise ValueError(f"{path}: tensor {name!r} has dtype {code}, which lucid.load does not read "
                                     f"(supported: {', '.join(sorted(_CODES))})")
            arrays = {name: f.get_tensor(name) for name in names}
    except SafetensorError as exc:
        raise ValueError(f"{path}: not a valid safetensors file ({exc})") from None
    return metadata, arrays


def _parse_structure(text, path: str):
    """The structure JSON of a lucid.save file: strict (no NaN/Infinity constants), errors as ValueError."""
    if not isinstance(text, str):
        raise ValueError(f"{path}: not a valid lucid.save file: its structure is not a string")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"{path}: not a valid lucid.save file: its structure is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, integers past Python's digit limit, NaN
        raise ValueError(f"{path}: not a valid lucid.save file: its structure is not JSON ({exc})") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not allowed (non-finite floats are stored as {{\"float\": ...}})")


def load(path, device=None):
    """Load what `save` wrote to `path`.

    Args:
        path: a file path (str or os.PathLike).
        device: None or "cpu" for NumPy arrays; "gpu" moves every array to the GPU (NumPy scalars
            stay on the host).

    Returns:
        The saved object, rebuilt exactly (see the module docstring). A plain safetensors file
        without lucid's metadata loads as a dict {tensor name: array}.

    Raises:
        FileNotFoundError: when `path` does not exist.
        ValueError: when the file is not a safetensors file or its lucid structure is damaged; the
            message names the path.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path!r}")
    if device is not None and _backend.normalize_device(device) == _backend.CPU:
        device = None
    metadata, arrays = _read_file(path)
    if STRUCTURE_KEY not in metadata:
        decoder = _Decoder(arrays, path, device)
        return {name: decoder.place(name) for name in arrays}
    if metadata.get(FORMAT_KEY) != FORMAT_VERSION:
        raise ValueError(f"{path}: written by an unknown version of lucid.save "
                         f"(format {metadata.get(FORMAT_KEY)!r}, this lucid reads {FORMAT_VERSION!r})")
    structure = _parse_structure(metadata[STRUCTURE_KEY], path)
    return _Decoder(arrays, path, device).decode_checked(structure)
