"""Fused Adam step on N float32 parameters (default 100 M): lucid on CuPy, and torch's fused CUDA Adam
when this Python has torch with CUDA (`--torch`). Prints ms/step and effective bandwidth."""
import os
import sys
import time

N = int(os.environ.get("LUCID_CHECK_NUMEL", 100_000_000))
STEPS = 20
BYTES = 28 * N  # reads param, grad, exp_avg, exp_avg_sq; writes param, exp_avg, exp_avg_sq (float32)


def lucid_adam():
    import cupy
    import numpy as np
    from lucid import nn, optim
    rng = np.random.default_rng(0)  # host RNG: cupy.random would need cuRAND, which the gpu extra lacks
    p = nn.Parameter(cupy.asarray(rng.standard_normal(N, dtype=np.float32)))
    g = cupy.asarray(rng.standard_normal(N, dtype=np.float32) * np.float32(1e-3))
    opt = optim.Adam([p], lr=1e-3)
    sync = cupy.cuda.get_current_stream().synchronize
    t = time.perf_counter()
    p.grad = g
    opt.step()
    sync()
    first = time.perf_counter() - t
    for _ in range(3):
        opt.step()
    sync()
    t = time.perf_counter()
    for _ in range(STEPS):
        opt.step()
    sync()
    dt = (time.perf_counter() - t) / STEPS
    assert bool(cupy.isfinite(p.data).all())
    print(f"lucid Adam {N / 1e6:.0f}M float32: {dt * 1e3:.2f} ms/step ({BYTES / dt / 1e9:.0f} GB/s), "
          f"first step incl. compile {first:.2f}s")
    return dt


def torch_adam():
    import torch
    if not torch.cuda.is_available():
        print("torch without CUDA: skipped")
        return None
    p = torch.randn(N, device="cuda", requires_grad=True)
    p.grad = torch.randn_like(p) * 1e-3
    opt = torch.optim.Adam([p], lr=1e-3, fused=True)
    for _ in range(3):
        opt.step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(STEPS):
        opt.step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / STEPS
    print(f"torch {torch.__version__} fused Adam {N / 1e6:.0f}M float32: {dt * 1e3:.2f} ms/step "
          f"({BYTES / dt / 1e9:.0f} GB/s)")
    return dt


if __name__ == "__main__":
    if "--torch" in sys.argv:
        torch_adam()
    else:
        lucid_adam()
