"""README.md's measured section is written from the benchmarks' JSON: targets shown as met or missed,
LBFGS's allocation named, figures only from the same run, and a clear error when a result is missing.

The reports below have the shapes the benchmark scripts write (checked end to end by
`python scripts/run_benchmarks.py --quick --out DIR`, which needs the bench extra); their numbers
are made up to drive each branch.
"""

import copy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import readme_measured  # noqa: E402
import run_benchmarks  # noqa: E402


def _optimizer(name, lucid_ms, torch_ms, target, path="default", alloc=0.003, elementwise=True):
    ratio = lucid_ms / torch_ms
    first_step = {"first_step_cold_s": 1.0, "first_step_warm_s": 0.3} if elementwise else {}
    return {"optimizer": name, "lucid_ms": lucid_ms, "torch_ms": torch_ms, "torch_default_ms": torch_ms * 2,
            "torch_path": path, "ratio": ratio, "target": target, "elementwise": elementwise,
            "meets_target": None if target is None else ratio <= target, "step_alloc_mb": alloc, **first_step}


def _whole_parameters(n):
    """Adafactor sharded by whole parameters: two ranks of three hold 4000 of the 10000 state bytes."""
    sharded = [4000, 4000, 2000][:n] if n == 3 else [10000 // n] * n
    return {"state_bytes_total": 10000, "state_bytes_per_rank": [{"sharded": b} for b in sharded],
            "step_ms": {"replicated": 10.0, "sharded": 7.0}}


def _zero_run(n):
    return {"world_size": n, "optimizers": {"adam": {}, "adafactor": _whole_parameters(n)},
            "state_mb_per_rank": {"replicated": 80.0, "sharded": 80.0 / n},
            "step_ms": {"replicated": 5.0 * n, "sharded": 4.0 * n},
            "io": {"checkpoint.save": {"mb_per_s_total": 400.0 + n}, "numpy.save + fsync": {"mb_per_s_total": 700.0},
                   "checkpoint.load": {"mb_per_s_total": 900.0 + n}}}


RESULTS = {
    "autograd": {"config": {"sizes": [64, 256, 10], "batch": 256},
                 "results": {"lucid": {"total_ms": 4.0}, "torch": {"total_ms": 4.0}}, "ratio_total": 1.0},
    "optim": {"config": {"tensors": 100, "numel": 100_000}, "results": [
        _optimizer("SGD", 3.0, 4.0, 1.25, "fused"), _optimizer("Adam", 5.0, 6.0, 1.25, "fused"),
        _optimizer("AdamW", 5.0, 6.0, 1.25, "fused"), _optimizer("NAdam", 5.0, 20.0, 0.5),
        _optimizer("RAdam", 5.0, 25.0, 0.5), _optimizer("RMSprop", 4.0, 15.0, 0.5),
        _optimizer("Rprop", 5.0, 60.0, 0.5), _optimizer("Adagrad", 3.6, 5.0, 0.5, "fused"),
        _optimizer("Adafactor", 40.0, 50.0, None, alloc=0.9, elementwise=False),
        _optimizer("LBFGS", 60.0, 70.0, None, alloc=200.0, elementwise=False)]},
    "comm": {"config": {"ranks": 2, "tensors": 100, "numel": 100_000},
             "steps": {"caps": [{"label": "25 MB", "overlapped_units": 0.9}],
                       "torch": {"ddp_cost_units": 2.4, "lucid_speedup": 2.7}}},
    "comm-single": {"single": {"overhead_pct": -1.0}},
    "zero": {"runs": {str(n): _zero_run(n) for n in (1, 2, 3)}},
    "train": {"command": "mpiexec -n 2 python -m mpi4py scripts/train.py", "seconds": 3.5, "accuracy": 0.975},
}
FIGURES = {"optim.png", "comm.png", "zero.png"}


def _row(text, start):
    return next(line for line in text.splitlines() if line.startswith(start))


def test_a_missed_target_is_shown_as_missed_and_a_met_one_as_met():
    text = readme_measured.section(RESULTS)
    assert _row(text, "| `Adagrad` step").endswith("| <= 0.5 (`fused=True`) | **missed** |")
    assert _row(text, "| `Adam` step").endswith("| yes |")
    assert "40 MB at 2 ranks" in _row(text, "| gradient reduction")


def test_the_allocation_claim_names_lbfgs_and_the_plain_optimizers_and_the_main_job_is_timed():
    prose = " ".join(readme_measured.section(RESULTS).split())
    assert "every elementwise optimizer allocates nothing proportional to the model (at most 0.003 MB" in prose
    assert "state); Adafactor's step 0.9 MB; an LBFGS step" in prose
    assert "an LBFGS step allocates 200 MB, about 5 times the parameters' bytes" in prose
    assert "reaches 0.975 test accuracy" in prose and "takes 3.5 s" in prose
    assert "sharded at 1: 5 / 4 ms; 2: 10 / 8 ms; 3: 15 / 12 ms" in prose
    assert ("Sharded by whole parameters at 3 ranks: Adafactor 0.40 of its state on the fullest rank, "
            "step 0.70x replicated.") in prose


def test_only_the_marked_section_changes_and_figures_must_come_from_the_run():
    readme = "intro\n<!-- measured -->\nold numbers\n<!-- /measured -->\noutro\n"
    text = readme_measured.rewrite(readme, RESULTS, FIGURES)
    assert text.startswith("intro\n<!-- measured -->\n") and text.endswith("<!-- /measured -->\noutro\n")
    assert "old numbers" not in text
    with pytest.raises(ValueError, match=r"figures this run did not draw: \['zero.png'\]"):
        readme_measured.rewrite(readme, RESULTS, FIGURES - {"zero.png"})
    with pytest.raises(ValueError, match="exactly one"):
        readme_measured.rewrite("no markers\n", RESULTS, FIGURES)


def test_a_result_the_readme_needs_but_the_json_lacks_is_named():
    broken = copy.deepcopy(RESULTS)
    broken["optim"]["results"] = [r for r in broken["optim"]["results"] if r["optimizer"] != "Rprop"]
    with pytest.raises(readme_measured.MissingResult, match="Rprop"):
        readme_measured.section(broken)
    del broken["comm-single"]["single"]
    with pytest.raises(readme_measured.MissingResult):
        readme_measured.section({**RESULTS, "comm-single": broken["comm-single"]})


def test_the_readme_has_one_measured_section_whose_figures_the_benchmarks_draw():
    readme = (ROOT / "README.md").read_text()
    drawn = {plot for *_, plot in run_benchmarks.benchmarks() if plot}
    assert readme.count(readme_measured.BEGIN) == 1 and readme.count(readme_measured.END) == 1
    readme_measured.rewrite(readme, RESULTS, drawn)  # raises if the README shows a figure no benchmark draws
    assert set(run_benchmarks.QUICK) == {name for name, *_ in run_benchmarks.benchmarks()}


def test_toy_numbers_never_overwrite_the_checkouts_readme():
    with pytest.raises(SystemExit):
        run_benchmarks.main(["--quick"])
