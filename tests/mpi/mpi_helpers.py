"""Shared pieces of the multi-rank tests: a tiny model, deterministic batches, a training loop that runs
either on this rank's share of each batch or on the full batch in one process, and checks that every
rank agrees on (so all ranks pass or fail a test together, and none is left waiting in a collective)."""

import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import lucid
from lucid import nn

import distributed

BATCH = 12  # divisible by 1, 2, 3 and 4: every rank's share is the same size, so averages match


def make_model(seed=0, hidden=7):
    """A tiny MLP; the same on every rank (same seed). Parameter sizes are not multiples of 2 or 3."""
    lucid.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, hidden), nn.Tanh(), nn.Linear(hidden, 3))


def full_batch(step, micro=0, n=BATCH):
    rng = np.random.default_rng(1000 * step + micro + 1)
    return rng.standard_normal((n, 5)).astype(np.float32), rng.integers(0, 3, n)


def my_share(array, comm):
    """This rank's contiguous share of a batch (the whole batch for comm=None)."""
    if comm is None:
        return array
    return np.array_split(array, comm.size)[comm.rank]


def loss_on(model, x, y, reduction="mean"):
    return nn.functional.cross_entropy(model(lucid.Tensor(x)), lucid.Tensor(y), reduction=reduction)


def train(model, opt, steps, comm=None, *, passes=1, reduction="mean", scheduler=None, clip=None, start=0):
    """`steps` optimizer steps; comm=None trains on the full batches in one process.

    With `passes` > 1 each step accumulates that many micro-batches, each loss scaled by 1/passes.
    `clip` clips the (reduced) gradients' global norm before the step; returns the norms.
    """
    norms = []
    for step in range(start, start + steps):
        opt.zero_grad()
        for micro in range(passes):
            x, y = full_batch(step, micro)
            loss = loss_on(model, my_share(x, comm), my_share(y, comm), reduction)
            if passes > 1:
                loss = loss * (1.0 / passes)
            loss.backward()
        if clip is not None:
            if isinstance(opt, distributed.DistributedOptimizer):
                norms.append(float(opt.clip_grad_norm_(clip).item()))
            else:
                norms.append(float(nn.utils.clip_grad_norm_(model.parameters(), clip).item()))
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return norms


def max_difference(a, b):
    """Largest absolute difference between two models' parameters (or two lists of arrays)."""
    a, b = _arrays(a), _arrays(b)
    assert len(a) == len(b)
    return max(float(np.abs(x - y).max(initial=0.0)) for x, y in zip(a, b))


def _arrays(thing):
    items = thing.parameters() if hasattr(thing, "parameters") else thing
    return [np.asarray(p.data if isinstance(p, lucid.Tensor) else p, np.float64) for p in items]


def state_difference(sd, ref):
    """Largest absolute difference between two optimizer state dicts' arrays; they must have the same keys."""
    assert sd["state"].keys() == ref["state"].keys(), (sorted(sd["state"]), sorted(ref["state"]))
    worst = 0.0
    for k, entry in ref["state"].items():
        assert sd["state"][k].keys() == entry.keys(), (k, sorted(sd["state"][k]), sorted(entry))
        for name, value in entry.items():
            mine = np.asarray(sd["state"][k][name], np.float64)
            assert mine.shape == np.shape(value), (k, name, mine.shape, np.shape(value))
            worst = max(worst, float(np.abs(mine - np.asarray(value, np.float64)).max(initial=0.0)))
    return worst


def interrupted(model, opt, steps=3):
    """Train `steps` in one process, keep what a checkpoint would (parameter values, state dict), then train
    `steps` more: the uninterrupted run that a resumed one must match. Returns (values, state dict)."""
    train(model, opt, steps)
    values = [p.data.copy() for p in model.parameters()]
    saved = opt.state_dict()
    train(model, opt, steps, start=steps)
    return values, saved


def assert_continues_like(comm, model, opt, ref_model, ref, tolerance, steps=3):
    """Train the resumed `model` from step `steps` on `comm`; it and its state must end where `ref`'s did."""
    train(model, opt, steps, comm, start=steps)
    assert worst(comm, max_difference(model, ref_model)) < tolerance
    assert worst(comm, state_difference(opt.state_dict(), ref.state_dict())) < tolerance
    assert_identical_everywhere(comm, model)


