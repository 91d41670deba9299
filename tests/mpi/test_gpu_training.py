"""N ranks training on CuPy buffers (marked `gpu` and `mpi`, skipped without a CUDA GPU): the distributed
optimizer's device buffers staged through pinned host memory (or handed to a CUDA-aware MPI) give what
one process gives on the full batches; sharded state; checkpoints of device state; collectives of
device arrays, raw CuPy arrays included."""

import numpy as np
import pytest

import lucid
from lucid import _backend, nn, optim

import distributed
from distributed import DistributedOptimizer
from gpu_helpers import GPU
from mpi_helpers import full_batch, my_share

pytestmark = [*GPU, pytest.mark.mpi(min_size=2), pytest.mark.timeout(120, method="thread")]

CASES = {  # name: (optimizer class, its arguments, dtype, DistributedOptimizer arguments, tolerance)
    "adam-float64": (optim.Adam, dict(lr=0.05), np.float64, {}, 1e-12),
    "adam-float32": (optim.Adam, dict(lr=0.05), np.float32, {}, 2e-5),
    "adam-sharded-float64": (optim.Adam, dict(lr=0.05), np.float64, dict(shard_state=True), 1e-12),
    "adam-sharded-bucket-per-parameter": (optim.Adam, dict(lr=0.05), np.float64,
                                          dict(shard_state=True, bucket_cap_mb=1e-4), 1e-12),
    "rmsprop-centered-momentum-sharded": (optim.RMSprop, dict(lr=0.01, momentum=0.9, centered=True), np.float64,
                                          dict(shard_state=True), 1e-12),
    "sgd-bucket-per-parameter": (optim.SGD, dict(lr=0.05, momentum=0.9), np.float32,
                                 dict(bucket_cap_mb=1e-4), 2e-5),
    "adam-fp16-compression": (optim.Adam, dict(lr=0.05), np.float32,
                              dict(compression=distributed.Compression.fp16), 2e-2),
}


@pytest.fixture
def gpu_world(world):
    """The world, each rank computing on GPU local_rank % device_count (as distributed.init() picks)."""
    lucid.gpu.set_device(world.local_rank % lucid.gpu.device_count())
    return world


def model(dtype):
    lucid.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(dtype).to("gpu")


def train(m, opt, steps, dtype, comm=None, start=0):
    for step in range(start, start + steps):
        x, y = full_batch(step)
        x, y = (my_share(x, comm), my_share(y, comm)) if comm is not None else (x, y)
        opt.zero_grad()
        logits = m(lucid.Tensor(x.astype(dtype), device="gpu"))
        nn.functional.cross_entropy(logits, lucid.Tensor(y, device="gpu")).backward()
        opt.step()


def host_params(m):
    return [_backend.to_host(p.data).astype(np.float64) for p in m.parameters()]


def largest_local(a, b):
    return max(float(np.abs(x - y).max(initial=0.0)) for x, y in zip(a, b))


def largest(comm, a, b):
    """The largest difference between two lists of arrays, over every rank."""
    return max(comm.allgather_object(largest_local(a, b)))


def state_difference(a, b):
    worst = 0.0
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert a["state"][k].keys() == b["state"][k].keys()
        for name, value in a["state"][k].items():
            assert not _backend.is_gpu_array(value), f"state {k}.{name} is a device array in state_dict()"
            other = np.asarray(b["state"][k][name], np.float64)
            worst = max(worst, float(np.abs(np.asarray(value, np.float64) - other).max(initial=0.0)))
    return worst


@pytest.mark.parametrize("case", CASES)
def test_ranks_on_the_gpu_equal_one_process_on_the_full_batches(gpu_world, case):
    cls, kwargs, dtype, dist_kwargs, tol = CASES[case]
    ref, m = model(dtype), model(dtype)
    ref_opt = cls(ref.parameters(), **kwargs)
    opt = DistributedOptimizer(cls(m.parameters(), **kwargs), m.named_parameters(), comm=gpu_world, **dist_kwargs)
    train(ref, ref_opt, 5, dtype)
    train(m, opt, 5, dtype, gpu_world)
    assert all(p.device == "gpu" for p in m.parameters())
    assert largest(gpu_world, host_params(m), host_params(ref)) <= tol
    difference = state_difference(opt.state_dict(), ref_opt.state_dict())  # a collective when sharded
    assert max(gpu_world.allgather_object(difference)) <= max(tol, 1e-6) * 10


@pytest.mark.parametrize("shard_state", [False, True], ids=["replicated", "sharded"])
def test_a_checkpoint_of_device_state_resumes_exactly(gpu_world, tmp_path, shard_state):
    directory = gpu_world.broadcast_object(str(tmp_path / "ckpt") if gpu_world.rank == 0 else None)
    m = model(np.float32)
    opt = DistributedOptimizer(optim.Adam(m.parameters(), lr=0.05), m.named_parameters(), comm=gpu_world,
                               shard_state=shard_state)
    train(m, opt, 3, np.float32, gpu_world)
    distributed.checkpoint.save(directory, model=m, optimizer=opt, extra={"step": 3})
    saved = opt.state_dict()
    train(m, opt, 2, np.float32, gpu_world, start=3)
    m2 = model(np.float32)
    with lucid.no_grad():
        for p in m2.parameters():
            p.data *= 0  # loading must overwrite it
    opt2 = DistributedOptimizer(optim.Adam(m2.parameters(), lr=0.05), m2.named_parameters(), comm=gpu_world,
                                shard_state=shard_state)
    assert distributed.checkpoint.load(directory, model=m2, optimizer=opt2) == {"step": 3}
    assert state_difference(opt2.state_dict(), saved) == 0.0
    on_gpu = [_backend.device_of(v) == "gpu" for st in opt2.optimizer.state.values() for v in st.values()
              if getattr(v, "ndim", 0) > 0]
    assert on_gpu and all(on_gpu) and all(p.device == "gpu" for p in m2.parameters())
    train(m2, opt2, 2, np.float32, gpu_world, start=3)
    assert largest(gpu_world, host_params(m2), host_params(m)) == 0.0


def test_collectives_of_device_arrays(gpu_world):
    import cupy
    m = model(np.float32)
    if gpu_world.rank == 1:
        with lucid.no_grad():
            for p in m.parameters():
                p.data += 1.0
    distributed.broadcast_parameters(m.state_dict(), root_rank=0, comm=gpu_world)
    everyone = gpu_world.allgather_object(host_params(m))
    assert all(largest_local(everyone[0], theirs) == 0.0 for theirs in everyone)
    raw = cupy.arange(1 << 20, dtype=cupy.float32) * (gpu_world.rank + 1)  # a raw CuPy array: 4 MiB
    distributed.allreduce(raw, distributed.Sum, comm=gpu_world)
    want = np.arange(1 << 20, dtype=np.float32) * sum(range(1, gpu_world.size + 1))
    np.testing.assert_array_equal(raw.get(), want)
    gathered = gpu_world.allgather_rows(cupy.full((gpu_world.rank + 1, 2), gpu_world.rank, dtype=cupy.float64))
    assert _backend.is_gpu_array(gathered)
    np.testing.assert_array_equal(gathered.get()[:, 0], np.repeat(np.arange(gpu_world.size),
                                                                  np.arange(1, gpu_world.size + 1)))
