"""Adafactor, Muon and swa_utils without torch: their equations by hand, partial gradients, resumes, averaging."""

import math

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.optim import swa_utils
from lucid.optim.muon import adjust_lr, zeropower_via_newtonschulz


def params(*shapes, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(np.array(rng.standard_normal(s), dtype=dtype)) for s in shapes]


def adafactor_by_hand(theta, grads, lr=1e-2, tau=-0.8, eps1=None, eps2=1e-3, d=1.0, wd=0.0):
    """PyTorch 2.13's Adafactor on one parameter, written from its documented equations."""
    eps1 = np.finfo(theta.dtype).eps if eps1 is None else eps1
    theta = theta.copy()
    row = col = var = 0.0
    for t, g in enumerate(grads, start=1):
        weight = t ** tau  # 1 - beta2_t: the weight of the new squared gradient
        rho = min(lr, 1 / math.sqrt(t))
        alpha = max(eps2, np.sqrt(np.mean(theta ** 2))) * rho
        theta = theta * (1 - lr * wd)
        if g.ndim > 1:
            row = weight * np.mean(g * g, axis=-1, keepdims=True) + (1 - weight) * row
            col = weight * np.mean(g * g, axis=-2, keepdims=True) + (1 - weight) * col
            v = row * col / np.maximum(np.mean(row, axis=-2, keepdims=True), eps1)
        else:
            var = weight * g * g + (1 - weight) * var
            v = var
        u = g / np.maximum(np.sqrt(v), eps1)
        theta = theta - alpha * u / max(1.0, np.sqrt(np.mean(u * u)) / d)
    return theta


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), ()])
@pytest.mark.parametrize("kwargs", [{}, dict(weight_decay=0.1, d=1.5, beta2_decay=-0.5, eps=(1e-30, 1e-3))])
def test_adafactor_equals_its_equations(shape, kwargs):
    (w,) = params(shape)
    start = w.data.copy()
    rng = np.random.default_rng(1)
    grads = [np.array(rng.standard_normal(shape)) for _ in range(4)]
    opt = optim.Adafactor([w], **kwargs)
    for g in grads:
        w.grad = g.copy()
        opt.step()
    expected = adafactor_by_hand(start, grads, wd=kwargs.get("weight_decay", 0.0), d=kwargs.get("d", 1.0),
                                 tau=kwargs.get("beta2_decay", -0.8), eps1=kwargs.get("eps", (None,))[0])
    np.testing.assert_allclose(w.data, expected, rtol=1e-12, atol=1e-14)
    state = opt.state[w]
    assert float(state["step"]) == 4 and state["step"].dtype == np.float32
    if len(shape) > 1:
        assert state["row_var"].shape == shape[:-1] + (1,) and state["col_var"].shape == shape[:-2] + (1, shape[-1])
    else:
        assert state["variance"].shape == shape


def test_newton_schulz_orthogonalizes():
    rng = np.random.default_rng(0)
    for shape in ((8, 5), (5, 8)):
        g = rng.standard_normal(shape)
        x = zeropower_via_newtonschulz(g, (3.4445, -4.7750, 2.0315), 5, 1e-7)
        assert x.shape == shape and x.dtype == g.dtype
        singular = np.linalg.svd(x, compute_uv=False)
        assert singular.min() > 0.5 and singular.max() < 1.5  # U S' V^T with S' near 1, as Muon promises
        u, _, vt = np.linalg.svd(g, full_matrices=False)
        np.testing.assert_allclose(np.sign(np.sum(x * (u @ vt))), 1.0)
    with pytest.raises(ValueError, match="less than 100"):
        zeropower_via_newtonschulz(g, (1, 1, 1), 100, 1e-7)


def test_muon_equals_its_equations():
    (w,) = params((4, 6))
    start = w.data.copy()
    opt = optim.Muon([w], lr=0.02, weight_decay=0.1, momentum=0.9)
    rng = np.random.default_rng(2)
    buf, theta = np.zeros_like(start), start.copy()
    for _ in range(3):
        g = rng.standard_normal((4, 6))
        w.grad = g.copy()
        opt.step()
        buf = buf + 0.1 * (g - buf)
        update = zeropower_via_newtonschulz(g + 0.9 * (buf - g), (3.4445, -4.7750, 2.0315), 5, 1e-7)
        theta = theta * (1 - 0.02 * 0.1) - 0.02 * math.sqrt(max(1, 4 / 6)) * update
    np.testing.assert_allclose(w.data, theta, rtol=1e-12, atol=1e-14)
    assert adjust_lr(1.0, "match_rms_adamw", (4, 9)) == pytest.approx(0.6)


def test_muon_validates_like_torch():
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        optim.Muon(params((3,)))
    with pytest.raises(ValueError, match="Adjust learning rate function arbitrary is not supported"):
        optim.Muon(params((2, 2)), adjust_lr_fn="arbitrary")
    with pytest.raises(ValueError, match="momentum should be >= 0"):
        optim.Muon(params((2, 2)), momentum=-1)


@pytest.mark.parametrize("name, shapes", [("Adafactor", [(3, 4), (5,), ()]), ("Muon", [(3, 4), (2, 5)])])
def test_parameters_without_a_gradient_are_skipped(name, shapes):
    ps = params(*shapes)
    before = [p.data.copy() for p in ps]
    opt = getattr(optim, name)(ps)
    ps[0].grad = np.ones(ps[0].shape)
    opt.step()
    assert not np.array_equal(ps[0].data, before[0])
    for p, b in zip(ps[1:], before[1:]):
        np.testing.assert_array_equal(p.data, b)
        assert not opt.state.get(p)
    for p in ps:
        p.grad = np.ones(p.shape)
    opt.step()  # a parameter's first step can come later
    assert all(opt.state[p] for p in ps)


