"""Run every benchmark; rewrite docs/benchmarks.md, the figures and README.md's measured section from them.

    python scripts/run_benchmarks.py            # all of them (several minutes; needs the bench extra)
    python scripts/run_benchmarks.py --only optim comm     # those; docs only, README.md untouched

Each benchmark is a script of its own that prints a table and writes JSON (and a PNG with matplotlib);
this one runs them one after another (never two at once: they would disturb each other's timings),
times the main job itself, then renders each JSON with that script's `markdown()` into the document.
Only a full run rewrites README.md's "Measured" section (scripts/readme_measured.py), so the README's
numbers and figures always come from one run; it refuses to if a figure the README shows was not
drawn in this run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"

# --quick: every benchmark at a toy size, to check the whole pipeline (JSON -> docs, figures, README) in
# seconds; its numbers mean nothing. Keyed by benchmark name; appended to that benchmark's command.
QUICK = {
    "autograd": ["--batch", "8", "--sizes", "16", "8", "4", "--reps", "3", "--warmup", "1"],
    "optim": ["--tensors", "2", "--numel", "1000", "--reps", "1", "--skip-compile"],
    "comm": ["--tensors", "2", "--numel", "1000", "--reps", "1", "--warmup", "1", "--caps", "25",
             "--sizes", "4096", "--no-torch"],
    "comm-single": ["--tensors", "2", "--numel", "1000", "--reps", "1", "--warmup", "1"],
    "zero": ["--sizes", "1", "2", "--tensors", "2", "--numel", "1000", "--matrices", "2", "--matrix-numel", "100",
             "--reps", "1", "--io-reps", "1"],
}


class Place:
    """Where a run writes: results (JSON), figures, docs/benchmarks.md and README.md (the checkout by default)."""

    def __init__(self, out: Path | None = None):
        base = ROOT if out is None else Path(out)
        self.results = base / "bench-results"
        self.images = base / "docs" / "img"
        self.docs = base / "docs" / "benchmarks.md"
        self.readme = base / "README.md"


def mpiexec() -> str:
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else (shutil.which("mpiexec") or "mpiexec")


def benchmarks(place: Place | None = None, quick: bool = False) -> list:
    """(name, title, command, JSON file, plot file or None) for each benchmark, in running order."""
    place = place or Place()
    py, res, img = sys.executable, place.results, place.images
    entries = [
        ("autograd", "Forward + backward of an MLP (lucid vs PyTorch)",
         [py, "scripts/bench_autograd.py", "--json", f"{res}/autograd.json"], "autograd.json", None),
        ("optim", "Optimizer steps (lucid vs PyTorch)",
         [py, "scripts/bench_optim.py", "--json", f"{res}/optim.json", "--plot", f"{img}/optim.png"],
         "optim.json", "optim.png"),
        ("comm", "Gradient reduction at 2 ranks (lucid vs raw MPI and PyTorch DDP over gloo)",
         [mpiexec(), "-n", "2", py, "scripts/bench_comm.py", "--json", f"{res}/comm.json",
          "--plot", f"{img}/comm.png"], "comm.json", "comm.png"),
        ("comm-single", "The wrapper's cost in one process",
         [py, "scripts/bench_comm.py", "--single", "--json", f"{res}/comm-single.json"],
         "comm-single.json", None),
        ("zero", "ZeRO sharding and checkpoints at 1, 2 and 3 ranks",
         [py, "scripts/bench_zero.py", "--all", "--json", f"{res}/zero.json", "--plot", f"{img}/zero.png"],
         "zero.json", "zero.png"),
    ]
    if quick:
        entries = [(name, title, command + QUICK[name], json_name, plot)
                   for name, title, command, json_name, plot in entries]
    return entries


MAIN_JOB = ["mpiexec", "-n", "2", "python", "scripts/train.py"]  # README.md's main command


def time_main_job(quick: bool = False) -> dict:
    """The README's main job, timed as a whole command; its final test accuracy."""
    command = [mpiexec() if part == "mpiexec" else sys.executable if part == "python" else part for part in MAIN_JOB]
    command += ["--epochs", "1"] if quick else []
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    match = re.fullmatch(r"test accuracy: (\d\.\d+)", done.stdout.strip().splitlines()[-1])
    if match is None:
        raise RuntimeError(f"the main job's last line is not its test accuracy:\n{done.stdout[-2000:]}")
    return {"command": " ".join(MAIN_JOB), "seconds": seconds, "accuracy": float(match.group(1))}


def rewrite_readme(ran: list, place: Place) -> None:
    """README.md's measured section from this run's results (see scripts/readme_measured.py)."""
    sys.path.insert(0, str(SCRIPTS))
    import readme_measured
    results = {name: json.loads((place.results / json_name).read_text()) for name, _, _, json_name, _ in ran}
    figures = {plot for *_, plot in ran if plot and (place.images / plot).exists()}
    source = place.readme if place.readme.exists() else ROOT / "README.md"
    place.readme.write_text(readme_measured.rewrite(source.read_text(), results, figures))
    print(f"wrote the measured section of {place.readme}")


def load_script(name: str):
    """Import scripts/<name>.py as a module (for its markdown())."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPTS))
    spec.loader.exec_module(module)
    return module


def render(ran: list, place: Place) -> str:
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
        report = json.loads((place.results / json_name).read_text())
        lines += [f"## {title}", "", f"`{' '.join(_display(c) for c in command)}`", "",
                  load_script(Path(script).stem).markdown(report), ""]
        if plot and (place.images / plot).exists():
            lines += [f"![{title}](img/{plot})", ""]
    return "\n".join(lines)


def _display(part: str) -> str:
    return "python" if part == sys.executable else ("mpiexec" if part.endswith("mpiexec") else part)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="benchmark names to run (the others keep their last JSON)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the document from the last JSON")
    parser.add_argument("--quick", action="store_true",
                        help="toy sizes: checks the pipeline in seconds; use with --out (the numbers mean nothing)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write results, figures, docs and a README.md copy under this directory instead")
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        parser.error("--quick needs --out: toy numbers must not overwrite the checkout's README and docs")
    place = Place(args.out)
    place.results.mkdir(parents=True, exist_ok=True)
    place.images.mkdir(parents=True, exist_ok=True)
    ran, fresh = [], []
    for entry in benchmarks(place, args.quick):
        name, _, command, json_name, _ = entry
        if not args.render_only and (not args.only or name in args.only):
            print(f"== {name}: {' '.join(command)}", flush=True)
            subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            fresh.append(entry)
        if (place.results / json_name).exists():
            ran.append(entry)
    place.docs.write_text(render(ran, place) + "\n")
    print(f"wrote {place.docs}")
    if len(fresh) == len(benchmarks()):
        print(f"== main job: {' '.join(MAIN_JOB)}", flush=True)
        (place.results / "train.json").write_text(json.dumps(time_main_job(args.quick), indent=2) + "\n")
        rewrite_readme(fresh + [("train", "", [], "train.json", None)], place)
    else:
        print("README.md's measured section is left as it is: only a full run rewrites it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
