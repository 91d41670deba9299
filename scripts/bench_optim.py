"""Benchmark every lucid optimizer's step against PyTorch's fastest CPU step for it.

10 M float32 parameters in 100 tensors; gradients come from a real backward pass; both libraries use
the same number of threads; repetitions are interleaved and medians reported. Also measured: the first
step's compile time in a fresh process (empty and warm kernel cache) and the peak memory a step
allocates beyond parameters, gradients and state.

    python scripts/bench_optim.py [--reps 7] [--numel 100000] [--tensors 100] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

# (name, lucid kwargs, target ratio lucid/torch): targets from the lucid.optim issue
OPTIMIZERS = [
    ("SGD", dict(lr=0.01, momentum=0.9), 1.25),
    ("Adam", dict(lr=1e-3), 1.25),
    ("AdamW", dict(lr=1e-3), 1.25),
    ("Adamax", dict(lr=1e-3), 0.5),
    ("NAdam", dict(lr=1e-3), 0.5),
    ("RAdam", dict(lr=1e-3), 0.5),
    ("RMSprop", dict(lr=1e-3), 0.5),
    ("Adagrad", dict(lr=1e-2), 0.5),
    ("Adadelta", dict(lr=1.0), 0.5),
    ("ASGD", dict(lr=1e-2), 0.5),
    ("Rprop", dict(lr=1e-2), 0.5),
    ("SparseAdam", dict(lr=1e-3), 0.5),
    ("LBFGS", dict(lr=1, max_iter=1, history_size=10), None),
]
TORCH_FUSED = {"SGD", "Adam", "AdamW", "Adagrad"}  # PyTorch 2.13 has a fused CPU step for these


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--numel", type=int, default=100_000, help="elements per tensor")
    parser.add_argument("--tensors", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="optimizer names to run (default: all)")
    parser.add_argument("--skip-compile", action="store_true", help="skip the fresh-process compile timing")
    parser.add_argument("--json", default="bench-results/optim.json")
    parser.add_argument("--plot", default="bench-results/optim.png")
    return parser.parse_args(argv)


def lucid_setup(name, kwargs, shapes):
    """Parameters with gradients from a backward pass, and the optimizer (state created by one step)."""
    import numpy as np

    import lucid
    from lucid import nn, optim
    rng = np.random.default_rng(0)
    params = [nn.Parameter(rng.standard_normal(s, dtype=np.float32)) for s in shapes]
    opt = getattr(optim, name)(params, **kwargs)
    weights = [lucid.Tensor(rng.standard_normal(s, dtype=np.float32)) for s in shapes]
    loss = sum(((p * w).sum() for p, w in zip(params, weights)), lucid.Tensor(np.float32(0)))
    loss.backward()
    closure = (lambda: loss) if name == "LBFGS" else None
    opt.step(closure)
    return lambda: opt.step(closure), opt


def torch_setup(name, kwargs, shapes, fused):
    import torch
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    extra = {"fused": True} if fused else {}
    opt = getattr(torch.optim, name)(params, **kwargs, **extra)
    loss = sum((p * torch.randn(s)).sum() for p, s in zip(params, shapes))
    loss.backward()
    if name == "SparseAdam":  # PyTorch's SparseAdam takes only sparse gradients
        for p in params:
            p.grad = p.grad.to_sparse()
    closure = (lambda: loss) if name == "LBFGS" else None
    opt.step(closure)
    return lambda: opt.step(closure)


def step_allocation_mb(step) -> float:
    """Peak bytes allocated during one step beyond what was live before it (NumPy reports to tracemalloc)."""
    import tracemalloc
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - before) / 1e6


def model_bytes_mb(opt) -> float:
    """Parameters + gradients + state of an elementwise optimizer, from its flat buffers."""
    total = 0
    for flats in opt._flat:
        for flat in flats or []:
            total += flat.data.nbytes + flat.grad.nbytes + sum(a.nbytes for a in flat.state.values())
    return total / 1e6


COMPILE_PROBE = textwrap.dedent("""
    import time, numpy as np
    from lucid import nn, optim
    p = [nn.Parameter(np.ones(1000, dtype=np.float32))]
    p[0].grad = np.ones(1000, dtype=np.float32)
    opt = getattr(optim, {name!r})(p, **{kwargs!r})
    start = time.perf_counter()
    opt.step((lambda: 0.0) if {name!r} == "LBFGS" else None)
    print(time.perf_counter() - start)
