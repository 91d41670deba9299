"""Benchmark ZeRO-style sharding and sharded checkpoints: state bytes per rank, step time, save/load MB/s.

Adam over 10 M float32 parameters in 100 tensors, wrapped in a DistributedOptimizer twice, replicated
(`shard_state=False`) and sharded (`shard_state=True`). Measured at the world size it runs at:

- optimizer-state bytes per rank: the flat buffers' state arrays (replicated) against
  `_sharding.state_bytes()` (sharded), on every rank;
- step time: reduction + update (+ all-gather of the parameters when sharded), interleaved medians;
- `distributed.checkpoint` save and load throughput (SHA-256, fsync, manifest included) against
  `numpy.save` / `numpy.load` of the same bytes per rank, with and without fsync, and SHA-256 alone.

    python scripts/bench_zero.py                    # one process
    mpiexec -n 3 python scripts/bench_zero.py       # three ranks
    python scripts/bench_zero.py --all              # launches 1, 2 and 3 ranks and merges the results

Rank 0 prints the table; the results go into bench-results/zero.json (one entry per world size, so
separate runs accumulate) and, with matplotlib, bench-results/zero.png (state bytes per rank and
checkpoint throughput against the world size).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")
_LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPI_LOCAL", "SLURM_", "MPIEXEC_")


def launcher_size() -> int:
    """The world size the launcher started (1 without one), read before NumPy is imported."""
    return next((int(os.environ[v]) for v in _SIZE_VARS if os.environ.get(v, "").isdigit()), 1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions of each step (median)")
    parser.add_argument("--io-reps", type=int, default=5, help="timed repetitions of each save/load (median)")
    parser.add_argument("--numel", type=int, default=100_000, help="elements per tensor")
    parser.add_argument("--tensors", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per rank (default: the cores shared out among the ranks)")
    parser.add_argument("--dir", default=None, help="where to write the checkpoints (default: a temp dir)")
    parser.add_argument("--all", action="store_true", help="run at 1, 2 and 3 ranks (mpiexec) and merge")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1, 2, 3], help="world sizes for --all")
    parser.add_argument("--json", default="bench-results/zero.json")
    parser.add_argument("--plot", default="bench-results/zero.png")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------- one world size


def build(shapes, sharded: bool, comm):
    """A DistributedOptimizer over fresh parameters with gradients, its state created by one step."""
    import numpy as np

    from lucid import nn, optim

    import distributed
    rng = np.random.default_rng(0)
    params = [nn.Parameter(rng.standard_normal(s, dtype=np.float32)) for s in shapes]
    names = [(f"p{i}", p) for i, p in enumerate(params)]
    opt = distributed.DistributedOptimizer(optim.Adam(params, lr=1e-3), names, shard_state=sharded, comm=comm)
    for p in params:
        p.grad = rng.standard_normal(p.shape, dtype=np.float32) * 1e-3
    opt.step()
    return opt


def state_bytes(opt) -> int:
    """Bytes of optimizer state this rank holds."""
    if opt._sharding is not None:
        return opt._sharding.state_bytes()
    return sum(a.nbytes for flat in opt._flats for a in flat.state.values())


def model_bytes(opt) -> int:
    """Bytes of parameters + gradients (the same on every rank either way)."""
    return sum(flat.data.nbytes + flat.grad.nbytes for flat in opt._flats)


def timed_collective(comm, fn):
    """`fn` followed by a barrier: the wall time of the slowest rank (the previous call's barrier starts it)."""
    def run():
        fn()
        comm.barrier()
    return run


def shard_arrays(opt) -> list:
    """The arrays this rank's checkpoint shard holds: its slice of each parameter and its own state."""
    from distributed.checkpoint._layout import describe
    from distributed.checkpoint._save import prepare
    plan = prepare("", None, describe(None, opt), None, opt.comm.rank, opt.comm.size)
    return list(plan.tensors.values())


def measure_io(opt, comm, directory: str, reps: int) -> dict:
    """checkpoint.save/load of the sharded optimizer against numpy.save/load of the same bytes per rank."""
    import hashlib

    import numpy as np

    from distributed import checkpoint
    ckpt = os.path.join(directory, "ckpt")
    same = np.concatenate([a.reshape(-1) for a in shard_arrays(opt)])  # what this rank's shard holds
    mine = os.path.join(directory, f"numpy-rank{comm.rank}.npy")

    def np_save(sync: bool):
        def save():
            with open(mine, "wb") as f:
                np.save(f, same)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
        return save

    checkpoint.save(ckpt, optimizer=opt)  # the directory and the files exist before timing
    np_save(True)()
    contestants = {
        "checkpoint.save": timed_collective(comm, lambda: checkpoint.save(ckpt, optimizer=opt)),
        "numpy.save": timed_collective(comm, np_save(False)),
        "numpy.save + fsync": timed_collective(comm, np_save(True)),
        "sha256 only": timed_collective(comm, lambda: hashlib.sha256(memoryview(same.view(np.uint8))).digest()),
        "checkpoint.load": timed_collective(comm, lambda: checkpoint.load(ckpt, optimizer=opt)),
        "numpy.load": timed_collective(comm, lambda: np.load(mine)),
    }
    seconds = benchlib.interleaved(contestants, reps)
    manifest = json.loads(Path(ckpt, json.loads(Path(ckpt, "LATEST").read_text())["save"], "manifest.json")
                          .read_text())
    ckpt_bytes = sum(f["bytes"] for f in manifest["files"])
    np_bytes = same.nbytes * comm.size
    rows = {}
    for name, s in seconds.items():
        total = ckpt_bytes if name.startswith("checkpoint") else np_bytes
        rows[name] = {"ms": s * 1e3, "mb_per_rank": total / comm.size / 1e6, "mb_total": total / 1e6,
                      "mb_per_s_per_rank": total / comm.size / 1e6 / s, "mb_per_s_total": total / 1e6 / s}
    rows["fsync cost"] = {"ms": (seconds["numpy.save + fsync"] - seconds["numpy.save"]) * 1e3}
    return rows


def run_one(args) -> dict:
    import numpy as np

    import distributed
    comm = distributed.init()
    shapes = [(args.numel,)] * args.tensors
    replicated = build(shapes, False, comm)
    sharded = build(shapes, True, comm)
    per_rank = comm.allgather_object({"replicated": state_bytes(replicated), "sharded": state_bytes(sharded)})
    steps = benchlib.interleaved({"replicated": timed_collective(comm, replicated.step),
                                  "sharded": timed_collective(comm, sharded.step)}, args.reps)
    del replicated
    directory = args.dir
    owned = None
    if directory is None:
        owned = tempfile.mkdtemp(prefix="bench-zero-") if comm.rank == 0 else None
        directory = comm.broadcast_object(owned)
    try:
        io = measure_io(sharded, comm, directory, args.io_reps)
    finally:
        comm.barrier()
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)
    return {"world_size": comm.size, "rank": comm.rank,
            "params": int(sum(int(np.prod(s)) for s in shapes)),
            "model_bytes_per_rank": model_bytes(sharded),
            "state_bytes_per_rank": per_rank,
            "state_mb_per_rank": {kind: max(r[kind] for r in per_rank) / 1e6 for kind in ("replicated", "sharded")},
            "step_ms": {kind: s * 1e3 for kind, s in steps.items()},
            "io": io}


