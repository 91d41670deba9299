"""The examples in examples/ run as their docstrings say, and do what they claim."""

import re
import sys
from pathlib import Path

import pytest

from script_jobs import mpirun, run, skip_if_under_mpi

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def launching(request):
    skip_if_under_mpi(request.config)


@pytest.mark.timeout(300)
def test_horovod_mnist_port_reaches_95_percent_at_2_ranks(launching, tmp_path):
    out = mpirun(2, EXAMPLES / "horovod_mnist.py", cwd=tmp_path)
    accuracies = [float(a) for a in re.findall(r"Test set: Average loss: [\d.]+, Accuracy: ([\d.]+)%", out)]
    assert len(accuracies) == 25, out[-2000:]  # one test per epoch, printed by rank 0 only
    assert accuracies[-1] >= 95.0, accuracies
    assert "Train Epoch: 25 [" in out


@pytest.mark.timeout(300)
def test_zero_example_shards_state_and_resumes_at_another_world_size(launching, tmp_path):
    ckpt = tmp_path / "ckpt"
    script = EXAMPLES / "zero_checkpoints.py"
    first = mpirun(2, script, "--checkpoint", ckpt, "--epochs", "2", cwd=tmp_path).splitlines()
    epochs = [line for line in first if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"], first
    held = re.search(r"Adam state elements per rank \[(\d+), (\d+)\] \(of (\d+)\)", epochs[-1])
    assert held, epochs[-1]
    a, b, total = map(int, held.groups())
    assert a + b == total and max(a, b) < total  # each rank holds its share only
    resumed = run([sys.executable, script, "--checkpoint", ckpt, "--epochs", "3", "--resume"], tmp_path).splitlines()
    assert resumed[0] == f"resumed {ckpt} at epoch 2 (saved on 2 ranks)", resumed
    assert [line.split(":")[0] for line in resumed if line.startswith("epoch ")] == ["epoch 3/3"]
    assert f"per rank [{total}] (of {total})" in resumed[1]
    assert "step 69" in resumed[-2]  # 3 epochs of 23 global batches: the resumed run continued the count
    assert float(resumed[-1].split()[-1]) >= 0.9


@pytest.mark.timeout(300)
def test_pytest_mpi_example_skips_in_one_process_and_passes_on_two_ranks(launching, tmp_path):
    example = EXAMPLES / "test_pytest_mpi.py"
    plain = run([sys.executable, "-m", "pytest", example, "-q", "--color=no", "-p", "no:cacheprovider"], tmp_path)
    assert re.search(r"\b1 passed, 3 skipped\b", plain), plain
    both = mpirun(2, "-m", "pytest", "--with-mpi", example, "-q", "--color=no", "-p", "no:cacheprovider",
                  cwd=tmp_path)
    assert len(re.findall(r"\b4 passed\b", both)) == 2, both  # every rank ran every test
