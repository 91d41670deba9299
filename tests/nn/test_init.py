"""lucid.nn.init: gains, fans, distributions of every initialiser, in-place writes, seeding, errors."""

import math

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.nn import init


def P(*shape, dtype="float32"):
    return nn.Parameter(np.zeros(shape, dtype=dtype))


def test_calculate_gain():
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("conv2d") == 1
    assert init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="Unsupported nonlinearity gelu"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="negative_slope x not a valid number"):
        init.calculate_gain("leaky_relu", "x")


def test_fans():
    assert init._calculate_fan_in_and_fan_out(P(5, 3)) == (3, 5)
    assert init._calculate_fan_in_and_fan_out(P(8, 4, 3, 2)) == (24, 48)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(P(5))


def test_initialisers_write_in_place_and_return_the_tensor():
    p = P(20, 30)
    array = p.data
    for fn in (init.uniform_, init.normal_, init.trunc_normal_, init.xavier_uniform_, init.xavier_normal_,
               init.kaiming_uniform_, init.kaiming_normal_, init.orthogonal_, init.ones_, init.zeros_, init.eye_,
               lambda t: init.constant_(t, 0.3)):
        assert fn(p) is p
        assert p.data is array and p.dtype == np.float32 and p.requires_grad
    assert p.grad is None


def test_constant_fills():
    p = P(3, 4)
    assert np.all(init.constant_(p, 2.5).data == 2.5)
    assert np.all(init.ones_(p).data == 1) and np.all(init.zeros_(p).data == 0)
    np.testing.assert_array_equal(init.eye_(P(2, 3)).data, np.eye(2, 3))
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions"):
        init.eye_(P(2, 2, 2))


@pytest.mark.parametrize("fill, check", [
    (lambda p: init.uniform_(p, -2.0, 3.0), lambda v: v.min() >= -2 and v.max() < 3 and abs(v.mean() - 0.5) < 0.05),
    (lambda p: init.normal_(p, 1.0, 2.0), lambda v: abs(v.mean() - 1) < 0.03 and abs(v.std() - 2) < 0.03),
    (lambda p: init.xavier_uniform_(p, gain=2.0),
     lambda v: np.abs(v).max() <= 2 * math.sqrt(6 / 600) and abs(v.std() - 2 * math.sqrt(2 / 600)) < 0.003),
    (lambda p: init.xavier_normal_(p), lambda v: abs(v.std() - math.sqrt(2 / 600)) < 0.002),
    (lambda p: init.kaiming_uniform_(p, nonlinearity="relu"),
     lambda v: np.abs(v).max() <= math.sqrt(6 / 200) and abs(v.std() - math.sqrt(2 / 200)) < 0.002),
    (lambda p: init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu"),
     lambda v: abs(v.std() - math.sqrt(2 / 400)) < 0.002),
    (lambda p: init.kaiming_normal_(p, a=0.2), lambda v: abs(v.std() - math.sqrt(2 / 1.04 / 200)) < 0.002),
])
def test_distributions(fill, check):
    lucid.manual_seed(0)
    p = fill(P(400, 200))
    assert check(p.data.astype(np.float64))


def test_trunc_normal_bounds_and_moments():
    lucid.manual_seed(0)
    v = init.trunc_normal_(P(300, 300), mean=0.5, std=2.0, a=-2.0, b=3.0).data.astype(np.float64)
    assert v.min() >= -2 and v.max() <= 3
    # N(0.5, 4) truncated to +-1.25 std: variance 4 * (1 - 2 * 1.25 * phi(1.25) / (2 * Phi(1.25) - 1))
    phi = math.exp(-1.25 ** 2 / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(1.25 / math.sqrt(2))
    assert v.mean() == pytest.approx(0.5, abs=0.01)
    assert v.std() == pytest.approx(2 * math.sqrt(1 - 2 * 1.25 * phi / mass), rel=0.01)
    far = init.trunc_normal_(P(1000), a=3.0, b=3.5).data  # little mass: still exact and fast
    assert far.min() >= 3 and far.max() <= 3.5 and far.mean() < 3.25
    with pytest.raises(ValueError, match="a < b"):
        init.trunc_normal_(P(10), a=1.0, b=-1.0)


def test_orthogonal():
    lucid.manual_seed(0)
    tall = init.orthogonal_(P(6, 3, dtype="float64"), gain=2.0).data
    np.testing.assert_allclose(tall.T @ tall, 4 * np.eye(3), atol=1e-12)
    wide = init.orthogonal_(P(2, 2, 3, dtype="float64")).data.reshape(2, 6)
    np.testing.assert_allclose(wide @ wide.T, np.eye(2), atol=1e-12)
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(P(3))


def test_seeding_and_generator_argument():
    lucid.manual_seed(5)
    first = init.normal_(P(10)).data.copy()
    lucid.manual_seed(5)
    np.testing.assert_array_equal(init.normal_(P(10)).data, first)
    a = init.uniform_(P(10), generator=np.random.default_rng(7)).data.copy()
    np.testing.assert_array_equal(init.uniform_(P(10), generator=np.random.default_rng(7)).data, a)


def test_bad_mode_and_zero_element_tensors():
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(P(3, 3), mode="fan_avg")
    with pytest.warns(UserWarning, match="zero-element"):
        init.kaiming_uniform_(P(0, 3))
