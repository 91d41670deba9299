"""Benchmark one training step's forward + backward: lucid against PyTorch on the CPU.

The model is an MLP 64-256-256-10 (Linear, ReLU, Linear, ReLU, Linear) with CrossEntropyLoss, batch 256,
float32. Both libraries get the same weights and data; their repetitions are interleaved (the machine is
shared and noisy), and the table reports medians and the lucid/PyTorch ratio.

    python scripts/bench_autograd.py [--reps 200] [--threads 2] [--json bench-results/autograd.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 256, 10],
                        help="layer widths, input first")
    parser.add_argument("--reps", type=int, default=200, help="timed repetitions per library")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="BLAS / PyTorch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="bench-results/autograd.json", help="where to write the numbers")
    return parser.parse_args(argv)


def build_lucid(sizes):
    """The lucid MLP and loss."""
    from lucid import nn
    layers = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers), nn.CrossEntropyLoss()


def build_torch(lucid_model):
    """The same MLP in PyTorch, holding copies of lucid's weights."""
    import torch
    layers = []
    for module in lucid_model:
        if type(module).__name__ == "Linear":
            layer = torch.nn.Linear(module.in_features, module.out_features)
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(module.weight.data.copy()))
                layer.bias.copy_(torch.from_numpy(module.bias.data.copy()))
            layers.append(layer)
        else:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers), torch.nn.CrossEntropyLoss()


def train_step(model, loss_fn, x, y):
    """One zero_grad + forward + backward (the same code for both libraries, whose APIs agree).

    Returns:
        (forward seconds, backward seconds, loss value).
    """
    model.zero_grad()
    start = time.perf_counter()
    loss = loss_fn(model(x), y)
    middle = time.perf_counter()
    loss.backward()
    return middle - start, time.perf_counter() - middle, float(loss.item())


def summarize(samples):
    """Median forward, backward and total milliseconds of (forward, backward, loss) samples."""
    fwd = [s[0] * 1e3 for s in samples]
    bwd = [s[1] * 1e3 for s in samples]
    return {"forward_ms": statistics.median(fwd), "backward_ms": statistics.median(bwd),
            "total_ms": statistics.median(f + b for f, b in zip(fwd, bwd))}


def max_grad_difference(lucid_model, torch_model):
    """The largest |lucid grad - torch grad| over all parameters after the last step."""
    import numpy as np
    worst = 0.0
    for lp, tp in zip(lucid_model.parameters(), torch_model.parameters()):
        worst = max(worst, float(np.max(np.abs(lp.grad - tp.grad.numpy()))))
    return worst


def run(args):
    import numpy as np

    import lucid
    lucid.manual_seed(args.seed)
    model, loss_fn = build_lucid(args.sizes)
    x = lucid.randn(args.batch, args.sizes[0])
    y = lucid.randint(0, args.sizes[-1], (args.batch,))
    steps = {"lucid": lambda: train_step(model, loss_fn, x, y)}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(args.threads)
        t_model, t_loss = build_torch(model)
        tx, ty = torch.from_numpy(x.data.copy()), torch.from_numpy(y.data.copy())
        steps["torch"] = lambda: train_step(t_model, t_loss, tx, ty)
    samples = {name: [] for name in steps}
    for rep in range(args.warmup + args.reps):
        for name, step in steps.items():  # interleaved: both see the same machine state
            sample = step()
            if rep >= args.warmup:
                samples[name].append(sample)
    results = {name: summarize(s) for name, s in samples.items()}
    report = {"config": {"sizes": args.sizes, "batch": args.batch, "dtype": "float32", "reps": args.reps,
                         "threads": args.threads},
              "machine": {"python": platform.python_version(), "numpy": np.__version__,
                          "torch": None if torch is None else torch.__version__,
                          "processor": platform.processor() or platform.machine(),
                          "cpus": os.cpu_count()},
              "results": results}
    if torch is not None:
        report["ratio_total"] = results["lucid"]["total_ms"] / results["torch"]["total_ms"]
        report["loss_difference"] = abs(samples["lucid"][-1][2] - samples["torch"][-1][2])
        report["max_grad_difference"] = max_grad_difference(model, t_model)
    return report


def print_table(report):
    results = report["results"]
    print(f"MLP {'-'.join(map(str, report['config']['sizes']))}, batch {report['config']['batch']}, float32, "
          f"{report['config']['threads']} threads, median of {report['config']['reps']}")
    print(f"{'library':<8} {'forward ms':>11} {'backward ms':>12} {'total ms':>9}")
    for name, r in results.items():
        print(f"{name:<8} {r['forward_ms']:>11.3f} {r['backward_ms']:>12.3f} {r['total_ms']:>9.3f}")
    if "ratio_total" in report:
        print(f"lucid / torch (total): {report['ratio_total']:.2f}x   "
              f"(loss difference {report['loss_difference']:.2e}, "
              f"largest grad difference {report['max_grad_difference']:.2e})")


def markdown(report) -> str:
    """The results as Markdown, for docs/benchmarks.md."""
    c = report["config"]
    lines = [f"MLP {'-'.join(map(str, c['sizes']))}, batch {c['batch']}, float32, {c['threads']} threads, "
             f"median of {c['reps']} interleaved steps (zero_grad + forward + backward).", "",
             "| library | forward ms | backward ms | total ms |", "|---|---|---|---|"]
    for name, r in report["results"].items():
        lines.append(f"| {name} | {r['forward_ms']:.3f} | {r['backward_ms']:.3f} | {r['total_ms']:.3f} |")
    if "ratio_total" in report:
        lines += ["", f"lucid / PyTorch: **{report['ratio_total']:.2f}x** (target <= 2x); largest gradient "
                      f"difference {report['max_grad_difference']:.1e}."]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    # BLAS reads its thread count when numpy loads, so set it before any import of numpy
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    report = run(args)
    print_table(report)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
