"""Shared pieces of the benchmark scripts: machine facts, interleaved timing, tables, JSON and plots."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path


def pin_threads(threads: int) -> None:
    """Set BLAS/OpenMP/numba thread counts; call before numpy is imported to take effect for BLAS."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


def machine() -> dict:
    """What the numbers were measured on."""
    import numpy as np
    info = {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(), "platform": platform.platform()}
    for name in ("torch", "numba", "mpi4py"):
        try:
            module = __import__(name)
            info[name] = module.__version__
        except ImportError:
            info[name] = None
    return info


def time_once(fn) -> float:
    """Seconds one call of `fn` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(contestants: dict, reps: int, warmup: int = 1) -> dict:
    """Median seconds per call of each contestant, taking turns each repetition (the machine is noisy)."""
    samples = {name: [] for name in contestants}
    for rep in range(warmup + reps):
        for name, fn in contestants.items():
            elapsed = time_once(fn)
            if rep >= warmup:
                samples[name].append(elapsed)
    return {name: statistics.median(s) for name, s in samples.items()}


def print_table(headers: list, rows: list) -> None:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for k, row in enumerate(cells):
        print("  ".join(c.rjust(w) if k else c.ljust(w) for c, w in zip(row, widths)))


def markdown_table(headers: list, rows: list) -> str:
    """The same table in Markdown, for docs/benchmarks.md."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


def write_json(path, report: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path


def pyplot():
    """matplotlib.pyplot with a file-only backend, or None without the bench extra."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        return None