# ---------------------------------------------------------------------------------------- tables, JSON, plot


def print_run(run: dict, config: dict) -> None:
    n = run["world_size"]
    print(f"\nworld size {n}: {run['params'] / 1e6:.1f} M float32 params in {config['tensors']} tensors, Adam, "
          f"{config['threads']} thread(s) per rank, medians of {config['reps']} steps / {config['io_reps']} saves")
    state = run["state_mb_per_rank"]
    print_table(["per rank", "replicated", "sharded", "sharded / replicated"], [
        ["optimizer state MB (max over ranks)", state["replicated"], state["sharded"],
         state["sharded"] / state["replicated"]],
        ["step ms (reduce + update [+ all-gather])", run["step_ms"]["replicated"], run["step_ms"]["sharded"],
         run["step_ms"]["sharded"] / run["step_ms"]["replicated"]],
    ])
    print(f"state bytes on each rank: replicated {[r['replicated'] for r in run['state_bytes_per_rank']]}, "
          f"sharded {[r['sharded'] for r in run['state_bytes_per_rank']]}")
    rows = []
    for name, row in run["io"].items():
        if name == "fsync cost":
            continue
        rows.append([name, row["mb_per_rank"], row["ms"], row["mb_per_s_per_rank"], row["mb_per_s_total"]])
    print()
    print_table(["sharded Adam state, per rank", "MB per rank", "ms (slowest rank)", "MB/s per rank",
                 "MB/s all ranks"], rows)
    print(f"fsync of {run['io']['numpy.save']['mb_per_rank']:.0f} MB per rank costs "
          f"{run['io']['fsync cost']['ms']:.0f} ms (numpy.save + fsync - numpy.save); checkpoint.save includes "
          "SHA-256, fsync of every shard, the manifest and LATEST; loads verify and read files the page cache holds")


