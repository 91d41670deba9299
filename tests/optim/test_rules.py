"""Each optimizer against its equations, computed by hand in plain Python floats for a few steps.

These are independent of the rule code: they restate the published update (as PyTorch documents it)
for one scalar parameter, so a mistake in a rule or its coefficients shows here even without torch.
"""

import math

import numpy as np
import pytest

from lucid import nn, optim
from lucid.optim.elementwise import CpuBackend, use_cpu_backend

GRADS = [0.5, -1.0, 2.0, 0.25, -0.75, 1.5, -2.0, 0.1]


def trajectory(cls, steps=len(GRADS), p0=1.0, grads=GRADS, **kwargs):
    w = nn.Parameter(np.array([p0]))
    opt = cls([w], **kwargs)
    out = []
    for g in grads[:steps]:
        w.grad = np.array([g])
        opt.step()
        out.append(float(w.data[0]))
    return out


def sgd(lr, momentum=0.0, dampening=0.0, wd=0.0, nesterov=False):
    p, buf, out = 1.0, None, []
    for g in GRADS:
        g = g + wd * p
        if momentum:
            buf = g if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p -= lr * g
        out.append(p)
    return out


def adam(lr, b1, b2, eps, wd=0.0, amsgrad=False, decoupled=False):
    p, m, v, vmax, out = 1.0, 0.0, 0.0, 0.0, []
    for t, g in enumerate(GRADS, 1):
        if decoupled:
            p *= 1 - lr * wd
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = max(vmax, v)
        vhat = vmax if amsgrad else v
        p -= lr / (1 - b1 ** t) * m / (math.sqrt(vhat) / math.sqrt(1 - b2 ** t) + eps)
        out.append(p)
    return out


def adamax(lr, b1, b2, eps):
    p, m, u, out = 1.0, 0.0, 0.0, []
    for t, g in enumerate(GRADS, 1):
        m = b1 * m + (1 - b1) * g
        u = max(b2 * u, abs(g) + eps)
        p -= lr / (1 - b1 ** t) * m / u
        out.append(p)
    return out


def nadam(lr, b1, b2, eps, psi):
    p, m, v, prod, out = 1.0, 0.0, 0.0, 1.0, []
    for t, g in enumerate(GRADS, 1):
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod *= mu
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = math.sqrt(v / (1 - b2 ** t)) + eps
        p -= lr * (1 - mu) / (1 - prod) * g / denom + lr * mu_next / (1 - prod * mu_next) * m / denom
        out.append(p)
    return out


def radam(lr, b1, b2, eps):
    p, m, v, out = 1.0, 0.0, 0.0, []
    rho_inf = 2 / (1 - b2) - 1
    for t, g in enumerate(GRADS, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1 ** t)
        rho = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        if rho > 5:
            r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            p -= lr * mhat * r * math.sqrt(1 - b2 ** t) / (math.sqrt(v) + eps)
        else:
            p -= lr * mhat
        out.append(p)
    return out


def rmsprop(lr, alpha, eps, momentum=0.0, centered=False):
    p, v, gbar, buf, out = 1.0, 0.0, 0.0, 0.0, []
    for g in GRADS:
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            gbar = alpha * gbar + (1 - alpha) * g
            d = math.sqrt(v - gbar * gbar) + eps
        else:
            d = math.sqrt(v) + eps
        if momentum:
            buf = momentum * buf + g / d
            p -= lr * buf
        else:
            p -= lr * g / d
        out.append(p)
    return out


def adagrad(lr, lr_decay, init, eps):
    p, s, out = 1.0, init, []
    for t, g in enumerate(GRADS, 1):
        s += g * g
        p -= lr / (1 + (t - 1) * lr_decay) * g / (math.sqrt(s) + eps)
        out.append(p)
    return out


def adadelta(lr, rho, eps):
    p, v, u, out = 1.0, 0.0, 0.0, []
    for g in GRADS:
        v = rho * v + (1 - rho) * g * g
        delta = math.sqrt(u + eps) / math.sqrt(v + eps) * g
        u = rho * u + (1 - rho) * delta * delta
        p -= lr * delta
        out.append(p)
    return out


def asgd(lr, lambd, alpha, t0):
    p, ax, eta, mu, out, averages = 1.0, 0.0, lr, 1.0, [], []
    for t, g in enumerate(GRADS, 1):
        p = p * (1 - lambd * eta) - eta * g
        ax = p if mu == 1 else ax + (p - ax) * mu
        eta = lr / (1 + lambd * lr * t) ** alpha
        mu = 1 / max(1, t - t0)
        out.append(p)
        averages.append(ax)
    return out, averages


