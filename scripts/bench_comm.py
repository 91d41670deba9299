"""Benchmark the gradient reduction of DistributedOptimizer against raw MPI and PyTorch DDP (gloo).

The model is a chain of 100 bias-free Linear layers, alternately 1000->100 and 100->1000, so each of
its 100 weights holds 100 K float32 (40 MB of gradients in all) and backward does real work (two
matmuls) per layer, between the gradients becoming ready. The step is SGD; every figure is a median
of interleaved repetitions, each the slowest rank's time after a barrier.

    mpiexec -n 2 python scripts/bench_comm.py          # (a) (b) (c): ranks > 1
    python scripts/bench_comm.py --single              # (d): the wrapper's overhead at world size 1
    mpiexec -n 2 python scripts/bench_comm.py --before /tmp/main   # (a) and (b) also for main's code

(a) the reduction cost of a step: (distributed step) - (local step), both with forward and backward,
    in units of one raw blocking MPI Allreduce of the same 40 MB; also the time synchronize() waits
    after an overlapped backward, and the reduction with no overlap at all (every bucket after backward);
(b) one bucket per tensor against bucket caps of 1, 4, 25 and 100 MB;
(c) PyTorch DDP over gloo (bucket_cap_mb=25) on the same model, when torch imports;
(d) DistributedOptimizer on SelfComm against the bare optimizer;
(e) with `--before DIR`: the same steps through DIR's `distributed` package (another checkout, say
    main, imported side by side as `distributed_before` on a communicator of its own), interleaved
    with this checkout's in the same processes: before / after under the same load.

Rank 0 prints the table and writes bench-results/comm.json and, with matplotlib, bench-results/comm.png.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

WIDE = 1000  # the chain alternates WIDE -> numel/WIDE -> WIDE features
PER_TENSOR_CAP_MB = 1e-3  # smaller than any gradient: one bucket per tensor


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=100, help="layers, one weight tensor each")
    parser.add_argument("--numel", type=int, default=100_000, help="elements per weight (a multiple of 1000)")
    parser.add_argument("--batch", type=int, default=16, help="rows of the input batch (sets backward's work)")
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions (median)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--caps", type=float, nargs="+", default=[1, 4, 25, 100], help="bucket caps, MB")
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20, 40_000_000, 64 << 20],
                        help="message sizes (bytes) for the raw all-reduce sweep")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/torch threads per rank (default: what distributed.init() shares out)")
    parser.add_argument("--single", action="store_true", help="(d) only: the wrapper's overhead on SelfComm")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch DDP comparison")
    parser.add_argument("--before", metavar="DIR", default=None,
                        help="(e): also time DIR's distributed package (another checkout), interleaved")
    parser.add_argument("--json", default=None, help="default bench-results/comm.json (comm-single.json)")
    parser.add_argument("--plot", default="bench-results/comm.png")
    args = parser.parse_args(argv)
    if args.numel % WIDE:
        parser.error(f"--numel must be a multiple of {WIDE}")
    if args.json is None:
        args.json = "bench-results/comm-single.json" if args.single else "bench-results/comm.json"
    return args


# ---------------------------------------------------------------------------------------- timing


class Timer:
    """Interleaved repetitions across ranks: a barrier before each call, the slowest rank's time kept."""

    def __init__(self, mpi_comm=None):
        self.comm = mpi_comm
        self.samples = {}  # every contestant's per-repetition seconds (slowest rank), kept for the JSON

    def run(self, contestants: dict, reps: int, warmup: int) -> dict:
        """Median seconds of each contestant; one that returns a float reports that instead of its wall time."""
        import numpy as np
        names = list(contestants)
        samples = np.zeros((len(names), reps))
        for rep in range(warmup + reps):
            # a fresh order each repetition (the same on every rank): no contestant always follows the same one
            for i in np.random.default_rng(rep).permutation(len(names)):
                k = names[i]
                seconds = self._once(contestants[k])
                if rep >= warmup:
                    samples[names.index(k), rep - warmup] = seconds
        if self.comm is not None:
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, samples, op=MPI.MAX)
        self.samples.update({k: samples[i].tolist() for i, k in enumerate(names)})
        return {k: float(np.median(samples[i])) for i, k in enumerate(names)}

    def _once(self, fn) -> float:
        if self.comm is not None:
            self.comm.Barrier()
        start = time.perf_counter()
        reported = fn()
        elapsed = time.perf_counter() - start
        return elapsed if reported is None else reported


