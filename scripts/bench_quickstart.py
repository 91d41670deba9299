"""Benchmark the README's distributed quick start (the digits MLP) at 1 and 2 ranks, as a user runs it.

Each run is a fresh `mpiexec -n N python <quick start>` with no thread variables in its environment
(OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, NUMBA_NUM_THREADS, ... are removed), so it
measures what a user's own script gets from `distributed.init()`. The quick start is the README's
loop, completed with the digits data, `CrossEntropyLoss` and a fixed number of epochs.

    python scripts/bench_quickstart.py                               # this checkout, 1 and 2 ranks
    python scripts/bench_quickstart.py --checkout /tmp/main --checkout .   # before / after in one run

Runs take turns (checkout x ranks, a fresh order each repetition); the table shows medians of the
training loop (slowest rank, from `distributed.init()` returning to the last step) and of the whole
job (startup and imports included), and the 2-rank / 1-rank ratio of each. Writes
bench-results/quickstart.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "GOTO_NUM_THREADS", "NUMBA_NUM_THREADS")
LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPI_LOCAL", "SLURM_", "PYTEST_")

QUICK_START = '''
import json, sys, time
import lucid
import distributed
from lucid import nn, optim
from lucid.datasets import Digits

dataset, epochs, loss_fn = Digits(train=True), int(sys.argv[1]), nn.CrossEntropyLoss()

distributed.init()                                   # MPI under mpiexec, one process otherwise
start = time.perf_counter()
model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
distributed.broadcast_parameters(model.state_dict(), root_rank=0)
opt = distributed.DistributedOptimizer(optim.Adam(model.parameters(), lr=1e-3),
                                       named_parameters=model.named_parameters())
sampler = distributed.DistributedSampler(dataset, shuffle=True, seed=0)
for epoch in range(epochs):
    sampler.set_epoch(epoch)
    for x, y in lucid.data.DataLoader(dataset, batch_size=64, sampler=sampler):
        opt.zero_grad()
        loss_fn(model(x), y).backward()              # buckets start reducing during backward
        opt.step()                                   # wait, average, one fused step
seconds = max(distributed.allgather_object(time.perf_counter() - start))
if distributed.rank() == 0:
    print("QUICKSTART " + json.dumps({"train_s": seconds, "ranks": distributed.size()}))
'''


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", default=None, metavar="DIR",
                        help="a source tree to run (repeat to compare; default: this one)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5, help="timed runs of each (median)")
    parser.add_argument("--json", default="bench-results/quickstart.json")
    return parser.parse_args(argv)


def clean_env(checkout: Path) -> dict:
    """This environment without thread counts or launcher variables, importing `checkout`'s code."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES and not k.startswith(LAUNCHER_PREFIXES)}
    env["PYTHONPATH"] = str(checkout)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else "mpiexec"


def run_once(script: Path, checkout: Path, ranks: int, epochs: int) -> dict:
    """One job; its training seconds (slowest rank) and its wall seconds."""
    command = [mpiexec(), "-n", str(ranks), sys.executable, str(script), str(epochs)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=checkout, env=clean_env(checkout), capture_output=True, text=True,
                          timeout=600)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("QUICKSTART ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(command)} in {checkout} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(lines[-1].split(" ", 1)[1])
    return {"train_s": result["train_s"], "wall_s": wall}


def measure(args) -> dict:
    checkouts = [Path(c).resolve() for c in (args.checkout or [str(ROOT)])]
    samples = {(str(c), n): [] for c in checkouts for n in args.ranks}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "quickstart.py"
        script.write_text(QUICK_START)
        for key in samples:  # warm-up: compile caches, page cache
            run_once(script, Path(key[0]), key[1], 1)
        order = list(samples)
        for rep in range(args.reps):
            random.Random(rep).shuffle(order)
            for checkout, ranks in order:
                samples[(checkout, ranks)].append(run_once(script, Path(checkout), ranks, args.epochs))
    rows = []
    for checkout in checkouts:
        medians = {n: {k: statistics.median(s[k] for s in samples[(str(checkout), n)]) for k in ("train_s", "wall_s")}
                   for n in args.ranks}
        for n in args.ranks:
            base = medians[args.ranks[0]]
            rows.append({"checkout": str(checkout), "ranks": n, **medians[n],
                         "train_ratio": medians[n]["train_s"] / base["train_s"],
                         "wall_ratio": medians[n]["wall_s"] / base["wall_s"],
                         "samples": samples[(str(checkout), n)]})
    return {"config": {"epochs": args.epochs, "reps": args.reps, "ranks": args.ranks,
                       "thread_variables_removed": THREAD_VARIABLES},
            "machine": benchlib.machine(), "rows": rows}


def main(argv=None):
    args = parse_args(argv)
    report = measure(args)
    print(f"README distributed quick start (digits MLP, {args.epochs} epochs), no thread variables set, "
          f"median of {args.reps}\n")
    benchlib.print_table(["checkout", "ranks", "training s", f"vs {args.ranks[0]} rank", "job s",
                          f"vs {args.ranks[0]} rank"],
                         [[r["checkout"], r["ranks"], r["train_s"], r["train_ratio"], r["wall_s"], r["wall_ratio"]]
                          for r in report["rows"]])
    benchlib.write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
