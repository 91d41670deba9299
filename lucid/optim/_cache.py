"""Where compiled kernels are kept between processes: one directory per compiler, under one root."""

from __future__ import annotations

import os
import tempfile

_directories = {}


def directory(name: str) -> str:
    """$LUCID_CACHE_DIR/<name>, else ~/.cache/lucid/<name> (created); a fresh temporary directory
    when that is not writable (a read-only home: compile once per process)."""
    path = _directories.get(name)
    if path is None:
        base = os.environ.get("LUCID_CACHE_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lucid")
        path = os.path.join(base, name)
        try:
            os.makedirs(path, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=path)
            probe.close()
        except OSError:
            path = tempfile.mkdtemp(prefix="lucid-kernels-")
        _directories[name] = path
    return path
