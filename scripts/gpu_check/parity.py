"""gpu_check stage: every optimizer configuration of the project's tests, stepped 20 times on the GPU and
on the CPU (float32 and float64, same gradients): parameters AND optimizer state compared; plus resume
CPU->GPU from a state dict, fused=False, Module.to("gpu") after the optimizer exists, LBFGS, float16,
and two probes of what used to differ (a NaN gradient in Rprop: sign(NaN) = 0 everywhere; float32
subnormals: lucid's kernels are compiled without flush-to-zero).

LUCID_CHECK_DEVICE=cpu compares the CPU with itself (the dry run: it checks this script, not lucid);
LUCID_CHECK_QUICK=1 takes three configurations."""
import sys
import time

import numpy as np

import lucid
from common import DEVICE as DEV, QUICK, device_of, to_device, to_host
from lucid import nn, optim
from lucid.optim.elementwise import CpuBackend, use_cpu_backend
from tests.optim.conftest import CONFIGS
from tests.optim.cuda_cases import lbfgs_rosenbrock

STEPS = 20
SHAPES = [(7, 5), (5,), (300,), (2, 3, 4)]
TOL = {np.float32: 1e-5, np.float64: 1e-12}
if QUICK:
    CONFIGS = [c for c in CONFIGS if c[0] in ("Adam", "RMSprop")][:3]

results = []   # (ok, name, detail)


def record(ok, name, detail=""):
    results.append((ok, name, detail))
    print(("PASS " if ok is True else "FAIL " if ok is False else "NOTE ") + name + (": " + detail if detail else ""),
          flush=True)


def host(x):
    return to_host(x)


def grads(step, dtype, nan=False):
    rng = np.random.default_rng([1, step])
    out = [(rng.standard_normal(s) * (rng.random(s) > 0.2)).astype(dtype) for s in SHAPES]
    if nan and step == 3:
        out[2][7] = np.nan
    return out


def params(dtype, device):
    rng = np.random.default_rng(0)
    return [nn.Parameter(rng.standard_normal(s).astype(dtype), device=device) for s in SHAPES]


def run(cls, kw, dtype, device, steps=STEPS, start=0, opt=None, ps=None, nan=False):
    ps = ps if ps is not None else params(dtype, device)
    opt = opt if opt is not None else cls(ps, **kw)
    for t in range(start, start + steps):
        for p, g in zip(ps, grads(t, dtype, nan)):
            p.grad = to_device(g, device)
        opt.step()
    return ps, opt


