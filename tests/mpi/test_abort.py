"""A rank that raises must end the whole job, not leave the others waiting in a collective forever.

Run as `python -m mpi4py script.py`, an uncaught exception on one rank calls MPI_Abort; this checks
that it does so in the middle of distributed training (the other rank is inside a reduction).
"""

import sys
import textwrap

import pytest

from mpi_helpers import child_env, launch_skip_reason, mpiexec, run_job

SCRIPT = textwrap.dedent("""
    import numpy as np
    import lucid
    from lucid import nn, optim
    import distributed

    comm = distributed.init()
    assert comm.size == 2, comm
    lucid.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = distributed.DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), model.named_parameters())

    def fail_on_rank_1(optimizer, args, kwargs):
        if comm.rank == 1 and step == 1:
            raise RuntimeError("rank 1 fails during its step")
    opt.register_step_pre_hook(fail_on_rank_1)
    x = lucid.Tensor(np.ones((3, 4), dtype=np.float32))
    for step in range(3):  # rank 0 goes on to the next step's reductions and waits for rank 1 there
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    print("rank", comm.rank, "finished: the job was not aborted")
""")


@pytest.mark.timeout(90)
def test_a_rank_that_raises_ends_the_job(request, tmp_path):
    reason = launch_skip_reason(request.config)
    if reason:
        pytest.skip(reason)
    script = tmp_path / "raise_on_rank_1.py"
    script.write_text(SCRIPT)
    command = [mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py", str(script)]
    status, output, elapsed = run_job(command, tmp_path, child_env(tmp_path, 2), timeout=60)
    assert status is not None, f"the job hung after one rank raised:\n{output}"
    assert status != 0, output
    assert elapsed < 30, f"{elapsed:.1f} s\n{output}"
    assert "rank 1 fails during its step" in output, output
    assert "finished" not in output, output
