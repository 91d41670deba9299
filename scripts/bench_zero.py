"""Benchmark ZeRO-style sharding and sharded checkpoints: state bytes per rank, step time, save/load MB/s.

Each optimizer is wrapped in a DistributedOptimizer twice, replicated (`shard_state=False`) and sharded
(`shard_state=True`), and measured at the world size the script runs at:

- Adam (elementwise: element slices) over `--tensors` float32 vectors of `--numel` elements;
- Adafactor and Muon (a plain step: whole parameters per rank, balanced by state bytes) over
  `--matrices` float32 matrices of about `--matrix-numel` elements each (Muon's update is a matrix function).

For each: the optimizer-state bytes per rank (`strategy.state_bytes()`, on every rank) and the step time
(reduction + update [+ the parameters back from their owners when sharded]), interleaved medians. Then
`distributed.checkpoint` save and load throughput of the sharded Adam (SHA-256, fsync, manifest
included) against `numpy.save` / `numpy.load` of the same bytes per rank, with and without fsync, and
SHA-256 alone.

    python scripts/bench_zero.py                    # one process
    mpiexec -n 3 python scripts/bench_zero.py       # three ranks
    python scripts/bench_zero.py --all              # launches 1, 2 and 3 ranks and merges the results
    python scripts/bench_zero.py --optimizers adam  # Adam only

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
    parser.add_argument("--tensors", type=int, default=100, help="Adam's tensors")
    parser.add_argument("--matrices", type=int, default=20, help="Adafactor's and Muon's matrices")
    parser.add_argument("--matrix-numel", type=int, default=10_000,
                        help="elements per matrix (Muon's Newton-Schulz steps cost ~15 rows * numel multiply-adds)")
    parser.add_argument("--optimizers", nargs="+", choices=list(OPTIMIZERS), default=list(OPTIMIZERS),
                        help="which optimizers to measure (the checkpoint figures need adam)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per rank (default: the cores shared out among the ranks)")
    parser.add_argument("--dir", default=None, help="where to write the checkpoints (default: a temp dir)")
    parser.add_argument("--all", action="store_true", help="run at 1, 2 and 3 ranks (mpiexec) and merge")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1, 2, 3], help="world sizes for --all")
    parser.add_argument("--json", default="bench-results/zero.json")
    parser.add_argument("--plot", default="bench-results/zero.png")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------- one world size


# name: (lucid.optim class name, options, shapes from args); Adam first: its sharded state is checkpointed
OPTIMIZERS = {
    "adam": ("Adam", dict(lr=1e-3), lambda args: [(args.numel,)] * args.tensors),
    "adafactor": ("Adafactor", dict(lr=1e-2), lambda args: [matrix_shape(args.matrix_numel)] * args.matrices),
    "muon": ("Muon", dict(lr=2e-2), lambda args: [matrix_shape(args.matrix_numel)] * args.matrices),
}


def matrix_shape(numel: int) -> tuple:
    """(rows, columns) with rows <= columns, rows * columns about `numel`, as square as it divides."""
    rows = max(1, int(numel ** 0.5))
    while numel % rows:
        rows -= 1
    return rows, numel // rows


def build(name: str, shapes, sharded: bool, comm):
    """A DistributedOptimizer over fresh parameters with gradients, its state created by one step."""
    import numpy as np

    from lucid import nn, optim

    import distributed
    class_name, options, _ = OPTIMIZERS[name]
    rng = np.random.default_rng(0)
    params = [nn.Parameter(rng.standard_normal(s, dtype=np.float32)) for s in shapes]
    names = [(f"p{i}", p) for i, p in enumerate(params)]
    opt = distributed.DistributedOptimizer(getattr(optim, class_name)(params, **options), names,
                                           shard_state=sharded, comm=comm)
    for p in params:
        p.grad = rng.standard_normal(p.shape, dtype=np.float32) * 1e-3
    opt.step()
    return opt


def state_bytes(opt) -> int:
    """Bytes of optimizer state this rank holds."""
    return opt.strategy.state_bytes()


def model_bytes(opt) -> int:
    """Bytes of parameters + gradients (the same on every rank either way)."""
    return sum(flat.data.nbytes + flat.grad.nbytes for flat in opt.flat_buffers)


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
    plan = prepare("", None, describe(None, opt, opt.comm), None, opt.comm.rank, opt.comm.size)
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


def measure_optimizer(name: str, args, comm) -> tuple:
    """(row, the sharded optimizer): state bytes per rank and step times, replicated against sharded."""
    import numpy as np
    shapes = OPTIMIZERS[name][2](args)
    replicated = build(name, shapes, False, comm)
    sharded = build(name, shapes, True, comm)
    per_rank = comm.allgather_object({"replicated": state_bytes(replicated), "sharded": state_bytes(sharded)})
    steps = benchlib.interleaved({"replicated": timed_collective(comm, replicated.step),
                                  "sharded": timed_collective(comm, sharded.step)}, args.reps)
    total = per_rank[0]["replicated"]
    # element slices split the state evenly; whole parameters may leave one parameter's state over 1/N
    largest = 0 if replicated.optimizer.elementwise else max(
        sum(v.nbytes for v in replicated.state[p].values() if isinstance(v, np.ndarray))
        for g in replicated.param_groups for p in g["params"])
    row = {"params": int(sum(int(np.prod(s)) for s in shapes)), "tensors": len(shapes), "shape": list(shapes[0]),
           "strategy": type(sharded.strategy).__name__,
           "model_bytes_per_rank": model_bytes(sharded),
           "state_bytes_per_rank": per_rank,
           "state_bytes_total": total,
           "state_mb_per_rank": {kind: max(r[kind] for r in per_rank) / 1e6 for kind in ("replicated", "sharded")},
           "bound_mb": (total / comm.size + largest) / 1e6,
           "step_ms": {kind: s * 1e3 for kind, s in steps.items()}}
    return row, sharded


def run_one(args) -> dict:
    import distributed
    comm = distributed.init()
    run = {"world_size": comm.size, "rank": comm.rank, "optimizers": {}}
    for name in args.optimizers:
        row, sharded = measure_optimizer(name, args, comm)
        run["optimizers"][name] = row
        if name == "adam":
            # Adam's figures at the top level too, where readme_measured.py reads them
            run.update({key: row[key] for key in ("params", "model_bytes_per_rank", "state_bytes_per_rank",
                                                   "state_mb_per_rank", "step_ms")})
            run["io"] = measure_checkpoints(sharded, comm, args)
        del sharded
    return run


def measure_checkpoints(sharded, comm, args) -> dict:
    """checkpoint save/load throughput of `sharded`, in args.dir or a temporary directory."""
    directory = args.dir
    owned = None
    if directory is None:
        owned = tempfile.mkdtemp(prefix="bench-zero-") if comm.rank == 0 else None
        directory = comm.broadcast_object(owned)
    try:
        return measure_io(sharded, comm, directory, args.io_reps)
    finally:
        comm.barrier()
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)


# ---------------------------------------------------------------------------------------- tables, JSON, plot


def print_run(run: dict, config: dict) -> None:
    n = run["world_size"]
    print(f"\nworld size {n}: {config['threads']} thread(s) per rank, medians of {config['reps']} steps / "
          f"{config['io_reps']} saves")
    rows = []
    for name, row in run["optimizers"].items():
        state, steps = row["state_mb_per_rank"], row["step_ms"]
        rows.append([f"{name} ({row['strategy']})", row["params"] / 1e6, state["replicated"], state["sharded"],
                     row["bound_mb"], steps["replicated"], steps["sharded"], steps["sharded"] / steps["replicated"]])
    print_table(["optimizer (sharded as)", "M params", "state MB/rank replicated", "sharded (max rank)",
                 "bound 1/N + largest", "step ms replicated", "step ms sharded", "sharded / replicated"], rows)
    for name, row in run["optimizers"].items():
        print(f"{name} state bytes on each rank: replicated {[r['replicated'] for r in row['state_bytes_per_rank']]}, "
              f"sharded {[r['sharded'] for r in row['state_bytes_per_rank']]}")
    if "io" not in run:
        return
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


SUMMARY = ["ranks", "threads/rank", "optimizer", "state MB/rank replicated", "state MB/rank sharded",
           "bound 1/N + largest", "step ms replicated", "step ms sharded", "sharded / replicated"]
IO_SUMMARY = ["ranks", "ckpt save MB/s", "np.save MB/s", "np.save+fsync MB/s", "ckpt load MB/s", "np.load MB/s"]


def _runs(report: dict) -> list:
    return [report["runs"][key] for key in sorted(report["runs"], key=int)]


def summary_rows(report: dict) -> list:
    rows = []
    for run in _runs(report):
        for name, row in run["optimizers"].items():
            state, steps = row["state_mb_per_rank"], row["step_ms"]
            rows.append([run["world_size"], run.get("threads_per_rank"), name, state["replicated"], state["sharded"],
                         row["bound_mb"], steps["replicated"], steps["sharded"],
                         steps["sharded"] / steps["replicated"]])
    return rows


def io_rows(report: dict) -> list:
    rows = []
    for run in _runs(report):
        io = run.get("io")
        if io:
            rows.append([run["world_size"], io["checkpoint.save"]["mb_per_s_total"],
                         io["numpy.save"]["mb_per_s_total"], io["numpy.save + fsync"]["mb_per_s_total"],
                         io["checkpoint.load"]["mb_per_s_total"], io["numpy.load"]["mb_per_s_total"]])
    return rows


def markdown(report: dict) -> str:
    """The summary as Markdown, for docs/benchmarks.md."""
    c = report["config"]
    head = (f"Adam on {c['tensors']} tensors x {c['numel']:,} float32 (element slices when sharded); Adafactor and "
            f"Muon on {c['matrices']} float32 matrices of about {c['matrix_numel']:,} elements (whole parameters per "
            f"rank, balanced by state bytes). State MB is the largest rank's; the bound is 1/N of the total plus the "
            f"largest parameter's state. Step times are medians of {c['reps']} interleaved steps (slowest rank).")
    text = head + "\n\n" + benchlib.markdown_table(SUMMARY, summary_rows(report))
    io = io_rows(report)
    if io:
        text += (f"\n\nCheckpoints of the sharded Adam: MB/s over all ranks, median of {c['io_reps']}, next to "
                 "numpy.save of the same bytes (checkpoint.save includes SHA-256 and an fsync of every file).\n\n"
                 + benchlib.markdown_table(IO_SUMMARY, io))
    return text


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
    names = [name for name in runs[0]["optimizers"] if all(name in r["optimizers"] for r in runs)]
    for name in names:
        rows = [r["optimizers"][name] for r in runs]
        left.plot(sizes, [max(b["sharded"] for b in row["state_bytes_per_rank"]) / row["state_bytes_total"]
                          for row in rows], "o-", label=f"{name} (largest rank)")
        middle.plot(sizes, [row["step_ms"]["sharded"] / row["step_ms"]["replicated"] for row in rows], "o-",
                    label=name)
    left.plot(sizes, [1 / n for n in sizes], "k:", label="1 / world size")
    left.set_xlabel("world size (ranks)")
    left.set_ylabel("sharded state per rank / total state")
    left.set_xticks(sizes)
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)
    middle.axhline(1.0, color="k", linestyle=":")
    middle.set_xlabel("world size (ranks)")
    middle.set_ylabel("step time sharded / replicated")
    middle.set_xticks(sizes)
    middle.set_ylim(bottom=0)
    middle.legend(fontsize=8)
    with_io = [r for r in runs if "io" in r]
    for name, label in (("checkpoint.save", "checkpoint.save"), ("numpy.save + fsync", "numpy.save + fsync"),
                        ("numpy.save", "numpy.save (no fsync)"), ("checkpoint.load", "checkpoint.load")):
        right.plot([r["world_size"] for r in with_io], [r["io"][name]["mb_per_s_total"] for r in with_io], "o-",
                   label=label)
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
    return {"tensors": args.tensors, "matrices": args.matrices, "matrix_numel": args.matrix_numel,
            "numel": args.numel, "dtype": "float32",
            "optimizers": list(args.optimizers), "reps": args.reps, "io_reps": args.io_reps}


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
              "--tensors", str(args.tensors), "--matrices", str(args.matrices),
              "--matrix-numel", str(args.matrix_numel), "--optimizers", *args.optimizers,
              "--plot", ""]
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
        return publish(report, args, "\nall world sizes (MB/s are all ranks together)")
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
        if io_rows(report):
            print()
            benchlib.print_table(IO_SUMMARY, io_rows(report))
    benchlib.write_json(args.json, report)
    if args.plot:
        plot(report, args.plot)
    return report


if __name__ == "__main__":
    main()
