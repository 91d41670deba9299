"""The checkpoint directory on disk: save subdirectories, the LATEST pointer, the save lock, confined opens.

    CKPT/
      LATEST          {"format", "version", "save": "save-<id>", "manifest_sha256"}: the published save
      .lock           locked (flock) by the saving job's rank 0 for the whole save; never removed
      save-<id>/      one per save, written only by that save; all but the published one are removed
        manifest.json                       by the next save that publishes
        shard-00000-of-00003.safetensors    one per saving rank
        ...

A save writes everything into a fresh save directory, then publishes it by renaming a new LATEST over
the old one (one atomic step), then removes the older save directories. Readers follow LATEST. A second
save into the same directory while one is running finds the lock taken and fails before writing
anything, so at every moment LATEST names one whole checkpoint (or there is none yet).

Reads are confined: every name is checked against the format's own patterns before it is opened, each
file is opened relative to its directory's descriptor with O_NOFOLLOW (a symbolic link is refused, not
followed) and O_NONBLOCK (a FIFO cannot hang the reader), and must be a regular file (or directory).
Removal only ever touches names this format writes.
"""

from __future__ import annotations

import datetime
import errno
import os
import socket
import stat
import warnings

from lucid.serialization import atomic_write

from ._format import (FORMAT, LOCK, MANIFEST, POINTER, VERSION, CheckpointError, Field, canonical,
                      is_own_file_name, is_save_dir_name, is_temporary_name, parse_json)

_HOLDER = 256  # bytes of the lock file that name the saving process
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


# ---------------------------------------------------------------------------------------- confined reads