def rprop(lr, etas, sizes):
    p, prev, size, out = 1.0, 0.0, lr, []
    for g in GRADS:
        s = g * prev
        factor = etas[1] if s > 0 else (etas[0] if s < 0 else 1.0)
        size = min(max(size * factor, sizes[0]), sizes[1])
        if s < 0:
            g = 0.0
        p -= math.copysign(size, g) if g else 0.0
        prev = g
        out.append(p)
    return out


CASES = [
    (optim.SGD, dict(lr=0.1), sgd(0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.1),
     sgd(0.1, 0.9, 0.3, 0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True), sgd(0.1, 0.9, nesterov=True)),
    (optim.Adam, dict(lr=0.1), adam(0.1, 0.9, 0.999, 1e-8)),
    (optim.Adam, dict(lr=0.1, amsgrad=True, weight_decay=0.1), adam(0.1, 0.9, 0.999, 1e-8, 0.1, True)),
    (optim.AdamW, dict(lr=0.1, betas=(0.8, 0.9)), adam(0.1, 0.8, 0.9, 1e-8, 0.01, decoupled=True)),
    (optim.Adamax, dict(lr=0.1), adamax(0.1, 0.9, 0.999, 1e-8)),
    (optim.NAdam, dict(lr=0.1, momentum_decay=0.05), nadam(0.1, 0.9, 0.999, 1e-8, 0.05)),
    (optim.RAdam, dict(lr=0.1, betas=(0.9, 0.5)), radam(0.1, 0.9, 0.5, 1e-8)),
    (optim.RAdam, dict(lr=0.1), radam(0.1, 0.9, 0.999, 1e-8)),
    (optim.RMSprop, dict(lr=0.01), rmsprop(0.01, 0.99, 1e-8)),
    (optim.RMSprop, dict(lr=0.01, momentum=0.5, centered=True), rmsprop(0.01, 0.99, 1e-8, 0.5, True)),
    (optim.Adagrad, dict(lr=0.1, lr_decay=0.5, initial_accumulator_value=0.2),
     adagrad(0.1, 0.5, 0.2, 1e-10)),
    (optim.Adadelta, dict(lr=0.9, rho=0.5), adadelta(0.9, 0.5, 1e-6)),
    (optim.ASGD, dict(lr=0.1, lambd=0.1, t0=2), asgd(0.1, 0.1, 0.75, 2)[0]),
    (optim.Rprop, dict(lr=0.1, step_sizes=(0.05, 0.3)), rprop(0.1, (0.5, 1.2), (0.05, 0.3))),
]


@pytest.fixture(params=[CpuBackend.NUMBA, CpuBackend.NUMPY], ids=["numba", "numpy"])
def backend(request):
    previous = use_cpu_backend(request.param)
    yield
    use_cpu_backend(previous)


@pytest.mark.parametrize("cls, kwargs, expected", CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_rule_matches_the_equations(backend, cls, kwargs, expected):
    scalar_dtype_exact = cls not in (optim.NAdam, optim.ASGD)  # their scalar state is float32, as in torch
    got = trajectory(cls, **kwargs)
    np.testing.assert_allclose(got, expected, rtol=1e-14 if scalar_dtype_exact else 1e-6)


def test_asgd_average(backend):
    w = nn.Parameter(np.array([1.0]))
    opt = optim.ASGD([w], lr=0.1, lambd=0.1, t0=2)
    for g in GRADS:
        w.grad = np.array([g])
        opt.step()
    np.testing.assert_allclose(opt.get_averages()[0], [asgd(0.1, 0.1, 0.75, 2)[1][-1]], rtol=1e-6)


def test_sparse_adam_leaves_zero_gradient_entries_alone(backend):
    w = nn.Parameter(np.array([1.0, 1.0]))
    opt = optim.SparseAdam([w], lr=0.1)
    for g in GRADS[:3]:
        w.grad = np.array([g, 0.0])
        opt.step()
    assert w.data[1] == 1.0 and opt.state[w]["exp_avg"][1] == 0.0
    p, m, v = 1.0, 0.0, 0.0
    for t, g in enumerate(GRADS[:3], 1):  # SparseAdam's eps sits outside the bias correction
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        p -= 0.1 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (math.sqrt(v) + 1e-8)
    np.testing.assert_allclose(w.data[0], p, rtol=1e-14)
