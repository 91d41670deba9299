"""Run every benchmark and rewrite docs/benchmarks.md with their tables, plots, machine and commands.

    python scripts/run_benchmarks.py            # all of them (several minutes; torch makes it complete)
    python scripts/run_benchmarks.py --only optim comm

Each benchmark is a script of its own that prints a table and writes JSON (and a PNG with matplotlib);
this one runs them one after another (never two at once: they would disturb each other's timings),
then renders each JSON with that script's `markdown()` into the document.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
RESULTS = ROOT / "bench-results"
IMAGES = ROOT / "docs" / "img"


def mpiexec() -> str:
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else (shutil.which("mpiexec") or "mpiexec")


def benchmarks() -> list:
    """(name, title, command, JSON file, plot file or None) for each benchmark, in running order."""
    py = sys.executable
    return [
        ("autograd", "Forward + backward of an MLP (lucid vs PyTorch)",
         [py, "scripts/bench_autograd.py", "--json", "bench-results/autograd.json"], "autograd.json", None),
        ("optim", "Optimizer steps (lucid vs PyTorch)",
         [py, "scripts/bench_optim.py", "--json", "bench-results/optim.json", "--plot", "docs/img/optim.png"],
         "optim.json", "optim.png"),
        ("comm", "Gradient reduction at 2 ranks (lucid vs raw MPI and PyTorch DDP over gloo)",
         [mpiexec(), "-n", "2", py, "scripts/bench_comm.py", "--json", "bench-results/comm.json",
          "--plot", "docs/img/comm.png"], "comm.json", "comm.png"),
        ("comm-single", "The wrapper's cost in one process",
         [py, "scripts/bench_comm.py", "--single", "--json", "bench-results/comm-single.json"],
         "comm-single.json", None),
        ("zero", "ZeRO sharding and checkpoints at 1, 2 and 3 ranks",
         [py, "scripts/bench_zero.py", "--all", "--json", "bench-results/zero.json", "--plot", "docs/img/zero.png"],
         "zero.json", "zero.png"),
    ]


def load_script(name: str):
    """Import scripts/<name>.py as a module (for its markdown())."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPTS))
    spec.loader.exec_module(module)
    return module


def render(ran: list) -> str:
    """docs/benchmarks.md: each benchmark's table (and plot), with the command that produced it."""
    sys.path.insert(0, str(SCRIPTS))
    import benchlib
    machine = benchlib.machine()
    lines = ["# Benchmarks", "",
             f"Measured {datetime.date.today().isoformat()} by `python scripts/run_benchmarks.py` on: "
             f"{machine['cpus']} CPUs ({machine['processor']}), {machine['platform']}, Python {machine['python']}, "
             f"NumPy {machine['numpy']}, numba {machine['numba']}, mpi4py {machine['mpi4py']} (MPICH wheel), "
             f"PyTorch {machine['torch']}. No GPU. The machine is a shared 2-core VM: compare numbers within "
             "one table (each is interleaved in one run), not across runs.", ""]
    for name, title, command, json_name, plot in ran:
        script = next(part for part in command if part.startswith("scripts/"))
        report = json.loads((RESULTS / json_name).read_text())
        lines += [f"## {title}", "", f"`{' '.join(_display(c) for c in command)}`", "",
                  load_script(Path(script).stem).markdown(report), ""]
        if plot and (IMAGES / plot).exists():
            lines += [f"![{title}](img/{plot})", ""]
    return "\n".join(lines)


def _display(part: str) -> str:
    return "python" if part == sys.executable else ("mpiexec" if part.endswith("mpiexec") else part)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="benchmark names to run (the others keep their last JSON)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the document from the last JSON")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    IMAGES.mkdir(parents=True, exist_ok=True)
    ran = []
    for entry in benchmarks():
        name, _, command, json_name, _ = entry
        if not args.render_only and (not args.only or name in args.only):
            print(f"== {name}: {' '.join(command)}", flush=True)
            subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if (RESULTS / json_name).exists():
            ran.append(entry)
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "benchmarks.md").write_text(render(ran) + "\n")
    print("wrote docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
