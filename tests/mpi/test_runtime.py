"""What distributed.init() sets up for a job, in real mpiexec jobs started by plain `python` (no
`-m mpi4py`): the exception hook that ends the job when one rank raises, each rank's share of the
cores for its BLAS, OpenMP and compiled-step threads unless the user chose, the check of
LUCID_MPI_CUDA_AWARE against the library, and (with GPUs) one GPU per rank unless the user chose."""

import json
import os
import re
import sys
import textwrap

import pytest

from gpu_helpers import needs_gpu
from mpi_helpers import child_env, launch_skip_reason, mpiexec, run_job

RAISE = textwrap.dedent("""
    import numpy as np
    import lucid
    from lucid import nn, optim
    import distributed

    comm = distributed.init()
    lucid.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = distributed.DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), model.named_parameters())
    x = lucid.Tensor(np.ones((3, 4), dtype=np.float32))
    for step in range(3):  # the other ranks go on to the next step's reductions and wait for rank 1 there
        opt.zero_grad()
        model(x).sum().backward()
        if comm.rank == 1 and step == 1:
            raise RuntimeError("rank 1 fails during its step")
        opt.step()
    print("rank", comm.rank, "finished: the job was not aborted")
""")

THREADS = textwrap.dedent("""
    import json, logging
    logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    import numpy as np
    from threadpoolctl import threadpool_info
    import lucid
    import distributed
    comm = distributed.init()
    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    print("THREADS " + json.dumps({"rank": comm.rank, "lucid": lucid.get_num_threads(), "blas": blas}), flush=True)
""")

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "BLIS_NUM_THREADS", "GOTO_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def job(request, tmp_path, source, ranks, env_changes=None, timeout=40, args=()):
    reason = launch_skip_reason(request.config)
    if reason:
        pytest.skip(reason)
    script = tmp_path / "job.py"
    script.write_text(source)
    env = child_env(tmp_path, ranks)
    for variable in THREAD_VARIABLES:
        env.pop(variable, None)
    env.update(env_changes or {})
    return run_job([mpiexec(), "-n", str(ranks), sys.executable, str(script), *args], tmp_path, env, timeout)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("ranks", [2, 3])
def test_a_rank_that_raises_under_plain_python_ends_the_job(request, tmp_path, ranks):
    status, output, elapsed = job(request, tmp_path, RAISE, ranks)
    assert status is not None, f"the job hung after one rank raised:\n{output}"
    assert status != 0 and elapsed < 15, f"status {status} after {elapsed:.1f} s:\n{output}"
    assert f"[rank 1] uncaught RuntimeError on rank 1 of {ranks}: aborting the MPI job" in output, output
    assert "[rank 1] RuntimeError: rank 1 fails during its step" in output, output
    assert "finished" not in output, output


def _reports(output):
    """Each rank's THREADS report (the ranks' lines can run together on the launcher's stdout)."""
    return sorted((json.loads(text) for text in re.findall(r"THREADS (\{[^{}]*\})", output)),
                  key=lambda r: r["rank"])


@pytest.mark.timeout(60)
def test_each_rank_gets_its_share_of_the_cores(request, tmp_path):
    status, output, _ = job(request, tmp_path, THREADS, 2)
    assert status == 0, output
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert [(r["lucid"], r["blas"]) for r in _reports(output)] == [(share, [share])] * 2, output
    assert "distributed: rank 0: 2 ranks share" in output and "kernels " in output, output


@pytest.mark.timeout(60)
def test_thread_counts_the_user_set_are_kept(request, tmp_path):
    status, output, _ = job(request, tmp_path, THREADS, 2, {"OPENBLAS_NUM_THREADS": "2"})
    assert status == 0, output
    assert [r["blas"] for r in _reports(output)] == [[2], [2]], output
    assert "blas kept (OPENBLAS_NUM_THREADS=2)" in output, output


CUDA_AWARE = textwrap.dedent("""
    import distributed
    world = distributed.init()
    print(f"rank {world.rank} cuda_aware {world.cuda_aware()}", flush=True)
""")


@pytest.mark.timeout(60)
def test_a_refused_cuda_aware_override_ends_the_job_at_init(request, tmp_path):
    """LUCID_MPI_CUDA_AWARE=1 on the PyPI mpich wheel (no CUDA support): every rank fails in init()."""
    status, output, elapsed = job(request, tmp_path, CUDA_AWARE, 2, {"LUCID_MPI_CUDA_AWARE": "1"})
    assert status is not None and status != 0 and elapsed < 20, f"status {status} after {elapsed:.1f} s:\n{output}"
    assert "LUCID_MPI_CUDA_AWARE=1, but this MPI library" in output and "reports no CUDA support" in output, output
    assert "LUCID_MPI_CUDA_AWARE_FORCE=1" in output and "rank 0 cuda_aware" not in output, output


@pytest.mark.timeout(60)
def test_the_second_override_forces_cuda_aware_mpi(request, tmp_path):
    status, output, _ = job(request, tmp_path, CUDA_AWARE, 2,
                            {"LUCID_MPI_CUDA_AWARE": "1", "LUCID_MPI_CUDA_AWARE_FORCE": "1"})
    assert status == 0, output
    assert "rank 0 cuda_aware True" in output and "rank 1 cuda_aware True" in output, output


GPU_PER_RANK = textwrap.dedent("""
    import sys
    import lucid
    import distributed
    if "--choose" in sys.argv:
        lucid.gpu.set_device(0)
    world = distributed.init()
    x = lucid.zeros(1, device="gpu")
    print(f"GPU rank {world.rank} local {world.local_rank} current {lucid.gpu.current_device()} "
          f"array {x.data.device.id} count {lucid.gpu.device_count()}", flush=True)
""")


@pytest.mark.gpu
@pytest.mark.timeout(120)
@needs_gpu
@pytest.mark.parametrize("ranks", [2, 3])
def test_each_rank_computes_on_gpu_local_rank_modulo_the_count(request, tmp_path, ranks):
    status, output, _ = job(request, tmp_path, GPU_PER_RANK, ranks, timeout=100)
    assert status == 0, output
    lines = re.findall(r"GPU rank (\d+) local (\d+) current (\d+) array (\d+) count (\d+)", output)
    assert len(lines) == ranks, output
    for rank, local, current, array, count in lines:
        assert int(current) == int(array) == int(local) % int(count), output


@pytest.mark.gpu
@pytest.mark.timeout(120)
@needs_gpu
def test_a_gpu_the_user_chose_before_init_is_kept(request, tmp_path):
    status, output, _ = job(request, tmp_path, GPU_PER_RANK, 2, timeout=100, args=("--choose",))
    assert status == 0, output
    assert [line[2:4] for line in re.findall(r"GPU rank (\d+) local (\d+) current (\d+) array (\d+)", output)] \
        == [("0", "0")] * 2, output
