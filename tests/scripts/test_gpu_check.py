"""scripts/gpu_check.sh without a GPU: its dry run (LUCID_CHECK_DEVICE=cpu) drives every stage script
(probe, kernels, parity, two ranks under mpiexec) through the CPU paths, so the check cannot rot
between the rare runs on a GPU; and asked for a GPU where there is none, it fails at once, naming why."""

import subprocess
import sys

import pytest

import lucid
from script_jobs import ROOT, job_env, skip_if_under_mpi

SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def gpu_check(tmp_path, ranks=1, **env):
    environment = job_env(ranks, OUT=str(tmp_path / "out"), LUCID_CHECK_SKIP_INSTALL="1",
                          LUCID_CHECK_PYTHON=sys.executable, LUCID_CHECK_QUICK="1", **env)
    done = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=environment, capture_output=True, text=True,
                          timeout=240)
    summary = (tmp_path / "out" / "summary.txt").read_text()
    return done.returncode, summary, done.stdout + done.stderr


@pytest.mark.timeout(260)
def test_the_dry_run_passes_every_stage_on_the_cpu(request, tmp_path):
    skip_if_under_mpi(request.config)
    status, summary, output = gpu_check(tmp_path, ranks=2, LUCID_CHECK_DEVICE="cpu")
    assert status == 0, output[-6000:]
    lines = summary.splitlines()
    for stage in ("probe", "kernels", "parity", "dist (staged)"):
        assert any(line.startswith(f"PASS {stage}:") for line in lines), f"no PASS line for {stage}:\n{summary}"
    assert "6 kernels compiled+run on cpu" in summary and " 0 fail" in summary, summary
    assert not any(line.startswith("FAIL") for line in lines), summary
    assert "SKIP dist (CUDA-aware)" in summary, summary  # the PyPI mpich wheel is not CUDA-aware


@pytest.mark.timeout(120)
@pytest.mark.skipif(lucid.gpu_available(), reason="checks the failure without a usable GPU")
def test_without_a_gpu_the_check_fails_at_the_probe_and_says_why(tmp_path):
    status, summary, output = gpu_check(tmp_path, LUCID_CHECK_DEVICE="gpu")
    assert status == 1, output[-4000:]
    assert summary.startswith("FAIL probe: PROBE FAILED"), summary
    assert lucid.gpu.unavailable_reason() in summary, summary
    assert "kernels" not in summary, summary  # no later stage ran
