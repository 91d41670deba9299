"""README.md's "Measured" section, written from the benchmarks' JSON results (never by hand).

`scripts/run_benchmarks.py` calls `rewrite(readme_text, results)` after a run: the text between
`<!-- measured -->` and `<!-- /measured -->` is replaced by `section(results)`, where `results` maps
each benchmark's name (autograd, optim, comm, comm-single, zero, train) to its JSON report. Every
target is shown as met or **missed**; a figure the README embeds must be one this run produced.
"""

from __future__ import annotations

import re
import textwrap

BEGIN, END = "<!-- measured -->", "<!-- /measured -->"
HEAD = ["what", "lucid", "PyTorch", "ratio", "target", "met"]


class MissingResult(KeyError):
    """A benchmark's JSON lacks a value the README shows (the benchmark's format changed)."""


def _get(report: dict, *keys):
    value = report
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise MissingResult(f"the README needs {'.'.join(map(str, keys))} from a benchmark's JSON")
        value = value[key]
    return value


def _ms(value) -> str:
    return "n/a" if value is None else f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.2g}" if value < 0.1 else f"{value:.2f}"


def _met(*flags) -> str:
    if any(flag is None for flag in flags):
        return ""
    return "yes" if all(flags) else "**missed**"


def _optimizer_rows(optim: dict) -> list:
    by_name = {row["optimizer"]: row for row in _get(optim, "results")}

    def row(name):
        if name not in by_name:
            raise MissingResult(f"the README needs the {name} row of bench_optim's results")
        return by_name[name]

    def versus(r):
        return "vs `fused=True`" if r["torch_path"] == "fused" else "vs PyTorch's default"

    config = _get(optim, "config")
    size = f"{config['tensors'] * config['numel'] / 1e6:.3g} M float32 params in {config['tensors']} tensors"
    rows = []
    for name, label in (("Adam", f"`Adam` step, {size}"), ("AdamW", "`AdamW` step"),
                        ("SGD", "`SGD(momentum=0.9)` step")):
        r = row(name)
        rows.append([f"{label} ({versus(r)})", _ms(r["lucid_ms"]), _ms(r["torch_ms"]), _num(r["ratio"]),
                     f"<= {r['target']}", _met(r["meets_target"])])
    group = [row(n) for n in ("NAdam", "RAdam", "RMSprop", "Rprop")]
    rows.append(["`NAdam` / `RAdam` / `RMSprop` / `Rprop` step (" + versus(group[0]) + ")",
                 " / ".join(_ms(r["lucid_ms"])[:-3] for r in group) + " ms",
                 " / ".join(_ms(r["torch_ms"])[:-3] for r in group) + " ms",
                 " / ".join(_num(r["ratio"]) for r in group), f"<= {group[0]['target']}",
                 _met(*[r["meets_target"] for r in group])])
    adagrad = row("Adagrad")
    default = adagrad.get("torch_default_ms")
    versus_default = None if default in (None, 0) else adagrad["lucid_ms"] / default
    rows.append([f"`Adagrad` step ({versus(adagrad)}; PyTorch's default for comparison)", _ms(adagrad["lucid_ms"]),
                 f"{_ms(adagrad['torch_ms'])} / {_ms(default)}", f"{_num(adagrad['ratio'])} / {_num(versus_default)}",
                 f"<= {adagrad['target']} ({versus(adagrad)[3:]})", _met(adagrad["meets_target"])])
    return rows


def _comm_rows(comm: dict, single: dict) -> list:
    caps = {c["label"]: c for c in _get(comm, "steps", "caps")}
    if "25 MB" not in caps:
        raise MissingResult("the README needs bench_comm's 25 MB bucket row (steps.caps)")
    lucid_units = caps["25 MB"]["overlapped_units"]
    torch = comm["steps"].get("torch")
    mb = _get(comm, "config", "tensors") * _get(comm, "config", "numel") * 4 / 1e6
    ranks = _get(comm, "config", "ranks")
    overhead = _get(single, "single", "overhead_pct")
    return [
        [f"gradient reduction of {mb:.0f} MB at {ranks} ranks (default 25 MB buckets), in raw `MPI.Allreduce`s "
         f"of {mb:.0f} MB", f"{lucid_units:.2f}", "n/a" if torch is None else f"DDP/gloo: {torch['ddp_cost_units']:.2f}",
         "n/a" if torch is None else f"{torch['lucid_speedup']:.1f}x faster", "<= 1.15", _met(lucid_units <= 1.15)],
        ["`DistributedOptimizer` on one process vs the bare optimizer", f"{overhead:+.1f}%", "", "", "<= 3%",
         _met(overhead <= 3.0)],
    ]


def _span(values, unit: str, digits: int = 0) -> str:
    low, high = min(values), max(values)
    fmt = f"{{:.{digits}f}}"
    return f"{fmt.format(low)} {unit}" if fmt.format(low) == fmt.format(high) else \
        f"{fmt.format(low)}-{fmt.format(high)} {unit}"


def _whole_parameter_sharding(runs: list) -> str:
    """The sentence on the parameter-sharded optimizers: largest rank's state vs the total, step time ratio."""
    last = runs[-1]
    names = [n for n in _get(last, "optimizers") if n != "adam"]
    if not names:
        return ""
    parts = []
    for name in names:
        o = _get(last, "optimizers", name)
        largest = max(b["sharded"] for b in o["state_bytes_per_rank"])
        parts.append(f"{name.capitalize()} {largest / o['state_bytes_total']:.2f} of its state on the fullest "
                     f"rank, step {o['step_ms']['sharded'] / o['step_ms']['replicated']:.2f}x replicated")
    return f" Sharded by whole parameters at {last['world_size']} ranks: " + "; ".join(parts) + "."


