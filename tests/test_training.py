"""End to end: the seed's usage example, and an MLP trained on the offline digits data set with plain SGD
written here, with lucid.optim.Adam, and saved and loaded with lucid.save / lucid.load."""

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.data import DataLoader
from lucid.datasets import Digits
from lucid.nn import functional as F

# ---------------------------------------------------------------------------- the seed's usage example

class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.weights = nn.Parameter([1.0, 2.0, 3.0])

    def forward(self, x):
        return (self.weights * x).sum()


def test_seed_usage_example():
    model = Model()
    assert [name for name, _ in model.named_parameters()] == ["weights"]
    assert model.weights.dtype == np.float32 and model.weights.requires_grad
    opt = optim.SGD(model.parameters(), lr=0.02)
    x = lucid.Tensor([1.0, 2.0, 3.0])
    w = np.array([1.0, 2.0, 3.0], dtype=np.float32)       # the same loop in NumPy
    for step in range(3):
        opt.zero_grad()
        out = model(x)
        loss = (out - 10.0) ** 2
        loss.backward()
        expected_grad = 2 * (w @ x.numpy() - 10.0) * x.numpy()
        if step == 0:
            assert loss.item() == pytest.approx(16.0)      # out = 1 + 4 + 9 = 14
        np.testing.assert_allclose(model.weights.grad, expected_grad, rtol=1e-5)
        opt.step()
        w = w - np.float32(0.02) * expected_grad
        np.testing.assert_allclose(model.weights.data, w, rtol=1e-5)


def test_seed_usage_example_converges():
    model = Model()
    opt = optim.SGD(model.parameters(), lr=0.02)
    x = lucid.Tensor([1.0, 2.0, 3.0])
    for _ in range(50):
        opt.zero_grad()
        loss = (model(x) - 10.0) ** 2
        loss.backward()
        opt.step()
    assert loss.item() < 1e-6
    assert model(x).item() == pytest.approx(10.0, abs=1e-3)


# ---------------------------------------------------------------------------- digits

@pytest.fixture(scope="module")
def digits():
    return Digits(train=True), Digits(train=False)


def mlp(hidden=128):
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def accuracy(model, dataset):
    with lucid.no_grad():
        predicted = model(lucid.Tensor(dataset.data)).argmax(axis=1).numpy()
    return float((predicted == dataset.targets).mean())


def train_plain_sgd(train, seed, lr=0.5, epochs=30, batch_size=16):
    """Minibatch SGD with a linearly decaying step, written against the Tensor API only."""
    lucid.manual_seed(seed)
    model = mlp()
    params = list(model.parameters())
    loader = DataLoader(train, batch_size=batch_size, shuffle=True)
    for epoch in range(epochs):
        step = lr * (1 - epoch / epochs)
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            for p in params:
                p.grad = None
            loss.backward()
            with lucid.no_grad():
                for p in params:
                    p.data -= step * p.grad
    return model


def test_mlp_on_digits_with_plain_sgd(digits):
    train, test = digits
    lucid.manual_seed(0)
    untrained = accuracy(mlp(), test)
    model = train_plain_sgd(train, seed=0)      # seeds 0-4 reach 0.961-0.967 on the test part
    assert untrained < 0.3
    assert accuracy(model, test) >= 0.95
    assert accuracy(model, train) >= 0.98


def test_plain_sgd_training_is_deterministic(digits):
    train, _ = digits
    a = train_plain_sgd(train, seed=3, epochs=2)
    b = train_plain_sgd(train, seed=3, epochs=2)
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)


def train_adam(train, seed, lr=2e-2, epochs=10, batch_size=64):
    """lucid.optim.Adam (its default, fused step) with a cosine-annealed learning rate."""
    lucid.manual_seed(seed)
    model = mlp()
    opt = optim.Adam(model.parameters(), lr=lr)
    schedule = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True)
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        schedule.step()
    return model


def test_mlp_on_digits_with_adam_and_save_load(digits, tmp_path):
    train, test = digits
    model = train_adam(train, seed=0)             # seeds 0-4 reach 0.958-0.967
    assert accuracy(model, test) >= 0.95

    path = tmp_path / "digits.safetensors"
    lucid.save(model.state_dict(), path)
    loaded = lucid.load(path)
    assert list(loaded) == list(model.state_dict())
    for key, value in model.state_dict().items():
        assert isinstance(loaded[key], np.ndarray) and loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded[key], value)

    lucid.manual_seed(123)
    fresh = mlp()
    inputs = lucid.Tensor(test.data)
    with lucid.no_grad():
        before = fresh(inputs).numpy()
        weights = [p.data for p in fresh.parameters()]
        fresh.load_state_dict(loaded)
        assert all(p.data is w for p, w in zip(fresh.parameters(), weights))   # copied in place
        np.testing.assert_array_equal(fresh(inputs).numpy(), model(inputs).numpy())
    assert not np.array_equal(before, model(inputs).numpy())
    assert accuracy(fresh, test) == accuracy(model, test)