# ---------------------------------------------------------------------------------------- lucid side


def lucid_chain(tensors: int, numel: int, seed: int = 0):
    """The Linear chain, weights drawn N(0, 1/fan_in) so activations neither vanish nor blow up."""
    import numpy as np

    from lucid import nn
    narrow, rng = numel // WIDE, np.random.default_rng(seed)
    layers = [nn.Linear(WIDE, narrow, bias=False) if i % 2 == 0 else nn.Linear(narrow, WIDE, bias=False)
              for i in range(tensors)]
    for layer in layers:
        fan_in = layer.weight.shape[1]
        layer.weight.data[...] = rng.standard_normal(layer.weight.shape, dtype=np.float32) / np.sqrt(fan_in)
    return nn.Sequential(*layers)


def lucid_input(batch: int, rank: int):
    import numpy as np

    import lucid
    return lucid.Tensor(np.random.default_rng(100 + rank).standard_normal((batch, WIDE), dtype=np.float32))


def loss_backward(model, x) -> None:
    out = model(x)
    (out * out).mean().backward()


def lucid_step(model, opt, x):
    """A training step: zero_grad, forward, backward (reductions start in the hooks), step."""
    def step():
        opt.zero_grad()
        loss_backward(model, x)
        opt.step()
    return step


def exposed_sync(model, opt, x):
    """A training step that reports only how long synchronize() takes after backward."""
    def step():
        opt.zero_grad()
        loss_backward(model, x)
        start = time.perf_counter()
        opt.synchronize()
        elapsed = time.perf_counter() - start
        with opt.skip_synchronize():
            opt.step()
        return elapsed
    return step


def distributed_sgd(model, cap_mb: float, overlap: bool = True, comm=None, package=None):
    """SGD wrapped in a DistributedOptimizer (of `package`, default `distributed`); without overlap every
    bucket is launched by synchronize()."""
    import distributed
    from lucid import optim
    opt = (package or distributed).DistributedOptimizer(optim.SGD(model.parameters(), lr=1e-6), model.named_parameters(),
                                           bucket_cap_mb=cap_mb, comm=comm)
    if not overlap:
        for handle in opt._hooks:  # benchmark only: no hook, so nothing is reduced during backward
            handle.remove()
    return opt


def local_sgd(model):
    from lucid import optim
    return optim.SGD(model.parameters(), lr=1e-6)


# ---------------------------------------------------------------------------------------- raw collectives