""")


def first_step_seconds(name, kwargs, cache_dir) -> float:
    """The first step of a fresh process (numba import + compile or cache load)."""
    env = {**os.environ, "LUCID_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", COMPILE_PROBE.format(name=name, kwargs=kwargs)], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def run(args):
    import numpy as np
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    shapes = [(args.numel,)] * args.tensors
    rows = []
    for name, kwargs, target in OPTIMIZERS:
        if args.only and name not in args.only:
            continue
        lucid_step, opt = lucid_setup(name, kwargs, shapes)
        contestants = {"lucid": lucid_step}
        if torch is not None:
            contestants["torch"] = torch_setup(name, kwargs, shapes, fused=name in TORCH_FUSED)
            if name in TORCH_FUSED:
                contestants["torch_default"] = torch_setup(name, kwargs, shapes, fused=False)
        medians = benchlib.interleaved(contestants, args.reps)
        row = {"optimizer": name, "lucid_ms": medians["lucid"] * 1e3,
               "torch_ms": medians["torch"] * 1e3 if torch is not None else None,
               "torch_default_ms": medians.get("torch_default", medians.get("torch", 0)) * 1e3
               if torch is not None else None,
               "torch_path": "fused" if name in TORCH_FUSED else "default", "target": target,
               "step_alloc_mb": step_allocation_mb(lucid_step), "model_mb": model_bytes_mb(opt)}
        row["ratio"] = row["lucid_ms"] / row["torch_ms"] if torch is not None else None
        row["meets_target"] = None if target is None or row["ratio"] is None else row["ratio"] <= target
        if not args.skip_compile:
            with tempfile.TemporaryDirectory() as cache:
                row["first_step_cold_s"] = first_step_seconds(name, kwargs, cache)
                row["first_step_warm_s"] = first_step_seconds(name, kwargs, cache)
        rows.append(row)
        del opt, lucid_step, contestants
    return {"config": {"tensors": args.tensors, "numel": args.numel, "dtype": "float32",
                       "threads": args.threads, "reps": args.reps},
            "machine": benchlib.machine(), "numpy": np.__version__, "results": rows}


HEADERS = ["optimizer", "lucid ms", "torch ms", "torch path", "ratio", "target", "ok", "torch default ms",
           "step alloc MB",
           "params+grads+state MB", "first step cold s", "first step warm s"]


def table_rows(report):
    return [[r["optimizer"], r["lucid_ms"], r["torch_ms"], r["torch_path"], r["ratio"], r["target"],
             {True: "yes", False: "NO", None: ""}[r["meets_target"]], r["torch_default_ms"], r["step_alloc_mb"],
             r["model_mb"],
             r.get("first_step_cold_s"), r.get("first_step_warm_s")] for r in report["results"]]


def markdown(report) -> str:
    """The results as Markdown, for docs/benchmarks.md."""
    c = report["config"]
    head = (f"{c['tensors']} tensors x {c['numel']:,} float32 ({c['tensors'] * c['numel'] / 1e6:.0f} M "
            f"parameters), {c['threads']} threads on both sides, median of {c['reps']} interleaved steps. "
            "`ratio` = lucid / PyTorch's fastest CPU step for that optimizer (`torch path`); "
            "`step alloc MB` = memory a step allocates beyond parameters, gradients and state "
            "(tracemalloc); first-step times are a fresh process with an empty / a warm kernel cache.")
    return head + "\n\n" + benchlib.markdown_table(HEADERS, table_rows(report))


def plot(report, path):
    plt = benchlib.pyplot()
    if plt is None or report["results"][0]["torch_ms"] is None:
        return
    names = [r["optimizer"] for r in report["results"]]
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar([x - 0.2 for x in xs], [r["lucid_ms"] for r in report["results"]], 0.4, label="lucid")
    ax.bar([x + 0.2 for x in xs], [r["torch_ms"] for r in report["results"]], 0.4, label="PyTorch 2.13")
    ax.set_xticks(list(xs), names, rotation=30)
    ax.set_ylabel("ms per step (10 M float32 params)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main(argv=None):
    args = parse_args(argv)
    benchlib.pin_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    report = run(args)
    print(f"{args.tensors} tensors x {args.numel} float32, {args.threads} threads, median of {args.reps}")
    benchlib.print_table(HEADERS, table_rows(report))
    benchlib.write_json(args.json, report)
    plot(report, args.plot)
    return report


if __name__ == "__main__":
    main()
