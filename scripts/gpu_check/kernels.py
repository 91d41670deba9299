"""gpu_check stage: every CUDA kernel lucid.optim generates (tests/optim/cuda_cases.py: every rule x flag
combination x the stored state each test configuration uses x float32/float64), compiled by lucid
(NVRTC) on the device and run on small arrays with subnormal gradients, against the NumPy path of the
same rule, bit for bit; the state is passed in the reverse of the rule's order (binding by name).

LUCID_CHECK_DEVICE=cpu runs the same comparisons with the default CPU backend against NumPy (the dry
run); LUCID_CHECK_QUICK=1 takes the first few kernels only."""
import sys
import time

import numpy as np

from common import DEVICE as DEV, QUICK, to_device, to_host
from lucid.optim.elementwise import CpuBackend, use_cpu_backend
from tests.optim.cuda_cases import kernel_cases


def same_bits(a, b) -> bool:
    unsigned = np.uint32 if a.dtype == np.float32 else np.uint64
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a.view(unsigned), b.view(unsigned)))


def check(case, n=1031) -> list:
    """The names of the arrays that differ from the NumPy path (empty: the same bits)."""
    label, rule, flags, stored, source = case
    dtype = np.dtype(source.dtype)
    rng = np.random.default_rng(len(label))
    grad = (rng.standard_normal(n) * (rng.random(n) > 0.2)).astype(dtype)
    grad[:8] = np.finfo(dtype).smallest_subnormal * np.arange(1, 9)
    start = {"param": rng.standard_normal(n).astype(dtype), **{s: rng.uniform(0.1, 1.0, n).astype(dtype)
                                                               for s in stored}}
    coefficients = dict(zip(rule.coefficients, rng.uniform(0.05, 0.95, len(rule.coefficients))))
    host = {k: v.copy() for k, v in start.items()}
    dev = {k: to_device(v.copy(), DEV) for k, v in start.items()}
    previous = use_cpu_backend(CpuBackend.NUMPY)
    try:
        rule.apply(host["param"], grad, {s: host[s] for s in stored}, coefficients, flags)
    finally:
        use_cpu_backend(previous)
    rule.apply(dev["param"], to_device(grad, DEV), {s: dev[s] for s in reversed(stored)}, coefficients,
               flags)
    return [k for k in start if not same_bits(to_host(dev[k]), host[k])]


def main() -> int:
    cases = kernel_cases()[:6] if QUICK else kernel_cases()
    failures, t0 = [], time.perf_counter()
    for case in cases:
        try:
            differ = check(case)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{case[0]}: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        if differ:
            failures.append(f"{case[0]}: {', '.join(differ)} differ from the NumPy path")
    print(f"{len(cases)} kernels compiled+run on {DEV} in {time.perf_counter() - t0:.0f}s; "
          f"{len(failures)} mismatches/failures")
    for failure in failures[:40]:
        print("  ", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