def leaves(obj, path=""):
    """(path, value) for every array/number inside a (possibly nested) state entry."""
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from leaves(obj[k], f"{path}[{k}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, obj


def diff(a, b, tol):
    """(bitwise equal, max relative difference in units of tol) of two arrays or numbers."""
    if a is None or b is None:
        return a is b, 0.0 if a is b else float("inf")
    x, y = np.asarray(host(a), dtype=np.float64), np.asarray(host(b), dtype=np.float64)
    if x.shape != y.shape:
        return False, float("inf")
    if np.array_equal(x, y, equal_nan=True):
        return True, 0.0
    with np.errstate(invalid="ignore"):
        d = np.abs(x - y) / (np.abs(y) + tol) / tol
    d = np.where(np.isnan(x) & np.isnan(y), 0.0, d)
    return False, float(np.nanmax(np.where(np.isnan(d), np.inf, d))) if d.size else 0.0


def compare(name, a_params, a_opt, b_params, b_opt, tol):
    """Parameters and every state entry (nested lists too) of two runs; names what differs beyond tol."""
    worst, where, bitwise = 0.0, [], True
    for i, (a, b) in enumerate(zip(a_params, b_params)):
        same, d = diff(a.data, b.data, tol)
        bitwise &= same
        worst = max(worst, d)
        if d > 1:
            where.append(f"param{i}")
    sa, sb = a_opt.state_dict()["state"], b_opt.state_dict()["state"]
    la, lb = dict(leaves(sa)), dict(leaves(sb))
    for key in sorted(set(la) | set(lb)):
        if key not in la or key not in lb:
            where.append(f"state{key} missing on one side")
            continue
        if device_of(la[key]) != "cpu":
            where.append(f"state{key} is a device array in state_dict()")
        same, d = diff(la[key], lb[key], tol)
        bitwise &= same
        worst = max(worst, d)
        if d > 1:
            where.append(f"state{key}")
    ok = not where
    record(ok, name, ("bitwise equal" if bitwise else f"max rel diff {worst:.2g} x tol ({tol:g})") +
           ("" if ok else "; differs: " + ", ".join(where[:8]) + (" ..." if len(where) > 8 else "")))


def main():
    previous = use_cpu_backend(CpuBackend.NUMPY)  # the CPU reference: NumPy path (tests show numba == NumPy)
    t0 = time.perf_counter()
    for cls_name, kw in CONFIGS:
        cls = getattr(optim, cls_name)
        for dtype in (np.float32, np.float64):
            label = f"{cls_name}{kw} {dtype.__name__}"
            try:
                cp, co = run(cls, kw, dtype, "cpu")
                gp, go = run(cls, kw, dtype, DEV)
                assert all(p.device == DEV for p in gp)
                compare(f"parity {label}", gp, go, cp, co, TOL[dtype])
                # resume: 10 CPU steps, state dict into a GPU optimizer, 10 more on the GPU
                hp, ho = run(cls, kw, dtype, "cpu", steps=STEPS // 2)
                rp = [nn.Parameter(host(p.data).copy(), device=DEV) for p in hp]
                ro = cls(rp, **kw)
                ro.load_state_dict(ho.state_dict())
                rp, ro = run(cls, kw, dtype, DEV, steps=STEPS - STEPS // 2, start=STEPS // 2, opt=ro, ps=rp)
                compare(f"resume cpu->gpu {label}", rp, ro, cp, co, TOL[dtype])
            except Exception as exc:  # noqa: BLE001
                record(False, f"parity {label}", f"{type(exc).__name__}: {str(exc)[:300]}")
    print(f"(configs took {time.perf_counter() - t0:.0f}s)")

    # fused=False (one kernel call per parameter)
    for cls_name, kw in [("Adam", dict(lr=0.05, amsgrad=True)), ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True))]:
        cls = getattr(optim, cls_name)
        try:
            cp, co = run(cls, kw, np.float64, "cpu")
            gp, go = run(cls, dict(kw, fused=False), np.float64, DEV)
            compare(f"fused=False {cls_name}{kw} float64", gp, go, cp, co, 1e-12)
        except Exception as exc:  # noqa: BLE001
            record(False, f"fused=False {cls_name}", f"{type(exc).__name__}: {exc}")

    # Module.to("gpu") after the optimizer was built on the CPU (flat buffers rebuilt, state moved)
    try:
        def model():
            lucid.manual_seed(0)
            return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
        rng = np.random.default_rng(5)
        xs = [rng.standard_normal((12, 5)) for _ in range(4)]
        ref, moved = model(), model()
        ro, mo = optim.Adam(ref.parameters(), lr=0.05), optim.Adam(moved.parameters(), lr=0.05)
        for t, x in enumerate(xs):
            if t == 2:
                moved.to(DEV)
            for m, o in ((ref, ro), (moved, mo)):
                o.zero_grad()
                dev = next(m.parameters()).device
                (m(lucid.Tensor(x, device=dev)) ** 2).mean().backward()
                o.step()
        ok = all(p.device == DEV for p in moved.parameters())
        compare("Module.to(gpu) after Adam was built (2 CPU + 2 GPU steps)", list(moved.parameters()), mo,
                list(ref.parameters()), ro, 1e-10)
        if not ok:
            record(False, "Module.to(gpu) after Adam", "parameters not on the GPU")
    except Exception as exc:  # noqa: BLE001
        record(False, "Module.to(gpu) after the optimizer", f"{type(exc).__name__}: {exc}")

    # LBFGS (plain optimizer, device scalars in the line search)
    try:
        gp, go = lbfgs_rosenbrock(DEV)
        cp, co = lbfgs_rosenbrock("cpu")
        compare("LBFGS strong_wolfe float64 (3 steps)", gp, go, cp, co, 1e-9)
    except Exception as exc:  # noqa: BLE001
        record(False, "LBFGS on the GPU", f"{type(exc).__name__}: {str(exc)[:300]}")

    # float16: the NumPy-dispatch fallback on CuPy arrays
    for cls_name, kw in [("Adam", dict(lr=0.01, eps=1e-4)), ("Rprop", dict(lr=0.01))]:
        try:
            cls = getattr(optim, cls_name)
            cp, co = run(cls, kw, np.float16, "cpu", steps=5)
            gp, go = run(cls, kw, np.float16, DEV, steps=5)
            compare(f"float16 {cls_name} (NumPy-dispatch path, 5 steps)", gp, go, cp, co, 1e-2)
        except Exception as exc:  # noqa: BLE001
            record(False, f"float16 {cls_name} on the GPU", f"{type(exc).__name__}: {str(exc)[:300]}")

    # probe: NaN gradient in Rprop (sign(NaN) = 0 in every form of the vocabulary: no NaN parameter)
    try:
        cp, co = run(optim.Rprop, dict(lr=0.05), np.float64, "cpu", steps=6, nan=True)
        gp, go = run(optim.Rprop, dict(lr=0.05), np.float64, DEV, steps=6, nan=True)
        c_nan, g_nan = int(np.isnan(host(cp[2].data)).sum()), int(np.isnan(host(gp[2].data)).sum())
        record(c_nan == g_nan, "Rprop with one NaN gradient entry", f"NaN params: cpu {c_nan}, gpu {g_nan}")
    except Exception as exc:  # noqa: BLE001
        record(False, "Rprop NaN probe", f"{type(exc).__name__}: {exc}")

    # probe: float32 subnormals (CuPy's own kernels get -ftz=true; lucid compiles its kernels without it)
    try:
        def tiny(device):
            p = nn.Parameter(np.ones(1000, dtype=np.float32), device=device)
            opt = optim.Adam([p], lr=1e-3)
            for t in range(3):
                p.grad = to_device(np.full(1000, 1e-20, dtype=np.float32), device)
                opt.step()
            return host(opt.state[p]["exp_avg_sq"])
        c, g = tiny("cpu"), tiny(DEV)
        record(bool(np.array_equal(c, g)), "Adam float32 with 1e-20 gradients (subnormal exp_avg_sq)",
               f"cpu exp_avg_sq {c[0]:.3g}, gpu {g[0]:.3g}")
    except Exception as exc:  # noqa: BLE001
        record(False, "subnormal probe", f"{type(exc).__name__}: {exc}")

    use_cpu_backend(previous)
    bad = [r for r in results if r[0] is False]
    print(f"parity: {sum(r[0] is True for r in results)} pass, {len(bad)} fail")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
