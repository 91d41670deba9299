"""A kernel that keeps the GPU busy for a while (imports only CuPy, so a child process can use it before
lucid has loaded CuPy)."""

import numpy as np

# spins on the GPU's nanosecond timer: stands for the kernels of a backward pass still running
SPIN = r'''extern "C" __global__ void lucid_test_spin(long long nanoseconds) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now)); }
    while (now - start < (unsigned long long)nanoseconds);
}'''


def busy_gpu(seconds: float = 0.25) -> None:
    """Queue, on the current stream, a kernel that keeps it busy for about `seconds`."""
    import cupy
    cupy.RawKernel(SPIN, "lucid_test_spin")((1,), (1,), (np.int64(seconds * 1e9),))
