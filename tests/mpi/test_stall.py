"""Never a silent hang: real mpiexec jobs in which one rank does something the others do not. Each ends
quickly, non-zero, with a message naming the rank that differs: a collective mismatch (the other ranks'
control messages meet it, or meet its exit) or, when it is busy elsewhere, the stall inspector's report
(LUCID_STALL_TIMEOUT=0.5) and then LUCID_STALL_ABORT's abort."""

import sys
import textwrap

import pytest

from mpi_helpers import child_env, launch_skip_reason, mpiexec, run_job

SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    import lucid
    from lucid import nn, optim
    import distributed

    case = sys.argv[1]
    comm = distributed.init()
    odd = comm.rank == 1
    lucid.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = distributed.DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                                           model.named_parameters(), shard_state=case.endswith("alone"))
    x = lucid.Tensor(np.ones((3, 4), dtype=np.float32))
    for step in range(3 + (case == "extra-step" and odd) - (case == "fewer-steps" and odd)):
        if step == 2 and odd and case == "busy":
            time.sleep(30)  # busy elsewhere between two steps
        opt.zero_grad()
        model(x).sum().backward()
        if step == 1 and odd and case == "clip-alone":
            opt.clip_grad_norm_(1.0)
        opt.step()
        if step == 1 and comm.rank == 0 and case == "state-dict-alone":
            opt.state_dict()
    print(f"rank {comm.rank} finished its loop", flush=True)
    if case == "busy-at-exit" and odd:
        time.sleep(30)
""")

OTHERS = {2: "rank 0", 3: "ranks [0, 2]"}
CASES = {
    # case: (ranks, what the output must say; {others} is the ranks that behave)
    "extra-step": (3, ["{others} reached the end of its script (exiting)",
                       "rank 1 calls allreduce of 10 float32 ('gradients', step 3, bucket 0)"]),
    "fewer-steps": (2, ["rank 1 reached the end of its script (exiting)",
                        "{others} calls allreduce of 10 float32 ('gradients', step 2, bucket 0)"]),
    "clip-alone": (3, ["rank 1 calls allreduce of 1 float64 ('clip_grad_norm_', step 1)",
                       "{others} call allgather of 12 float32 ('parameters', step 1)"]),
    "state-dict-alone": (2, ["rank 0 calls allgather of 10 float32 ('state_dict', step 2)",
                             "rank 1 calls reduce_scatter of 10 float32 ('gradients', step 2, bucket 0)"]),
    "busy": (3, ["stall: waited 0.", "'gradients', step 2, bucket 0",
                 "not arrived: rank 1: last entered #", "running, not waiting in a collective",
                 "LUCID_STALL_ABORT=2: aborting the job after 2."]),
    "busy-at-exit": (2, ["stall: waited 0.", "the end of its script (exiting)", "not arrived: rank 1",
                         "LUCID_STALL_ABORT=2: aborting the job after 2."]),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(CASES))
def test_one_rank_that_differs_ends_the_job_with_its_name(request, tmp_path, case):
    reason = launch_skip_reason(request.config)
    if reason:
        pytest.skip(reason)
    ranks, expected = CASES[case]
    script = tmp_path / "differ.py"
    script.write_text(SCRIPT)
    env = child_env(tmp_path, ranks)
    env.update(LUCID_STALL_TIMEOUT="0.5", LUCID_STALL_ABORT="2")
    status, output, elapsed = run_job([mpiexec(), "-n", str(ranks), sys.executable, str(script), case],
                                      tmp_path, env, timeout=40)
    assert status is not None, f"the job hung:\n{output}"
    assert status != 0 and elapsed < 20, f"status {status} after {elapsed:.1f} s:\n{output}"
    for text in expected:
        assert text.format(others=OTHERS[ranks]) in output, output
    if case == "busy":
        assert output.count("not arrived: rank 1") >= 2 * 2, output  # both waiting ranks, repeated
