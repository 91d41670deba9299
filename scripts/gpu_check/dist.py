"""gpu_check stage, run under `mpiexec -n 2`: DistributedOptimizer with CuPy buffers (each rank on GPU
local_rank % device_count, as distributed.init() picks) against a single-process run of the same global
batches, plus sharded/unsharded checkpoints of device state, broadcast_parameters and allreduce of
device arrays. Rank 0 prints one line per check.

LUCID_CHECK_DEVICE=cpu runs the same cases on the CPU (the dry run); LUCID_CHECK_QUICK=1 takes two
training cases."""
import os
import shutil
import sys
import tempfile
import traceback

import numpy as np

import distributed
import lucid
from distributed import cuda_aware
from common import DEVICE as DEV, QUICK, device_of, to_device, to_host
from lucid import nn, optim

world = distributed.init()
rank, size = world.rank, world.size
BATCH = 12
lines = []


def say(ok, name, detail=""):
    lines.append((ok, name, detail))


def model(dtype):
    lucid.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    return m.to(dtype).to(DEV)


def batch(step, dtype):
    rng = np.random.default_rng(100 + step)
    return rng.standard_normal((BATCH, 5)).astype(dtype), rng.integers(0, 3, BATCH)


def train(m, opt, steps, dtype, share, start=0):
    for step in range(start, start + steps):
        x, y = batch(step, dtype)
        if share:
            x, y = np.array_split(x, size)[rank], np.array_split(y, size)[rank]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(lucid.Tensor(x, device=DEV)), lucid.Tensor(y, device=DEV))
        loss.backward()
        opt.step()


def host_params(m):
    return [to_host(p.data).copy() for p in m.parameters()]


def maxdiff(a, b):
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)), initial=0.0))
               for x, y in zip(a, b))


def state_diff(sa, sb):
    worst = 0.0
    for pid in set(sa["state"]) | set(sb["state"]):
        for k in set(sa["state"].get(pid, {})) | set(sb["state"].get(pid, {})):
            va, vb = sa["state"].get(pid, {}).get(k), sb["state"].get(pid, {}).get(k)
            if va is None or vb is None:
                return float("inf")
            worst = max(worst, float(np.max(np.abs(np.asarray(va, np.float64) - np.asarray(vb, np.float64)),
                                            initial=0.0)))
    return worst


def on_device(opt):
    arrays = [v for st in opt.state.values() for v in st.values() if hasattr(v, "ndim") and v.ndim > 0]
    return all(device_of(v) == DEV for v in arrays) and bool(arrays)


CASES = [  # (name, class, kwargs, dtype, DistributedOptimizer kwargs, tolerance)
    ("Adam avg float64", optim.Adam, dict(lr=0.05), np.float64, {}, 1e-12),
    ("Adam avg float32", optim.Adam, dict(lr=0.05), np.float32, {}, 1e-5),
    ("Adam shard_state float64", optim.Adam, dict(lr=0.05), np.float64, dict(shard_state=True), 1e-12),
    ("Adam shard_state float64, one bucket per parameter", optim.Adam, dict(lr=0.05), np.float64,
     dict(shard_state=True, bucket_cap_mb=1e-4), 1e-12),
    ("RMSprop centered+momentum shard_state float64", optim.RMSprop, dict(lr=0.01, momentum=0.9, centered=True),
     np.float64, dict(shard_state=True), 1e-12),
    ("Adam avg float32, one bucket per parameter", optim.Adam, dict(lr=0.05), np.float32,
     dict(bucket_cap_mb=1e-4), 1e-5),
    ("SGD momentum Sum float32", optim.SGD, dict(lr=0.05, momentum=0.9), np.float32, dict(op=distributed.Sum), 1e-5),
    ("Adam fp16 compression float32", optim.Adam, dict(lr=0.05), np.float32,
     dict(compression=distributed.Compression.fp16), 2e-2),
    ("Adam fp16 compression shard_state float32", optim.Adam, dict(lr=0.05), np.float32,
     dict(compression=distributed.Compression.fp16, shard_state=True), 2e-2),
    ("LBFGS float64", optim.LBFGS, dict(lr=1, max_iter=3, history_size=5), np.float64, {}, 1e-9),
]
if QUICK:
    CASES = CASES[:2]


def case(name, cls, kw, dtype, dkw, tol):
    steps = 5
    ref = model(dtype)
    ref_opt = cls(ref.parameters(), **kw)
    m = model(dtype)
    dopt = distributed.DistributedOptimizer(cls(m.parameters(), **kw), named_parameters=m.named_parameters(), **dkw)
    if cls is optim.LBFGS:
        for step in range(steps):
            for mm, oo, share in ((ref, ref_opt, False), (m, dopt, True)):
                x, y = batch(step, dtype)
                if share:
                    x, y = np.array_split(x, size)[rank], np.array_split(y, size)[rank]

                def closure(mm=mm, oo=oo, x=x, y=y):
                    oo.zero_grad()
                    loss = nn.functional.cross_entropy(mm(lucid.Tensor(x, device=DEV)), lucid.Tensor(y, device=DEV))
                    loss.backward()
                    return loss
                oo.step(closure)
    else:
        scale = size if dkw.get("op") is distributed.Sum else 1
        ref_kw = dict(kw, lr=kw["lr"] * scale) if scale != 1 else kw  # Sum of rank means = size x the mean
        ref_opt = cls(ref.parameters(), **ref_kw)
        train(ref, ref_opt, steps, dtype, share=False)
        train(m, dopt, steps, dtype, share=True)
    d = maxdiff(host_params(m), host_params(ref))
    on_gpu = all(p.device == DEV for p in m.parameters())
    sd = dopt.state_dict()  # a collective when sharded
    s = state_diff(sd, ref_opt.state_dict()) if cls is not optim.LBFGS and "op" not in dkw else 0.0
    ok = d <= tol and s <= max(tol, 1e-6) * 10 and on_gpu
    say(ok, f"2-rank {name}", f"max |param diff| {d:.2e}, state diff {s:.2e}, params on {DEV}: {on_gpu}")