def _prose(optim: dict, zero: dict, train: dict) -> str:
    rows = _get(optim, "results")
    elementwise = [r for r in rows if _get(r, "elementwise")]
    lbfgs = next((r for r in rows if r["optimizer"] == "LBFGS"), None)
    whole = [r for r in rows if not r["elementwise"] and r is not lbfgs]  # Adafactor, Muon
    alloc = max(r["step_alloc_mb"] for r in elementwise)
    cold = [r["first_step_cold_s"] for r in elementwise if r.get("first_step_cold_s") is not None]
    warm = [r["first_step_warm_s"] for r in elementwise if r.get("first_step_warm_s") is not None]
    runs = [zero["runs"][k] for k in sorted(_get(zero, "runs"), key=int)]
    sizes = [r["world_size"] for r in runs]
    state = ", ".join(f"{r['state_mb_per_rank']['sharded']:.3g}" for r in runs)
    save = [r["io"]["checkpoint.save"]["mb_per_s_total"] for r in runs]
    fsync = [r["io"]["numpy.save + fsync"]["mb_per_s_total"] for r in runs]
    load = [r["io"]["checkpoint.load"]["mb_per_s_total"] for r in runs]
    step = "; ".join(f"{r['world_size']}: {r['step_ms']['replicated']:.3g} / {r['step_ms']['sharded']:.3g} ms"
                     for r in runs)
    text = (f"A step of every elementwise optimizer allocates nothing proportional to the model (at most "
            f"{alloc:.2g} MB beyond parameters, gradients and state)")
    if whole:
        text += "; " + " and ".join(f"{r['optimizer']}'s step {r['step_alloc_mb']:.2g} MB" for r in whole)
    if lbfgs is not None:
        text += (f"; an LBFGS step allocates {lbfgs['step_alloc_mb']:.0f} MB, about "
                 f"{lbfgs['step_alloc_mb'] * 1e6 / (4 * _get(optim, 'config', 'tensors') * _get(optim, 'config', 'numel')):.0f}"
                 " times the parameters' bytes (like PyTorch's, it works on flat copies of the gradient and of "
                 "the parameters)")
    if cold and warm:
        text += (f". A kernel compiles in {_span(cold, 's', 1)} the first time and loads from the disk cache in "
                 f"about {sum(warm) / len(warm):.2f} s (mostly importing numba) in the next process")
    text += (f". With `shard_state=True`, Adam's state per rank is {state} MB at {_ranks(sizes)} ranks (step time "
             f"replicated / sharded at {step}); checkpoints save at {_span(save, 'MB/s')} (SHA-256 and fsync included; "
             f"`numpy.save` + fsync of the same bytes: {_span(fsync, 'MB/s')}) and load at {_span(load, 'MB/s')}.")
    text += _whole_parameter_sharding(runs)
    if train:
        text += (f" The main job (`{train['command']}`) reaches {train['accuracy']:.3f} test accuracy; the whole "
                 f"command, start-up included, takes {train['seconds']:.1f} s.")
    return text


def _ranks(sizes) -> str:
    return ", ".join(map(str, sizes[:-1])) + f" and {sizes[-1]}" if len(sizes) > 1 else str(sizes[0])


def section(results: dict) -> str:
    """The Markdown between the markers: the table, the prose and the figures."""
    autograd, optim = results["autograd"], results["optim"]
    torch_total = _get(autograd, "results").get("torch", {}).get("total_ms")
    ratio = autograd.get("ratio_total")
    sizes = "-".join(map(str, _get(autograd, "config", "sizes")))
    rows = [[f"MLP {sizes} forward + backward, batch {_get(autograd, 'config', 'batch')}",
             _ms(_get(autograd, "results", "lucid", "total_ms")), _ms(torch_total), _num(ratio), "<= 2",
             _met(None if ratio is None else ratio <= 2)]]
    rows += _optimizer_rows(optim) + _comm_rows(results["comm"], results["comm-single"])
    lines = ["On this project's 2-core machine (no GPU), one run of `python scripts/run_benchmarks.py`, which",
             "reruns every benchmark, rewrites [docs/benchmarks.md](docs/benchmarks.md) with the full tables, the",
             "machine and the commands, redraws the figures below and writes this section from the results.",
             "Ratios are lucid / PyTorch 2.13 (CPU), interleaved medians.", "",
             "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    prose = textwrap.fill(_prose(optim, results["zero"], results.get("train")), width=104, break_long_words=False,
                          break_on_hyphens=False)
    lines += ["", prose, "",
              "![optimizer steps, lucid vs PyTorch](docs/img/optim.png)",
              "![gradient reduction by bucket size and message size](docs/img/comm.png)",
              "![state bytes and step time per rank, checkpoint throughput, vs world size](docs/img/zero.png)"]
    return "\n".join(lines)


def rewrite(readme: str, results: dict, produced_figures: set) -> str:
    """`readme` with its measured section replaced; every figure it embeds must be in `produced_figures`."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"README.md needs exactly one {BEGIN} ... {END} section")
    start, stop = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    text = readme[:start] + "\n" + section(results) + "\n" + readme[stop:]
    embedded = set(re.findall(r"!\[[^\]]*\]\(docs/img/([^)]+)\)", text))
    stale = embedded - set(produced_figures)
    if stale:
        raise ValueError(f"README.md shows figures this run did not draw: {sorted(stale)}")
    return text
