"""gpu_check stage: is CuPy usable here? Device, versions, lucid's own probe (a kernel through CuPy's
NVRTC and a cuBLAS matmul), a kernel compiled by lucid (no fma, no ftz), a lucid tensor on the GPU.

With LUCID_CHECK_DEVICE=cpu (the dry run) it only reports why there is no GPU and exits 0."""
import sys
import time

import numpy as np

import lucid
from common import DEVICE as DEV, to_device
from lucid import optim


def main() -> int:
    print("lucid.gpu_available():", lucid.gpu_available(), lucid.gpu.unavailable_reason() or "")
    try:
        from cupy_backends.cuda.libs import nvrtc
        print("nvrtc", nvrtc.getVersion())
    except Exception as exc:  # noqa: BLE001 (no CuPy, or no libnvrtc)
        print("nvrtc: unavailable:", type(exc).__name__, exc)
    if DEV == "cpu":
        print("dry run (LUCID_CHECK_DEVICE=cpu): no GPU checks")
        return 0
    try:
        import cupy
        rt = cupy.cuda.runtime
        props = rt.getDeviceProperties(0)
        print(f"cupy {cupy.__version__}; devices {lucid.gpu.device_count()}; {props['name'].decode()} cc "
              f"{cupy.cuda.Device(0).compute_capability}; driver {rt.driverGetVersion()} runtime {rt.runtimeGetVersion()}")
        if not lucid.gpu_available():
            raise RuntimeError(lucid.gpu.unavailable_reason())
        t = time.perf_counter()
        p = lucid.nn.Parameter(np.ones(5, dtype=np.float32), device="gpu")
        opt = optim.Adam([p], lr=0.1)
        p.grad = to_device(np.ones(5, dtype=np.float32))
        opt.step()
        assert p.device == "gpu" and abs(float(p.data[0].get()) - 0.9) < 1e-6
        print(f"lucid Adam kernel compiled and run ({time.perf_counter() - t:.1f}s incl. compile)")
        x = lucid.Tensor([1.0, 2.0], device="gpu")
        assert x.device == "gpu" and (x * 2).tolist() == [2.0, 4.0]
        print("lucid tensor on gpu OK")
    except Exception as exc:  # noqa: BLE001
        print("PROBE FAILED:", type(exc).__name__, str(exc)[:500])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