def clip_alongside(comm, model, dist, ref_model, ref, max_norm, norm_type, steps=3):
    """`steps` steps clipping the global gradient norm, `dist` on `comm` and `ref` in one process on the full
    batch; returns both runs' norms before clipping, step by step."""
    norms, ref_norms = [], []
    for step in range(steps):
        x, y = full_batch(step)
        dist.zero_grad(), ref.zero_grad()
        loss_on(model, my_share(x, comm), my_share(y, comm)).backward()
        loss_on(ref_model, x, y).backward()
        norms.append(float(dist.clip_grad_norm_(max_norm, norm_type).item()))
        ref_norms.append(float(nn.utils.clip_grad_norm_(ref_model.parameters(), max_norm, norm_type).item()))
        dist.step(), ref.step()
    return norms, ref_norms


def assert_same_state_types(sd, ref) -> None:
    """Every state value of `sd` has the type (and, for arrays and numbers, the dtype) of `ref`'s."""
    for k, entry in ref["state"].items():
        for name, value in entry.items():
            mine = sd["state"][k][name]
            assert type(mine) is type(value) and np.asarray(mine).dtype == np.asarray(value).dtype, (k, name)


def digest(model) -> str:
    """A hash of every parameter's bytes."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(np.ascontiguousarray(p.data).tobytes())
    return h.hexdigest()


def everywhere(comm, value):
    """Every rank's `value`, in rank order (one process: [value])."""
    return comm.allgather_object(value)


def worst(comm, value):
    """The largest `value` across ranks (so every rank asserts on the same number)."""
    return max(everywhere(comm, value))


def assert_identical_everywhere(comm, model):
    digests = everywhere(comm, digest(model))
    assert len(set(digests)) == 1, f"parameters differ between ranks: {digests}"


# ---------------------------------------------------------------------------- launching mpiexec from pytest

def mpiexec():
    """The mpiexec next to this Python (the `mpich` wheel's, matching mpi4py's MPI), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def launch_skip_reason(config):
    """Why this session must not launch mpiexec jobs (None when it may)."""
    if config.getoption("--with-mpi", default=False) or config.getoption("--only-mpi", default=False) \
            or distributed.launched_by_mpi():
        return "running under MPI (or with --with-mpi / --only-mpi): the launcher does not launch itself"
    if mpiexec() is None:
        return f"no mpiexec next to {sys.executable} or on PATH (pip install mpich)"
    for module in ("mpi4py", "pytest_mpi"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e .[test])"
    return None


def child_env(log_dir, size):
    """The environment for an mpiexec job of `size` ranks started from this process.

    Without an outer launcher's (or pytest's) variables; ranks > 0 log to `log_dir`. When the ranks
    outnumber the cores, numba's kernels run one thread per rank and MPICH's waits sleep instead of
    spinning: a spinning rank would take the core another rank needs (about halves the run time at 3
    ranks on 2 cores). Values already in the environment win.
    """
    prefixes = ("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPI_LOCAL", "PYTEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(LUCID_PYTEST_LOG_DIR=str(log_dir), LUCID_EXPECT_WORLD_SIZE=str(size), PYTHONUNBUFFERED="1")
    cores = os.cpu_count() or 1
    env.setdefault("NUMBA_NUM_THREADS", str(max(1, cores // size)))
    if size >= cores:
        env.setdefault("MPIR_CVAR_ENABLE_HEAVY_YIELD", "1")
    return env


def run_job(command, cwd, env, timeout):
    """Run an mpiexec job; (exit status, or None if it ran past `timeout` and was killed; output; seconds).

    The job gets a process group of its own, so a hung job is ended whole: mpiexec, its proxies and
    every rank, not mpiexec alone with orphaned ranks left spinning.
    """
    start = time.perf_counter()
    job = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, errors="replace", start_new_session=True)
    try:
        output, _ = job.communicate(timeout=timeout)
        status = job.returncode
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        output, _ = job.communicate()
        status = None
    return status, output, time.perf_counter() - start
