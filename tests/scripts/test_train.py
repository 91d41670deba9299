"""The main job end to end: one process, two ranks, and a resume at another world size."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lucid
from gpu_helpers import needs_gpu
from script_jobs import job_env

ROOT = Path(__file__).resolve().parents[2]
TRAIN = str(ROOT / "scripts" / "train.py")
MPIEXEC = str(Path(sys.executable).with_name("mpiexec"))
needs_mpi = pytest.mark.skipif(not os.path.exists(MPIEXEC) and shutil.which("mpiexec") is None,
                               reason="no mpiexec beside the Python interpreter")


def run(args, ranks=1, timeout=240):
    """Run the main job (under mpiexec -n ranks when ranks > 1); return its stdout lines."""
    command = [sys.executable, TRAIN, *args]
    if ranks > 1:
        launcher = MPIEXEC if os.path.exists(MPIEXEC) else shutil.which("mpiexec")
        command = [launcher, "-n", str(ranks), sys.executable, "-m", "mpi4py", TRAIN, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=job_env(ranks), cwd=ROOT)
    assert done.returncode == 0, f"train.py failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return [line for line in done.stdout.splitlines() if line.strip()]


def accuracy(lines) -> float:
    match = re.fullmatch(r"test accuracy: (\d\.\d{3})", lines[-1])
    assert match, f"the last line is not 'test accuracy: 0.xxx': {lines[-1]!r}"
    return float(match.group(1))


def epoch_lines(lines) -> list:
    return [line for line in lines if line.startswith("epoch")]


@pytest.mark.timeout(300)
def test_one_process_reaches_high_accuracy():
    lines = run(["--epochs", "4"])
    assert len(epoch_lines(lines)) == 4
    assert accuracy(lines) >= 0.93


@needs_mpi
@pytest.mark.timeout(300)
def test_two_ranks_train_like_one_process():
    one = run(["--epochs", "3"])
    two = run(["--epochs", "3"], ranks=2)
    assert len(epoch_lines(two)) == 3
    assert abs(accuracy(two) - accuracy(one)) <= 0.02  # same global batches; only float rounding differs


@needs_mpi
@pytest.mark.timeout(300)
def test_resume_at_another_world_size_continues_where_it_stopped(tmp_path):
    checkpoint = str(tmp_path / "ckpt")
    common = ["--epochs", "4", "--shard-state", "--checkpoint", checkpoint]
    stopped = run(common + ["--stop-after", "2"], ranks=2)
    assert len(epoch_lines(stopped)) == 2
    resumed = run(common + ["--resume"], ranks=1)
    epochs = epoch_lines(resumed)
    assert [line.split()[1] for line in epochs] == ["3/4", "4/4"], epochs
    assert accuracy(resumed) >= 0.93
    straight = run(["--epochs", "4", "--shard-state"], ranks=2)
    assert abs(accuracy(resumed) - accuracy(straight)) <= 0.02


@pytest.mark.parametrize("device", ["tpu", "gpu:x", "cuda:-1"])
def test_an_unknown_device_is_a_usage_error(device):
    done = subprocess.run([sys.executable, TRAIN, "--device", device], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env=job_env())
    assert done.returncode == 2 and f"--device must be cpu, gpu or gpu:N, not '{device}'" in done.stderr


@pytest.mark.skipif(lucid.gpu_available(), reason="checks the message without a GPU")
def test_device_gpu_without_a_gpu_says_what_is_missing():
    done = subprocess.run([sys.executable, TRAIN, "--device", "gpu", "--epochs", "1"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env=job_env())
    assert done.returncode == 1 and "--device gpu: no usable GPU here: " in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "test accuracy" not in done.stdout


@pytest.mark.gpu
@needs_mpi
@pytest.mark.timeout(300)
@needs_gpu
def test_two_ranks_on_the_gpu_train_like_one_process_on_the_cpu():
    one = run(["--epochs", "2"])
    two = run(["--epochs", "2", "--device", "gpu"], ranks=2)
    assert "on gpu" in two[0] and len(epoch_lines(two)) == 2
    assert abs(accuracy(two) - accuracy(one)) <= 0.02