def open_directory(path: str) -> int:
    """A descriptor of the checkpoint directory the user named (a symbolic link there is the user's own)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint directory") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot open the checkpoint directory ({exc.strerror})") from None


def open_entry(dir_fd: int, name: str, shown: str, directory: bool = False, what: str = "") -> int:
    """Open `name` inside the directory `dir_fd`: a plain name, no symbolic link, a regular file (or a
    directory). `shown` is the path used in messages, `what` the kind of file they call it."""
    what = what or ("directory" if directory else "file")
    if not name or "/" in name or name in (".", ".."):
        raise CheckpointError(f"{shown}: not a plain file name")
    try:
        fd = os.open(name, _READ | (os.O_DIRECTORY if directory else 0), dir_fd=dir_fd)
    except FileNotFoundError:
        raise CheckpointError(f"{shown}: {what} is missing") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) or _is_link(dir_fd, name):
            raise CheckpointError(f"{shown}: is a symbolic link; refused (a checkpoint reads only its own "
                                  "files)") from None
        raise CheckpointError(f"{shown}: cannot open ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)):
        os.close(fd)
        raise CheckpointError(f"{shown}: not a regular {'directory' if directory else 'file'}")
    return fd


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def read_entry(dir_fd: int, name: str, shown: str, cap: int) -> bytes:
    """The whole content of a small file inside `dir_fd`, refused when larger than `cap` bytes."""
    fd = open_entry(dir_fd, name, shown)
    try:
        size = os.fstat(fd).st_size
        if size > cap:
            raise CheckpointError(f"{shown}: {size} bytes; a checkpoint's {name} is at most {cap}")
        return read_exactly(fd, 0, size, shown)
    finally:
        os.close(fd)


def read_exactly(fd: int, offset: int, size: int, shown: str, into=None) -> memoryview | bytes:
    """`size` bytes at `offset` (into the writable buffer `into` when given); short reads are errors."""
    buffer = memoryview(bytearray(size) if into is None else into).cast("B")
    done = 0
    while done < size:
        count = _preadv(fd, buffer[done:], offset + done)
        if count == 0:
            raise CheckpointError(f"{shown}: the file ended early (truncated while being read?)")
        done += count
    return bytes(buffer) if into is None else buffer


def _preadv(fd: int, buffer: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [buffer], offset)
    os.lseek(fd, offset, os.SEEK_SET)  # platforms without preadv: one reader per descriptor, so no race
    return os.readv(fd, [buffer])


def parse_pointer(data: bytes, shown: str) -> dict:
    pointer = parse_json(data, shown)
    at = Field(shown)
    at.obj(pointer, ("format", "version", "save", "manifest_sha256"))
    at["format"].str(pointer["format"], choices={FORMAT})
    if pointer["version"] != VERSION:
        at["version"].fail(f"format version {pointer['version']!r}; this code reads version {VERSION}")
    at["save"].str(pointer["save"], r"save-[0-9a-f]{12}")
    at["manifest_sha256"].sha256(pointer["manifest_sha256"])
    return pointer


def read_pointer(dir_fd: int, path: str) -> dict:
    shown = os.path.join(path, POINTER)
    try:
        data = read_entry(dir_fd, POINTER, shown, 4096)
    except CheckpointError:
        if _exists(dir_fd, POINTER):
            raise
        if _exists(dir_fd, MANIFEST):
            raise CheckpointError(f"{path}: a checkpoint of format version 1 (a top-level manifest.json); "
                                  f"this code reads version {VERSION}: load it with the version that wrote "
                                  "it and save it again") from None
        raise CheckpointError(f"{shown}: no checkpoint in {path} (no LATEST pointer; a save publishes it "
                              "last, so a save that did not finish leaves none)") from None
    return parse_pointer(data, shown)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------- the save lock


class SaveLock:
    """An exclusive lock on the checkpoint directory, held by the saving job's rank 0 (flock).

    A second save while one is running fails at once, naming the holder; the lock goes with the
    process, so a killed save never leaves it held. On a file system without flock, saves go on
    unlocked with a warning (then two concurrent saves are not detected).
    """

    def __init__(self, path: str):
        self.path, self.fd = path, None

    def acquire(self) -> None:
        import fcntl
        os.makedirs(self.path, exist_ok=True)
        fd = os.open(os.path.join(self.path, LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW |
                     getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, _HOLDER, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise CheckpointError(f"{self.path}: another save into this checkpoint directory is in progress "
                                  f"({holder}); this save wrote nothing") from None
        except OSError as exc:
            warnings.warn(f"{self.path}: cannot lock the checkpoint directory ({exc.strerror}); concurrent "
                          "saves into it will not be detected", RuntimeWarning, stacklevel=3)
        holder = (f"pid {os.getpid()} on {socket.gethostname()}, since "
                  f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
        os.pwrite(fd, holder.encode()[:_HOLDER].ljust(_HOLDER), 0)  # fixed size: no truncation (no metadata)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


# ---------------------------------------------------------------------------------------- writes


def create_save_dir(path: str, name: str) -> str:
    """Create the fresh save directory `name` inside `path` (it must not exist)."""
    save_path = os.path.join(path, name)
    os.mkdir(save_path)
    return save_path


def publish(path: str, save: str, manifest_sha256: str) -> None:
    """Make `save` the checkpoint: one atomic rename of a new LATEST over the old one."""
    document = {"format": FORMAT, "version": VERSION, "save": save, "manifest_sha256": manifest_sha256}

    def write(tmp_path):
        with open(tmp_path, "wb") as f:
            f.write(canonical(document) + b"\n")
            f.flush()
            os.fsync(f.fileno())
    atomic_write(os.path.join(path, POINTER), write)


def write_json(path: str, document: dict) -> None:
    """Write a JSON document atomically, in its canonical encoding (one line: the C encoder, no indent)."""
    def write(tmp_path):
        with open(tmp_path, "wb") as f:
            f.write(canonical(document) + b"\n")
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, write)


def remove_save_dir(save_path: str) -> None:
    """Remove a save directory's own files (and it, once empty); anything else in it stays."""
    try:
        entries = list(os.scandir(save_path))
    except OSError:
        return
    for entry in entries:
        if is_own_file_name(entry.name) and not entry.is_dir(follow_symlinks=False):
            _unlink(entry.path)
    try:
        os.rmdir(save_path)
    except OSError:
        pass  # not empty: it holds files this format did not write


def remove_stale(path: str, keep: str) -> None:
    """Remove every save directory but `keep`, and pointer temporaries (under the lock: none is in use)."""
    for entry in list(os.scandir(path)):
        if is_save_dir_name(entry.name) and entry.name != keep and entry.is_dir(follow_symlinks=False):
            remove_save_dir(entry.path)
        elif is_temporary_name(entry.name) and entry.name.startswith(f".{POINTER}."):
            _unlink(entry.path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
