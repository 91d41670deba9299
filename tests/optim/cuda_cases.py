"""Every CUDA kernel lucid.optim generates, for the NVRTC compile tests (CI, no GPU) and the GPU tests;
and the LBFGS problem the GPU tests and scripts/gpu_check/parity.py both solve on each device.

Each elementwise rule with every combination of its flags (all of its state stored), and each
configuration of the optimizer test table (conftest.CONFIGS) with the flags and the stored state that
optimizer really uses, in float32 and float64; distinct kernel sources only.
"""

import itertools

import numpy as np

from lucid import nn, optim
from lucid.optim.elementwise import ElementwiseRule, cuda_kernel_source

from .conftest import CONFIGS

DTYPES = (np.float32, np.float64)


def elementwise_optimizers() -> list:
    """The optimizer classes lucid.optim exports whose step is an elementwise rule."""
    classes = {getattr(optim, name) for name in optim.__all__}
    return sorted((c for c in classes if isinstance(c, type) and issubclass(c, optim.Optimizer)
                   and isinstance(getattr(c, "rule", None), ElementwiseRule)), key=lambda c: c.__name__)


def _settings():
    """(optimizer name, rule, flags, stored state) for every flag combination and every configuration."""
    for cls in elementwise_optimizers():
        rule = cls.rule
        for values in itertools.product((False, True), repeat=len(rule.flags)):
            yield cls.__name__, rule, dict(zip(rule.flags, values)), rule.state
    for name, kwargs in CONFIGS:
        opt = getattr(optim, name)([nn.Parameter(np.ones(3))], **kwargs)
        group = opt.param_groups[0]
        yield name, opt.rule, opt.rule_flags(group), tuple(opt.state_init(group))


def kernel_cases() -> list:
    """[(label, rule, flags, stored state, CudaKernelSource)], one per distinct kernel source."""
    cases = {}
    for (name, rule, flags, stored), dtype in itertools.product(_settings(), DTYPES):
        source = cuda_kernel_source(rule, dtype, flags, stored)
        if source.name not in cases:
            on = ",".join(f for f, v in flags.items() if v) or "-"
            label = f"{name}-{np.dtype(dtype).name}-flags={on}-state={','.join(source.outputs[1:]) or '-'}"
            cases[source.name] = (label, rule, flags, stored, source)
    return list(cases.values())


def lbfgs_rosenbrock(device: str, steps: int = 3) -> tuple:
    """([x], optimizer) after `steps` LBFGS steps (strong Wolfe line search) on the 4-d Rosenbrock
    function from (-1.2, 1, 0.5, -0.3), in float64 on `device`."""
    x = nn.Parameter(np.array([-1.2, 1.0, 0.5, -0.3]), device=device)
    opt = optim.LBFGS([x], lr=1, max_iter=10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        a, b = x[:-1], x[1:]
        loss = ((1 - a) ** 2 + 100 * (b - a * a) ** 2).sum()
        loss.backward()
        return loss
    for _ in range(steps):
        opt.step(closure)
    return [x], opt
