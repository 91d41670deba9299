"""Benchmark every lucid optimizer's step against PyTorch's fastest CPU step for it, and against the roofline.

10 M float32 parameters in 100 tensors (Muon: 1 M in 10 matrices; its Newton-Schulz matmuls dominate);
gradients come from a real backward pass (SparseAdam: rows of an embedding-like gradient, the same
rows for both libraries); both libraries use the same number of threads; repetitions are interleaved
and medians reported. The roofline of an elementwise optimizer is a trivial compiled kernel that reads
and writes exactly the arrays its step does (parameters, state; gradient read only), measured in the
same run: `lucid/roofline` is how close the step gets to moving its bytes at memory speed. Also
measured: the first step's compile time in a fresh process (empty and warm kernel cache) and the peak
memory a step allocates beyond parameters, gradients and state.

`--before PATH` adds another checkout's lucid (PATH/lucid, loaded under another name) to the same
interleaved run, for before/after comparisons of a change (with `--no-torch`: PyTorch's OpenMP threads
keep spinning after its step and slow the contestant that follows it).

    python scripts/bench_optim.py [--reps 7] [--numel 100000] [--tensors 100] [--threads 2] [--before PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

# (name, lucid kwargs, target ratio lucid/torch, parameter layout): targets from the lucid.optim issues
OPTIMIZERS = [
    ("SGD", dict(lr=0.01, momentum=0.9), 1.25, "vectors"),
    ("Adam", dict(lr=1e-3), 1.25, "vectors"),
    ("AdamW", dict(lr=1e-3), 1.25, "vectors"),
    ("Adamax", dict(lr=1e-3), 0.5, "vectors"),
    ("NAdam", dict(lr=1e-3), 0.5, "vectors"),
    ("RAdam", dict(lr=1e-3), 0.5, "vectors"),
    ("RMSprop", dict(lr=1e-3), 0.5, "vectors"),
    ("Adagrad", dict(lr=1e-2), 0.5, "vectors"),
    ("Adadelta", dict(lr=1.0), 0.5, "vectors"),
    ("ASGD", dict(lr=1e-2), 0.5, "vectors"),
    ("Rprop", dict(lr=1e-2), 0.5, "vectors"),
    ("SparseAdam", dict(lr=1e-3), None, "embedding"),
    ("Adafactor", dict(lr=1e-2), None, "matrices"),
    ("Muon", dict(lr=1e-3), None, "muon"),
    ("LBFGS", dict(lr=1, max_iter=1, history_size=10), None, "vectors"),
]
TORCH_FUSED = {"SGD", "Adam", "AdamW", "Adagrad"}  # PyTorch 2.13 has a fused CPU step for these
PLAIN = {"LBFGS", "Adafactor", "Muon"}  # not elementwise: no flat buffer, no roofline


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--numel", type=int, default=100_000, help="elements per tensor")
    parser.add_argument("--tensors", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sparse-density", type=float, default=0.01,
                        help="fraction of SparseAdam's embedding rows with a nonzero gradient")
    parser.add_argument("--only", nargs="*", help="optimizer names to run (default: all)")
    parser.add_argument("--before", help="a checkout whose lucid joins the run as 'before'")
    parser.add_argument("--no-torch", action="store_true",
                        help="leave PyTorch out (its OpenMP threads spin on after each of its steps and slow "
                             "whichever contestant runs next: use this for before/after comparisons)")
    parser.add_argument("--skip-compile", action="store_true", help="skip the fresh-process compile timing")
    parser.add_argument("--json", default="bench-results/optim.json")
    parser.add_argument("--plot", default="bench-results/optim.png")
    return parser.parse_args(argv)


def shapes_for(layout, args) -> list:
    """The parameter shapes of a layout: the same element count, in the shape the optimizer is for."""
    if layout == "vectors":
        return [(args.numel,)] * args.tensors
    rows = max(1, int(round((args.numel * 0.625) ** 0.5)))  # 100 000 -> 250 x 400
    matrix = (rows, args.numel // rows)
    if layout == "matrices":
        return [matrix] * args.tensors
    if layout == "muon":
        return [matrix] * max(1, args.tensors // 10)
    return [(args.numel // 100, 100)] * args.tensors  # embedding: rows of 100


def sparse_rows(shape, density, rng):
    """A gradient whose rows are all zero except a `density` fraction of them (an embedding's)."""
    import numpy as np
    grad = np.zeros(shape, dtype=np.float32)
    rows = rng.choice(shape[0], size=max(1, int(shape[0] * density)), replace=False)
    grad[rows] = rng.standard_normal((len(rows), shape[1]), dtype=np.float32)
    return grad


def load_lucid(path: str):
    """The lucid package of another checkout, imported as `lucid_before` (lucid uses relative imports only)."""
    init = Path(path) / "lucid" / "__init__.py"
    spec = importlib.util.spec_from_file_location("lucid_before", init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["lucid_before"] = module
    spec.loader.exec_module(module)
    return module


def lucid_setup(lucid, name, kwargs, shapes, args):
    """Parameters with gradients (from a backward pass), and the optimizer with its state created by one step."""
    import numpy as np
    nn, optim = lucid.nn, lucid.optim
    rng = np.random.default_rng(0)
    params = [nn.Parameter(rng.standard_normal(s, dtype=np.float32)) for s in shapes]
    opt = getattr(optim, name)(params, **kwargs)
    if name == "SparseAdam":
        for p in params:
            p.grad = sparse_rows(p.shape, args.sparse_density, np.random.default_rng(1))
        loss = None
    else:
        weights = [lucid.Tensor(rng.standard_normal(s, dtype=np.float32)) for s in shapes]
        loss = sum(((p * w).sum() for p, w in zip(params, weights)), lucid.Tensor(np.float32(0)))
        loss.backward()
    closure = (lambda: loss) if name == "LBFGS" else None
    opt.step(closure)
    return lambda: opt.step(closure), opt


def torch_setup(name, kwargs, shapes, fused, args):
    import numpy as np
    import torch
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    extra = {"fused": True} if fused else {}
    opt = getattr(torch.optim, name)(params, **kwargs, **extra)
    if name == "SparseAdam":  # the same rows as lucid's, as the sparse gradient torch takes
        for p in params:
            p.grad = torch.from_numpy(sparse_rows(tuple(p.shape), args.sparse_density,
                                                  np.random.default_rng(1))).to_sparse()
        loss = None
    else:
        loss = sum((p * torch.randn(s)).sum() for p, s in zip(params, shapes))
        loss.backward()
    closure = (lambda: loss) if name == "LBFGS" else None
    opt.step(closure)
    return lambda: opt.step(closure)


def flat_buffers(opt) -> list:
    return [f for i in range(len(opt.param_groups)) for f in opt.flat_buffers(i)]


_ROOFLINE = '''
import numba


@numba.njit(parallel=True, nogil=True)
def kernel(grad, c, {written}):
    for i in numba.prange(grad.shape[0]):
        x = grad[i] * c
{stores}
'''


def roofline_setup(opt):
    """A trivial kernel over the optimizer's own flat arrays: grad read, parameters and state read and written.

    It adds grad * 0 (a run-time zero, so nothing folds away and the values stay), so it moves exactly
    the bytes the step must move and does nothing else. Returns (step, bytes moved).
    """
    import numpy as np
    flats = flat_buffers(opt)
    calls, moved = [], 0
    for flat in flats:
        written = [flat.data] + list(flat.state.values())
        names = [f"w{k}" for k in range(len(written))]
        source = _ROOFLINE.format(written=", ".join(names),
                                  stores="\n".join(f"        {n}[i] = {n}[i] + x" for n in names))
        namespace = {}
        exec(compile(source, f"<roofline {len(written)}>", "exec"), namespace)
        calls.append((namespace["kernel"], flat.grad, written))
        moved += flat.grad.nbytes + 2 * sum(a.nbytes for a in written)
    zero = np.float32(0)

    def step():
        for kernel, grad, written in calls:
            kernel(grad, zero, *written)
    step()  # compile
    return step, moved


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
    """Parameters + gradients + state: from the flat buffers (elementwise) or the parameters and state."""
    import numpy as np
    if opt.rule is not None:
        total = sum(f.data.nbytes + f.grad.nbytes + sum(a.nbytes for a in f.state.values()) for f in flat_buffers(opt))
    else:
        params = [p for g in opt.param_groups for p in g["params"]]
        total = sum(p.data.nbytes * 2 for p in params)
        total += sum(v.nbytes for s in opt.state.values() for v in s.values() if isinstance(v, np.ndarray))
    return total / 1e6


COMPILE_PROBE = textwrap.dedent("""
    import time, numpy as np
    from lucid import nn, optim
    p = [nn.Parameter(np.ones((10, 100), dtype=np.float32))]
    p[0].grad = np.ones((10, 100), dtype=np.float32)
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


def contestants_for(name, kwargs, layout, args, lucid, before, torch):
    """{contestant: step}, and the lucid optimizer and roofline bytes (or None)."""
    shapes = shapes_for(layout, args)
    lucid_step, opt = lucid_setup(lucid, name, kwargs, shapes, args)
    contestants, moved = {"lucid": lucid_step}, None
    if name not in PLAIN:
        contestants["roofline"], moved = roofline_setup(opt)
    if before is not None and hasattr(before.optim, name):
        contestants["before"] = lucid_setup(before, name, kwargs, shapes, args)[0]
    if torch is not None:
        contestants["torch"] = torch_setup(name, kwargs, shapes, name in TORCH_FUSED, args)
        if name in TORCH_FUSED:
            contestants["torch_default"] = torch_setup(name, kwargs, shapes, False, args)
    return contestants, opt, moved, shapes


def measure(name, kwargs, target, layout, args, lucid, before, torch) -> dict:
    contestants, opt, moved, shapes = contestants_for(name, kwargs, layout, args, lucid, before, torch)
    ms = {k: v * 1e3 for k, v in benchlib.interleaved(contestants, args.reps).items()}
    row = {"optimizer": name, "params_m": sum(math.prod(s) for s in shapes) / 1e6,
           "layout": layout, "lucid_ms": ms["lucid"], "roofline_ms": ms.get("roofline"),
           "roofline_gbps": moved / ms["roofline"] / 1e6 if moved else None,
           "before_ms": ms.get("before"), "torch_ms": ms.get("torch"),
           "torch_default_ms": ms.get("torch_default", ms.get("torch")),
           "torch_path": "fused" if name in TORCH_FUSED else "default", "target": target,
           "step_alloc_mb": step_allocation_mb(contestants["lucid"]), "model_mb": model_bytes_mb(opt),
           "elementwise": name not in PLAIN}
    roof = row["roofline_ms"]
    row["lucid_vs_roofline"] = row["lucid_ms"] / roof if roof else None
    row["before_vs_roofline"] = row["before_ms"] / roof if roof and row["before_ms"] else None
    row["torch_vs_roofline"] = row["torch_ms"] / roof if roof and row["torch_ms"] else None
    row["ratio"] = row["lucid_ms"] / row["torch_ms"] if row["torch_ms"] else None
    row["ratio_default"] = row["lucid_ms"] / row["torch_default_ms"] if row["torch_default_ms"] else None
    row["meets_target"] = None if target is None or row["ratio"] is None else row["ratio"] <= target
    if not args.skip_compile and row["elementwise"]:  # only elementwise optimizers compile a kernel
        with tempfile.TemporaryDirectory() as cache:
            row["first_step_cold_s"] = first_step_seconds(name, kwargs, cache)
            row["first_step_warm_s"] = first_step_seconds(name, kwargs, cache)
    return row


def run(args):
    import numpy as np
    import lucid
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    if args.no_torch:
        torch = None
    before = load_lucid(args.before) if args.before else None
    rows = []
    for name, kwargs, target, layout in OPTIMIZERS:
        if not args.only or name in args.only:
            rows.append(measure(name, kwargs, target, layout, args, lucid, before, torch))
    return {"config": {"tensors": args.tensors, "numel": args.numel, "dtype": "float32", "threads": args.threads,
                       "reps": args.reps, "sparse_density": args.sparse_density, "before": args.before},
            "machine": benchlib.machine(), "numpy": np.__version__, "results": rows}


HEADERS = ["optimizer", "M params", "lucid ms", "roofline ms", "lucid/roofline", "torch ms", "torch path",
           "torch/roofline", "ratio", "target", "ok", "torch default ms", "ratio vs default", "step alloc MB",
           "params+grads+state MB", "first step cold s", "first step warm s"]
BEFORE_HEADERS = ["before ms", "before/roofline"]


def _ok(row) -> str:
    return {True: "yes", False: "MISSED", None: ""}[row["meets_target"]]


def table_rows(report):
    with_before = bool(report["config"].get("before"))
    rows = []
    for r in report["results"]:
        row = [r["optimizer"], r["params_m"], r["lucid_ms"], r["roofline_ms"], r["lucid_vs_roofline"], r["torch_ms"],
               r["torch_path"], r["torch_vs_roofline"], r["ratio"], r["target"], _ok(r), r["torch_default_ms"],
               r["ratio_default"], r["step_alloc_mb"], r["model_mb"], r.get("first_step_cold_s"),
               r.get("first_step_warm_s")]
        if with_before:
            row += [r["before_ms"], r["before_vs_roofline"]]
        rows.append(row)
    return rows


def headers(report) -> list:
    return HEADERS + (BEFORE_HEADERS if report["config"].get("before") else [])


def markdown(report) -> str:
    """The results as Markdown, for docs/benchmarks.md."""
    c = report["config"]
    missed = [r["optimizer"] for r in report["results"] if r["meets_target"] is False]
    head = (f"{c['tensors']} tensors x {c['numel']:,} float32 ({c['tensors'] * c['numel'] / 1e6:.0f} M parameters; "
            "Adafactor's as 250 x 400 matrices, Muon's 10 of them), "
            f"{c['threads']} threads on both sides, median of {c['reps']} interleaved steps. "
            "`ratio` = lucid / PyTorch's fastest CPU step for that optimizer (`torch path`; `ok` checks it "
            "against the target, and `ratio vs default` is against PyTorch's default step); `roofline` = a "
            "trivial kernel moving the same bytes over the same arrays in the same run. SparseAdam: "
            f"{c['sparse_density']:.0%} of the embedding rows have a gradient; lucid makes one dense pass over the "
            "buffer (zero rows are left alone), PyTorch's SparseAdam takes the same rows as a sparse gradient. "
            "Muon: lucid iterates Newton-Schulz in float32, PyTorch in bfloat16. `step alloc MB` = memory a "
            "step allocates beyond parameters, gradients and state (tracemalloc); first-step times are a fresh "
            "process with an empty / a warm kernel cache.")
    if missed:
        head += f" Targets missed: {', '.join(missed)}."
    return head + "\n\n" + benchlib.markdown_table(headers(report), table_rows(report))


def plot(report, path):
    plt = benchlib.pyplot()
    if plt is None or report["results"][0]["torch_ms"] is None:
        return
    names = [r["optimizer"] for r in report["results"]]
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.bar([x - 0.27 for x in xs], [r["lucid_ms"] for r in report["results"]], 0.27, label="lucid")
    ax.bar(list(xs), [r["torch_ms"] for r in report["results"]], 0.27, label="PyTorch 2.13")
    ax.bar([x + 0.27 for x in xs], [r["roofline_ms"] or 0 for r in report["results"]], 0.27,
           label="roofline (same bytes, trivial kernel)")
    ax.set_xticks(list(xs), names, rotation=30)
    ax.set_ylabel("ms per step")
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
    benchlib.print_table(headers(report), table_rows(report))
    benchlib.write_json(args.json, report)
    plot(report, args.plot)
    return report


if __name__ == "__main__":
    main()