def mpi_allreduce(comm, nbytes: int):
    """k back-to-back blocking MPI Allreduce calls; reports seconds per call."""
    import numpy as np
    from mpi4py import MPI
    buf = np.zeros(nbytes // 4, dtype=np.float32)
    calls = max(1, min(1000, (16 << 20) // nbytes))

    def run():
        start = time.perf_counter()
        for _ in range(calls):
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return (time.perf_counter() - start) / calls
    return run


def gloo_allreduce(nbytes: int):
    """k back-to-back torch.distributed.all_reduce calls over gloo; reports seconds per call."""
    import torch
    import torch.distributed as dist
    tensor = torch.zeros(nbytes // 4, dtype=torch.float32)
    calls = max(1, min(100, (16 << 20) // nbytes))  # gloo's ~1 ms floor: fewer calls

    def run():
        start = time.perf_counter()
        for _ in range(calls):
            dist.all_reduce(tensor)
        return (time.perf_counter() - start) / calls
    return run


# ---------------------------------------------------------------------------------------- PyTorch side


def init_gloo(comm) -> bool:
    """torch.distributed over gloo on this MPI job's ranks (tcp on localhost); False without torch."""
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    port = None
    if comm.Get_rank() == 0:
        import socket
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    port = comm.bcast(port, root=0)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=comm.Get_rank(),
                            world_size=comm.Get_size())
    return True


def torch_chain(lucid_model):
    """The same chain in PyTorch, holding copies of the lucid weights."""
    import torch
    layers = []
    for layer in lucid_model:
        out_features, in_features = layer.weight.shape
        twin = torch.nn.Linear(in_features, out_features, bias=False)
        with torch.no_grad():
            twin.weight.copy_(torch.from_numpy(layer.weight.data.copy()))
        layers.append(twin)
    return torch.nn.Sequential(*layers)


def torch_step(model, x):
    """zero_grad, forward, backward (DDP reduces in its hooks), SGD step."""
    import torch
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step():
        opt.zero_grad()
        out = model(x)
        (out * out).mean().backward()
        opt.step()
    return step


def ddp_contestants(lucid_model, x) -> dict:
    """Local torch step, DDP (bucket_cap_mb=25) and DDP with gradient_as_bucket_view, on lucid's weights."""
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP
    tx = torch.from_numpy(x.data.copy())
    return {"torch local": torch_step(torch_chain(lucid_model), tx),
            "torch DDP": torch_step(DDP(torch_chain(lucid_model), bucket_cap_mb=25), tx),
            "torch DDP view": torch_step(DDP(torch_chain(lucid_model), bucket_cap_mb=25,
                                             gradient_as_bucket_view=True), tx)}


# ---------------------------------------------------------------------------------------- measurements


def measure_sizes(timer, comm, sizes, reps: int, gloo: bool) -> list:
    """Raw all-reduce time and bandwidth by message size: MPI, and gloo when available."""
    rows = []
    for nbytes in sizes:
        contestants = {"mpi": mpi_allreduce(comm, nbytes)}
        if gloo:
            contestants["gloo"] = gloo_allreduce(nbytes)
        medians = timer.run(contestants, reps, warmup=1)
        rows.append({"bytes": nbytes, **{f"{k}_us": v * 1e6 for k, v in medians.items()},
                     **{f"{k}_gbs": nbytes / v / 1e9 for k, v in medians.items()}})
    return rows


def measure_lucid(args, timer, comm) -> dict:
    """(a), (b): every lucid step variant interleaved with the raw 40 MB all-reduce that is the unit.

    PyTorch runs in a later, separate block: a torch step slows the next MPI call in this process
    (25 ms instead of 15 ms for the raw 40 MB all-reduce), which would distort the unit.
    """
    import distributed
    x = lucid_input(args.batch, distributed.rank())
    contestants = {"raw allreduce": mpi_allreduce(comm, args.tensors * args.numel * 4)}
    base = lucid_chain(args.tensors, args.numel)
    contestants["local"] = lucid_step(base, local_sgd(base), x)
    for cap in [PER_TENSOR_CAP_MB] + list(args.caps):
        model = lucid_chain(args.tensors, args.numel)
        contestants[f"step {cap:g}"] = lucid_step(model, distributed_sgd(model, cap), x)
        model = lucid_chain(args.tensors, args.numel)
        contestants[f"sync {cap:g}"] = exposed_sync(model, distributed_sgd(model, cap), x)
        model = lucid_chain(args.tensors, args.numel)
        contestants[f"nooverlap {cap:g}"] = exposed_sync(model, distributed_sgd(model, cap, overlap=False), x)
    if args.before:
        before = load_before(args.before)
        before_comm = before.MPIComm(comm.Dup())
        for cap in [PER_TENSOR_CAP_MB] + list(args.caps):
            model = lucid_chain(args.tensors, args.numel)
            contestants[f"before step {cap:g}"] = lucid_step(model, distributed_sgd(model, cap, comm=before_comm,
                                                                                    package=before), x)
            model = lucid_chain(args.tensors, args.numel)
            contestants[f"before sync {cap:g}"] = exposed_sync(model, distributed_sgd(model, cap, comm=before_comm,
                                                                                      package=before), x)
    return timer.run(contestants, args.reps, args.warmup)


def load_before(checkout):
    """`checkout`/distributed imported as the package `distributed_before`, beside this one (same lucid)."""
    import importlib.util
    root = Path(checkout).resolve() / "distributed"
    spec = importlib.util.spec_from_file_location("distributed_before", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    package = importlib.util.module_from_spec(spec)
    sys.modules["distributed_before"] = package
    spec.loader.exec_module(package)
    return package


def measure_torch(args, timer) -> dict:
    """(c): a local torch step against DDP over gloo, same weights and input as the lucid chain."""
    import distributed
    x = lucid_input(args.batch, distributed.rank())
    return timer.run(ddp_contestants(lucid_chain(args.tensors, args.numel), x), args.reps, args.warmup)


def summarize(args, medians: dict, samples: dict) -> dict:
    """Costs in ms and in units of the raw all-reduce; the targets of the issue."""
    unit, local = medians["raw allreduce"], medians["local"]
    caps = []
    for cap in [PER_TENSOR_CAP_MB] + list(args.caps):
        step = medians[f"step {cap:g}"]
        caps.append({"cap_mb": cap, "label": "per tensor" if cap == PER_TENSOR_CAP_MB else f"{cap:g} MB",
                     "step_ms": step * 1e3, "overlapped_ms": (step - local) * 1e3,
                     "overlapped_units": (step - local) / unit,
                     "exposed_sync_ms": medians[f"sync {cap:g}"] * 1e3,
                     "exposed_sync_units": medians[f"sync {cap:g}"] / unit,
                     "no_overlap_ms": medians[f"nooverlap {cap:g}"] * 1e3,
                     "no_overlap_units": medians[f"nooverlap {cap:g}"] / unit})
    out = {"raw_allreduce_ms": unit * 1e3, "local_step_ms": local * 1e3, "caps": caps}
    default = next(c for c in caps if c["cap_mb"] == 25)
    out["targets"] = {"overlapped_units<=1.15": default["overlapped_units"] <= 1.15,
                      "overlapped_units<=1.0 (aim)": default["overlapped_units"] <= 1.0}
    if "before step 25" in medians:
        for c in caps:
            key = f"{c['cap_mb']:g}"
            c["before_step_ms"], c["before_sync_ms"] = medians[f"before step {key}"] * 1e3, \
                medians[f"before sync {key}"] * 1e3
            c["step_change_pct"] = (c["step_ms"] / c["before_step_ms"] - 1) * 100
            # each repetition times both back to back: the median of those ratios shrugs off slow drifts
            # of the machine's load that the two medians alone carry
            pairs = zip(samples[f"step {key}"], samples[f"before step {key}"])
            c["paired_change_pct"] = statistics.median(a / b - 1 for a, b in pairs) * 100
        out["targets"]["step <= 2% slower than before (25 MB, paired)"] = default["paired_change_pct"] <= 2
    if "torch DDP" in medians:
        out["torch"] = {k: medians[k] * 1e3 for k in ("torch local", "torch DDP", "torch DDP view")}
        ddp = medians["torch DDP"] - medians["torch local"]
        ddp_view = medians["torch DDP view"] - medians["torch local"]
        out["torch"].update({"ddp_cost_ms": ddp * 1e3, "ddp_cost_units": ddp / unit,
                             "ddp_view_cost_ms": ddp_view * 1e3, "ddp_view_cost_units": ddp_view / unit,
                             "lucid_speedup": ddp / (default["overlapped_ms"] / 1e3)})
        out["targets"]["lucid >= 2x faster than DDP (aim)"] = out["torch"]["lucid_speedup"] >= 2
    return out


def measure_single(args) -> dict:
    """(d): DistributedOptimizer on SelfComm against the bare optimizer.

    The target compares one model and one SGD, stepped through the wrapper or directly (the same
    arrays, so memory placement cannot tell them apart); two separate models are timed as well.
    """
    import distributed
    world = distributed.SelfComm()
    x = lucid_input(args.batch, 0)
    shared, bare, wrapped = (lucid_chain(args.tensors, args.numel) for _ in range(3))
    shared_opt = distributed_sgd(shared, 25.0, comm=world)
    medians = Timer().run({"bare": lucid_step(shared, shared_opt.optimizer, x),
                           "wrapped": lucid_step(shared, shared_opt, x),
                           "bare (own model)": lucid_step(bare, local_sgd(bare), x),
                           "wrapped (own model)": lucid_step(wrapped, distributed_sgd(wrapped, 25.0, comm=world), x)},
                          args.reps * 3, args.warmup)
    overhead = medians["wrapped"] / medians["bare"] - 1
    separate = medians["wrapped (own model)"] / medians["bare (own model)"] - 1
    return {**{f"{k}_ms": v * 1e3 for k, v in medians.items()}, "overhead_pct": overhead * 100,
            "separate_models_overhead_pct": separate * 100, "targets": {"overhead<=3%": overhead <= 0.03}}


# ---------------------------------------------------------------------------------------- report


def print_report(report: dict) -> None:
    """The tables (rank 0)."""
    cfg = report["config"]
    print(f"{cfg['ranks']} ranks, {cfg['tensors']} x {cfg['numel']} float32 gradients "
          f"({cfg['tensors'] * cfg['numel'] * 4 / 1e6:.0f} MB), batch {cfg['batch']}, {cfg['threads']} thread(s) "
          f"per rank, median of {cfg['reps']} (slowest rank)\n")
    sizes = report["sizes"]
    benchlib.print_table(["message", "MPI us", "MPI GB/s", "gloo us", "gloo GB/s"],
                         [[_size(r["bytes"]), r["mpi_us"], r["mpi_gbs"], r.get("gloo_us"), r.get("gloo_gbs")]
                          for r in sizes])
    steps = report["steps"]
    print(f"\nunit: one raw MPI Allreduce of {cfg['tensors'] * cfg['numel'] * 4 / 1e6:.0f} MB = "
          f"{steps['raw_allreduce_ms']:.2f} ms; local step (fwd+bwd+SGD) = {steps['local_step_ms']:.2f} ms\n")
    benchlib.print_table(["buckets", "step ms", "cost ms", "cost units", "sync-after-bwd ms", "units",
                          "no-overlap ms", "units"],
                         [[c["label"], c["step_ms"], c["overlapped_ms"], c["overlapped_units"],
                           c["exposed_sync_ms"], c["exposed_sync_units"], c["no_overlap_ms"], c["no_overlap_units"]]
                          for c in steps["caps"]])
    if "before_step_ms" in steps["caps"][0]:
        print(f"\nbefore (--before {cfg.get('before')}) and after, interleaved in the same processes:\n")
        benchlib.print_table(["buckets", "before step ms", "step ms", "change %", "paired change %",
                              "before sync-after-bwd ms", "sync-after-bwd ms"],
                             [[c["label"], c["before_step_ms"], c["step_ms"], c["step_change_pct"],
                               c["paired_change_pct"], c["before_sync_ms"], c["exposed_sync_ms"]]
                              for c in steps["caps"]])
    if "torch" in steps:
        t = steps["torch"]
        print(f"\nPyTorch DDP (gloo, bucket_cap_mb=25): local step {t['torch local']:.2f} ms, DDP step "
              f"{t['torch DDP']:.2f} ms -> reduction cost {t['ddp_cost_ms']:.2f} ms = {t['ddp_cost_units']:.2f} "
              f"units (gradient_as_bucket_view: {t['ddp_view_cost_ms']:.2f} ms = {t['ddp_view_cost_units']:.2f}); "
              f"lucid (25 MB) is {t['lucid_speedup']:.2f}x faster")
    _print_targets(steps["targets"])


def markdown(report: dict) -> str:
    """The tables as Markdown, for docs/benchmarks.md (a distributed run or a --single run)."""
    cfg = report["config"]
    if "single" in report:
        single = report["single"]
        return (f"World size 1, {cfg['tensors']} x {cfg['numel']:,} float32, median of {cfg['reps']}: a bare SGD step "
                f"{single['bare_ms']:.1f} ms, the same model stepped through DistributedOptimizer on SelfComm "
                f"{single['wrapped_ms']:.1f} ms: overhead **{single['overhead_pct']:+.1f}%** (target <= 3%).")
    steps = report["steps"]
    lines = [f"{cfg['ranks']} ranks, {cfg['tensors']} gradients x {cfg['numel']:,} float32 "
             f"({cfg['tensors'] * cfg['numel'] * 4 / 1e6:.0f} MB), {cfg['threads']} thread(s) per rank, median of "
             f"{cfg['reps']} (slowest rank). Unit: one raw blocking MPI Allreduce of the same bytes = "
             f"{steps['raw_allreduce_ms']:.1f} ms; the local step (forward + backward + SGD) takes "
             f"{steps['local_step_ms']:.1f} ms. Cost = distributed step - local step.", "",
             benchlib.markdown_table(
                 ["buckets", "step ms", "cost ms", "cost (units)", "synchronize() after backward (units)",
                  "no overlap (units)"],
                 [[c["label"], c["step_ms"], c["overlapped_ms"], c["overlapped_units"], c["exposed_sync_units"],
                   c["no_overlap_units"]] for c in steps["caps"]])]
    if "torch" in steps:
        t = steps["torch"]
        lines += ["", f"PyTorch DDP over gloo (bucket_cap_mb=25): reduction cost {t['ddp_cost_ms']:.1f} ms = "
                      f"{t['ddp_cost_units']:.2f} units ({t['ddp_view_cost_units']:.2f} with "
                      f"gradient_as_bucket_view); lucid at 25 MB is **{t['lucid_speedup']:.2f}x** faster."]
    lines += ["", benchlib.markdown_table(["message", "MPI us", "MPI GB/s", "gloo us", "gloo GB/s"],
                                          [[_size(r["bytes"]), r["mpi_us"], r["mpi_gbs"], r.get("gloo_us"),
                                            r.get("gloo_gbs")] for r in report["sizes"]])]
    return "\n".join(lines)


def _print_targets(targets: dict) -> None:
    print()
    benchlib.print_table(["target", "met"], [[k, "yes" if v else "NO"] for k, v in targets.items()])


def _size(nbytes: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale} {unit}"
    return f"{nbytes / 1e6:g} MB"


def plot(report: dict, path) -> None:
    """Bandwidth by message size, and the reduction cost by bucket cap (PNG, when matplotlib imports)."""
    plt = benchlib.pyplot()
    if plt is None:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    sizes = report["sizes"]
    for key, label in (("mpi", "MPI Allreduce"), ("gloo", "gloo all_reduce")):
        if f"{key}_gbs" in sizes[0]:
            left.plot([r["bytes"] for r in sizes], [r[f"{key}_gbs"] for r in sizes], "o-", label=label)
    left.set(xscale="log", xlabel="message bytes", ylabel="GB/s (algorithm bandwidth)",
             title=f"raw all-reduce, {report['config']['ranks']} ranks")
    left.legend()
    caps = report["steps"]["caps"]
    # the wrapper's caps are MiB; one bucket per tensor is drawn at the size of one gradient
    xs = [c["cap_mb"] * 2 ** 20 if c["label"] != "per tensor" else report["config"]["numel"] * 4 for c in caps]
    for key, label in (("overlapped_units", "step cost (overlapped)"),
                       ("exposed_sync_units", "synchronize() after backward"),
                       ("no_overlap_units", "no overlap")):
        right.plot(xs, [c[key] for c in caps], "o-", label=label)
    if "torch" in report["steps"]:
        torch = report["steps"]["torch"]
        right.axhline(torch["ddp_cost_units"], color="gray", ls="--", label="PyTorch DDP (25 MB)")
        right.axhline(torch["ddp_view_cost_units"], color="gray", ls=":", label="DDP gradient_as_bucket_view")
    right.axhline(1.0, color="black", lw=0.5)
    right.set(xscale="log", xlabel="bucket cap, bytes (leftmost: one bucket per tensor)",
              ylabel="cost / raw 40 MB Allreduce", title="gradient reduction cost by bucket size")
    right.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


# ---------------------------------------------------------------------------------------- main


def set_threads(args) -> int:
    """`--threads` if given (before init, so it wins), else what distributed.init() shares out per rank."""
    import distributed
    import lucid
    if args.threads:
        lucid.set_num_threads(args.threads)
    if not args.single:
        distributed.init()
    return lucid.get_num_threads()


def run_distributed(args) -> dict | None:
    """(a)-(c) on every rank; the report on rank 0 (None elsewhere)."""
    import distributed
    world = distributed.init()
    if world.size < 2:
        raise SystemExit("run under an MPI launcher with 2 or more ranks (mpiexec -n 2 python "
                         "scripts/bench_comm.py), or pass --single")
    comm, timer = world.comm, Timer(world.comm)
    gloo = not args.no_torch and init_gloo(comm)
    report = {"config": {"ranks": world.size, "tensors": args.tensors, "numel": args.numel, "batch": args.batch,
                         "threads": args.threads, "reps": args.reps, "caps_mb": args.caps, "dtype": "float32",
                         "before": args.before},
              "machine": benchlib.machine()}
    medians = measure_lucid(args, timer, comm)
    report["sizes"] = measure_sizes(timer, comm, args.sizes, args.reps, gloo)
    if gloo:
        medians.update(measure_torch(args, timer))
    report["steps"] = summarize(args, medians, timer.samples)
    report["samples_ms"] = {k: [round(t * 1e3, 3) for t in v] for k, v in timer.samples.items()}
    return report if world.rank == 0 else None


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    args.threads = set_threads(args)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        args.no_torch = True
    if args.single:
        report = {"config": {"ranks": 1, "tensors": args.tensors, "numel": args.numel, "batch": args.batch,
                             "threads": args.threads, "reps": args.reps}, "machine": benchlib.machine(),
                  "single": measure_single(args)}
        s = report["single"]
        print(f"world size 1, {args.tensors} x {args.numel} float32, batch {args.batch}, {args.threads} thread(s), "
              f"median of {args.reps * 3}\n")
        benchlib.print_table(["models", "bare SGD step ms", "DistributedOptimizer(SGD) on SelfComm ms", "overhead %"],
                             [["one model, stepped both ways", s["bare_ms"], s["wrapped_ms"], s["overhead_pct"]],
                              ["two models", s["bare (own model)_ms"], s["wrapped (own model)_ms"],
                               s["separate_models_overhead_pct"]]])
        _print_targets(s["targets"])
        benchlib.write_json(args.json, report)
        return report
    report = run_distributed(args)
    if report is not None:
        print_report(report)
        benchlib.write_json(args.json, report)
        plot(report, args.plot)
    return report


if __name__ == "__main__":
    main()