def checkpoint_case(shard, dtype=np.float32):
    tag = "sharded" if shard else "unsharded"
    directory = world.broadcast_object(tempfile.mkdtemp(prefix="lucid-ckpt-") if rank == 0 else None)
    try:
        m = model(dtype)
        opt = distributed.DistributedOptimizer(optim.Adam(m.parameters(), lr=0.05), named_parameters=m.named_parameters(),
                                               shard_state=shard)
        train(m, opt, 3, dtype, share=True)
        distributed.checkpoint.save(directory, model=m, optimizer=opt, extra={"step": 3})
        saved_state = opt.state_dict()
        train(m, opt, 2, dtype, share=True, start=3)
        after = host_params(m)
        m2 = model(dtype)
        with lucid.no_grad():
            for p in m2.parameters():
                p.data *= 0  # a different starting point: load must overwrite it
        opt2 = distributed.DistributedOptimizer(optim.Adam(m2.parameters(), lr=0.05),
                                                named_parameters=m2.named_parameters(), shard_state=shard)
        extra = distributed.checkpoint.load(directory, model=m2, optimizer=opt2)
        loaded_state = opt2.state_dict()
        device_ok = on_device(opt2.optimizer) and all(p.device == DEV for p in m2.parameters())
        sdiff = state_diff(saved_state, loaded_state)
        train(m2, opt2, 2, dtype, share=True, start=3)
        d = maxdiff(host_params(m2), after)
        ok = d == 0.0 and sdiff == 0.0 and device_ok and extra == {"step": 3}
        say(ok, f"2-rank {tag} checkpoint save/load of device state",
            f"resumed params diff {d:.2e}, state diff {sdiff:.2e}, state+params on {DEV}: {device_ok}")
    finally:
        world.barrier()
        if rank == 0:
            shutil.rmtree(directory, ignore_errors=True)


def collectives_case():
    m = model(np.float32)
    if rank == 1:
        with lucid.no_grad():
            for p in m.parameters():
                p.data += 1.0
    distributed.broadcast_parameters(m.state_dict(), root_rank=0)
    mine = host_params(m)
    everyone = world.allgather_object(mine)
    d = maxdiff(everyone[0], everyone[-1])
    say(d == 0.0, "2-rank broadcast_parameters of device arrays", f"rank0 vs rank{size - 1} diff {d:.1e}")
    a = to_device(np.arange(1 << 20, dtype=np.float32) * (rank + 1), DEV)
    distributed.allreduce(a, distributed.Sum)
    want = np.arange(1 << 20, dtype=np.float32) * sum(range(1, size + 1))
    d = float(np.abs(to_host(a) - want).max())
    say(d == 0.0, "2-rank allreduce of a 4 MiB device array", f"max diff {d:.1e}")


def main():
    if rank == 0:
        env = os.environ.get("LUCID_MPI_CUDA_AWARE")
        print(f"world {size}; LUCID_MPI_CUDA_AWARE={env!r}; cuda_aware() -> {world.cuda_aware()}; "
              f"the library reports CUDA support: {cuda_aware.library_cuda_support(world.MPI, world.comm)!r}; "
              f"local_rank {world.local_rank}/{world.local_size}", flush=True)
    dev = lucid.gpu.current_device() if DEV == "gpu" else None
    count = lucid.gpu.device_count()
    devices, locals_ = zip(*world.allgather_object((dev, world.local_rank)))
    if DEV == "gpu":
        say(list(devices) == [r % count for r in locals_], "one GPU per rank (local_rank % device_count)",
            f"devices {list(devices)} for local ranks {list(locals_)}, {count} GPU(s)")
    for c in CASES:
        try:
            case(*c)
        except Exception as exc:  # noqa: BLE001
            print(f"FAIL 2-rank {c[0]} (rank {rank}): {type(exc).__name__}: {str(exc)[:300]}", flush=True)
            traceback.print_exc()
            world.abort(3)  # a rank that raised alone would leave the other waiting in a collective
    for shard in (False, True):
        try:
            checkpoint_case(shard)
        except Exception as exc:  # noqa: BLE001
            print(f"FAIL 2-rank checkpoint shard={shard} (rank {rank}): {type(exc).__name__}: {str(exc)[:300]}",
                  flush=True)
            traceback.print_exc()
            world.abort(3)
    collectives_case()
    everyone = world.allgather_object(lines)
    if rank == 0:
        bad = 0
        for i, (ok, name, detail) in enumerate(everyone[0]):
            oks = [r[i][0] for r in everyone]
            bad += not all(oks)
            print(("PASS " if all(oks) else "FAIL ") + name + ": " + detail
                  + ("" if all(oks) else f" (per rank: {oks})"), flush=True)
        print(f"dist: {len(everyone[0]) - bad} pass, {bad} fail", flush=True)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    code = main()
    world.barrier()
    sys.exit(code)