@pytest.mark.parametrize("name, shapes", [("Adafactor", [(3, 4), (5,), ()]), ("Muon", [(3, 4), (2, 5)])])
def test_state_dict_round_trip_through_a_file_resumes_identically(name, shapes, tmp_path):
    def run(ps, opt, steps, start=0):
        for t in range(start, start + steps):
            rng = np.random.default_rng(t)
            for p in ps:
                p.grad = rng.standard_normal(p.shape)
            opt.step()

    straight = params(*shapes)
    run(straight, getattr(optim, name)(straight, lr=0.01), 6)
    ps = params(*shapes)
    opt = getattr(optim, name)(ps, lr=0.01)
    run(ps, opt, 3)
    lucid.save({"optim": opt.state_dict(), "model": [p.data for p in ps]}, tmp_path / "ckpt.safetensors")
    loaded = lucid.load(tmp_path / "ckpt.safetensors")
    fresh = params(*shapes, seed=5)
    for p, data in zip(fresh, loaded["model"]):
        p.data[...] = data
    resumed = getattr(optim, name)(fresh, lr=0.01)
    resumed.load_state_dict(loaded["optim"])
    run(fresh, resumed, 3, start=3)
    for a, b in zip(straight, fresh):
        np.testing.assert_array_equal(a.data, b.data)


def test_adafactor_loads_an_older_dict_whose_step_is_a_number():
    (w,) = params((3,))
    opt = optim.Adafactor([w])
    w.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["step"] = 1
    opt.load_state_dict(sd)
    opt.step()
    assert float(opt.state[w]["step"]) == 2


# ---------------------------------------------------------------------------- swa_utils

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.fc(x))


def snapshots(model, count):
    rng = np.random.default_rng(0)
    taken = []
    for _ in range(count):
        for p in model.parameters():
            p.data[...] = rng.standard_normal(p.shape)
        taken.append([p.data.copy() for p in model.parameters()])
        yield taken


def test_averaged_model_is_the_running_mean_by_default():
    model = Net()
    averaged = swa_utils.AveragedModel(model)
    for taken in snapshots(model, 5):
        averaged.update_parameters(model)
    for mine, values in zip(averaged.module.parameters(), zip(*taken)):
        np.testing.assert_allclose(mine.data, np.mean(values, axis=0), rtol=1e-6, atol=1e-6)
    assert int(averaged.n_averaged.data) == 5 and averaged.n_averaged.dtype == np.int64


@pytest.mark.parametrize("multi", [False, True])
def test_ema_by_avg_fn_or_multi_avg_fn(multi):
    model = Net()
    kwargs = {"multi_avg_fn": swa_utils.get_ema_multi_avg_fn(0.9)} if multi else \
        {"avg_fn": swa_utils.get_ema_avg_fn(0.9)}
    averaged = swa_utils.AveragedModel(model, **kwargs)
    for taken in snapshots(model, 4):
        averaged.update_parameters(model)
    for mine, values in zip(averaged.module.parameters(), zip(*taken)):
        expected = values[0]
        for v in values[1:]:
            expected = 0.9 * expected + 0.1 * v
        np.testing.assert_allclose(mine.data, expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="Invalid decay value"):
        swa_utils.get_ema_avg_fn(1.5)


def test_buffers_are_copied_or_averaged():
    model = Net()
    copied = swa_utils.AveragedModel(model)
    averaged = swa_utils.AveragedModel(model, use_buffers=True)
    means = []
    for k in range(3):
        model.bn.running_mean.data[...] = k + 1.0
        means.append(k + 1.0)
        copied.update_parameters(model)
        averaged.update_parameters(model)
    np.testing.assert_allclose(copied.module.bn.running_mean.data, 3.0)
    np.testing.assert_allclose(averaged.module.bn.running_mean.data, np.mean(means), rtol=1e-6)


def test_update_bn_recomputes_the_statistics_over_the_loader():
    lucid.manual_seed(0)
    model = Net()
    rng = np.random.default_rng(0)
    batches = [lucid.Tensor(rng.standard_normal((8, 3)).astype(np.float32)) for _ in range(4)]
    model.bn.running_mean.data[...] = 100.0
    model.eval()
    swa_utils.update_bn([(b, None) for b in batches], model)
    assert not model.training and model.bn.momentum == 0.1
    features = np.concatenate([model.fc(b).data for b in batches])
    per_batch = [model.fc(b).data.mean(axis=0) for b in batches]
    np.testing.assert_allclose(model.bn.running_mean.data, np.mean(per_batch, axis=0), rtol=1e-5, atol=1e-6)
    assert features.shape == (32, 4)


def test_swalr_anneals_to_swa_lr():
    (w,) = params((2,))
    opt = optim.SGD([w], lr=0.5)
    scheduler = swa_utils.SWALR(opt, swa_lr=0.05, anneal_epochs=4, anneal_strategy="linear")
    lrs = []
    for _ in range(6):
        opt.step()
        scheduler.step()
        lrs.append(opt.param_groups[0]["lr"])
    start = 0.5
    expected = []
    for t in range(1, 7):
        alpha = min(1, t / 4)
        prev_alpha = min(1, (t - 1) / 4)
        base = 0.05 if prev_alpha == 1 else (start - prev_alpha * 0.05) / (1 - prev_alpha)
        start = 0.05 * alpha + base * (1 - alpha)
        expected.append(start)
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="anneal_strategy must"):
        swa_utils.SWALR(opt, swa_lr=1.0, anneal_strategy="exponential")
    with pytest.raises(ValueError, match="anneal_epochs must"):
        swa_utils.SWALR(opt, swa_lr=1.0, anneal_epochs=-1)