def print_table(headers, rows) -> None:
    benchlib.print_table(headers, rows)


SUMMARY = ["ranks", "threads/rank", "state MB/rank replicated", "state MB/rank sharded", "step ms replicated",
           "step ms sharded", "ckpt save MB/s", "np.save MB/s", "np.save+fsync MB/s", "ckpt load MB/s", "np.load MB/s"]


def summary_rows(report: dict) -> list:
    rows = []
    for key in sorted(report["runs"], key=int):
        run = report["runs"][key]
        io = run["io"]
        rows.append([run["world_size"], run.get("threads_per_rank"), run["state_mb_per_rank"]["replicated"],
                     run["state_mb_per_rank"]["sharded"],
                     run["step_ms"]["replicated"], run["step_ms"]["sharded"],
                     io["checkpoint.save"]["mb_per_s_total"], io["numpy.save"]["mb_per_s_total"],
                     io["numpy.save + fsync"]["mb_per_s_total"], io["checkpoint.load"]["mb_per_s_total"],
                     io["numpy.load"]["mb_per_s_total"]])
    return rows


def markdown(report: dict) -> str:
    """The summary as Markdown, for docs/benchmarks.md."""
    c = report["config"]
    head = (f"{c['optimizer']} on {c['tensors']} tensors x {c['numel']:,} float32 per rank; step times are medians "
            f"of {c['reps']} interleaved steps (slowest rank); checkpoint figures are MB/s over all ranks, "
            f"median of {c['io_reps']}, next to numpy.save of the same bytes (checkpoint.save includes SHA-256 "
            "and an fsync of every file).")
    return head + "\n\n" + benchlib.markdown_table(SUMMARY, summary_rows(report))


def merge(path: str, run: dict, config: dict) -> dict:
    """Add this world size's run to the JSON file (kept when it was measured with the same config)."""
    report = None
    if Path(path).exists():
        try:
            report = json.loads(Path(path).read_text())
        except json.JSONDecodeError:
            report = None
    if not report or report.get("config") != config:
        report = {"config": config, "machine": benchlib.machine(), "runs": {}}
    report["runs"][str(run["world_size"])] = run
    return report


def plot(report: dict, path: str) -> None:
    plt = benchlib.pyplot()
    if plt is None or not report["runs"]:
        return
    runs = [report["runs"][k] for k in sorted(report["runs"], key=int)]
    sizes = [r["world_size"] for r in runs]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4))
    left.plot(sizes, [r["state_mb_per_rank"]["replicated"] for r in runs], "o-", label="replicated")
    left.plot(sizes, [r["state_mb_per_rank"]["sharded"] for r in runs], "o-", label="sharded (ZeRO)")
    full = runs[0]["state_mb_per_rank"]["replicated"]
    left.plot(sizes, [full / n for n in sizes], "k:", label="replicated / world size")
    left.set_xlabel("world size (ranks)")
    left.set_ylabel("Adam state MB per rank (10 M float32 params)")
    left.set_xticks(sizes)
    left.set_ylim(bottom=0)
    left.legend()
    for kind, label in (("replicated", "replicated"), ("sharded", "sharded (ZeRO)")):
        middle.plot(sizes, [r["step_ms"][kind] for r in runs], "o-", label=label)
    middle.set_xlabel("world size (ranks)")
    middle.set_ylabel("Adam step ms (reduce + update [+ all-gather])")
    middle.set_xticks(sizes)
    middle.set_ylim(bottom=0)
    middle.legend()
    for name, label in (("checkpoint.save", "checkpoint.save"), ("numpy.save + fsync", "numpy.save + fsync"),
                        ("numpy.save", "numpy.save (no fsync)"), ("checkpoint.load", "checkpoint.load")):
        right.plot(sizes, [r["io"][name]["mb_per_s_total"] for r in runs], "o-", label=label)
    right.set_xlabel("world size (ranks)")
    right.set_ylabel("MB/s, all ranks together")
    right.set_xticks(sizes)
    right.set_ylim(bottom=0)
    right.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def config_of(args) -> dict:
    return {"tensors": args.tensors, "numel": args.numel, "dtype": "float32", "optimizer": "Adam",
            "reps": args.reps, "io_reps": args.io_reps}


# ---------------------------------------------------------------------------------------- driver


def mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("mpiexec not found (pip install mpich)")
    return found


def run_all(args) -> dict:
    """Run this script at each world size (1 as a plain process), each into its own JSON, then merge."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LAUNCHER_PREFIXES)}
    passed = ["--reps", str(args.reps), "--io-reps", str(args.io_reps), "--numel", str(args.numel),
              "--tensors", str(args.tensors), "--plot", ""]
    if args.dir:
        passed += ["--dir", args.dir]
    report = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            out = os.path.join(tmp, f"zero-{n}.json")
            prefix = [] if n == 1 else [mpiexec(), "-n", str(n)]
            threads = ["--threads", str(args.threads)] if args.threads else []
            command = prefix + [sys.executable, __file__, "--json", out, *passed, *threads]
            print("$", " ".join(command), flush=True)
            subprocess.run(command, env=env, check=True)
            part = json.loads(Path(out).read_text())
            if report is None:
                report = {"config": part["config"], "machine": part["machine"], "runs": {}}
            report["runs"].update(part["runs"])
    return report


def main(argv=None):
    args = parse_args(argv)
    if args.all:
        report = run_all(args)
        return publish(report, args, f"\n{args.tensors} tensors x {args.numel} float32, Adam; MB/s are all ranks "
                                     "together")
    size = launcher_size()
    threads = args.threads or max(1, (os.cpu_count() or 1) // size)
    benchlib.pin_threads(threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    run = run_one(args)
    if run["rank"] != 0:
        return None
    run["threads_per_rank"] = threads
    config = config_of(args)
    print_run(run, {**config, "threads": threads})
    report = merge(args.json, run, config)
    title = f"\nall world sizes in {args.json} (MB/s are all ranks together)" if len(report["runs"]) > 1 else None
    return publish(report, args, title)


def publish(report: dict, args, title) -> dict:
    """Print the summary table under `title` (if any), write the JSON and the plot."""
    if title is not None:
        print(title)
        benchlib.print_table(SUMMARY, summary_rows(report))
    benchlib.write_json(args.json, report)
    if args.plot:
        plot(report, args.plot)
    return report


if __name__ == "__main__":
    main()
