"""lucid.nn.functional: hand-computed values, error messages, and (with torch) outputs and gradients equal torch's."""

import math
import warnings

import numpy as np
import pytest

import lucid
from lucid.nn import functional as F
from lucid.ops.nn_ops import erf_array

R = np.random.default_rng(0)
X = R.standard_normal((3, 4))
IMG = R.standard_normal((2, 4, 6, 5))
LOGITS = R.standard_normal((5, 4))
CLASSES = np.array([0, 3, -100, 2, 1])
UNIT = R.uniform(0.05, 0.95, (3, 4))
W4 = R.uniform(0.5, 1.5, 4)


def T(a, requires_grad=False):
    return lucid.Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


# ---------------------------------------------------------------- hand-computed values

def test_erf_matches_math_erf_to_double_precision():
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, 1e-300, 0.46875, -4.0, 30.0]])
    expected = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(erf_array(x) - expected)) <= 4e-16
    assert np.isnan(erf_array(np.array([np.nan])))[0]


def test_activation_values():
    x = T([-2.0, 0.0, 1.0])
    np.testing.assert_allclose(F.gelu(x).data, [-2 * 0.0227501319481792, 0.0, 0.8413447460685429], rtol=1e-14)
    np.testing.assert_allclose(F.gelu(x, approximate="tanh").data[2], 0.8411919906082768, rtol=1e-14)
    np.testing.assert_allclose(F.relu6(T([-1.0, 3.0, 7.0])).data, [0.0, 3.0, 6.0])
    np.testing.assert_allclose(F.leaky_relu(x, 0.1).data, [-0.2, 0.0, 1.0])
    np.testing.assert_allclose(F.elu(x).data, [math.expm1(-2), 0.0, 1.0])
    np.testing.assert_allclose(F.silu(x).data, x.data / (1 + np.exp(-x.data)))
    np.testing.assert_allclose(F.softplus(T([0.0, 30.0])).data, [math.log(2), 30.0])
    np.testing.assert_allclose(F.logsigmoid(T([-800.0, 0.0])).data, [-800.0, -math.log(2)])
    np.testing.assert_allclose(F.hardswish(T([-4.0, 1.0, 4.0])).data, [0.0, 4 / 6, 4.0])
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="fast")


def test_softmax_family_values_and_stability():
    p = F.softmax(T([[0.0, math.log(2)], [1000.0, 1000.0]]), dim=1)
    np.testing.assert_allclose(p.data, [[1 / 3, 2 / 3], [0.5, 0.5]])
    np.testing.assert_allclose(F.log_softmax(T([1000.0, 0.0]), dim=0).data, [0.0, -1000.0])
    np.testing.assert_allclose(F.softmin(T([0.0, math.log(2)]), dim=0).data, [2 / 3, 1 / 3])


def test_axis_is_accepted_for_dim():
    x = T(X)
    np.testing.assert_array_equal(F.softmax(x, axis=0).data, F.softmax(x, dim=0).data)
    np.testing.assert_array_equal(F.log_softmax(x, axis=1).data, F.log_softmax(x, 1).data)
    np.testing.assert_array_equal(F.normalize(x, axis=0).data, F.normalize(x, dim=0).data)
    with pytest.raises(TypeError, match="not both"):
        F.softmax(x, dim=0, axis=1)


def test_softmax_without_dim_warns_and_uses_torchs_legacy_choice():
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        out = F.softmax(T(X))
    np.testing.assert_allclose(out.data.sum(axis=1), 1.0)


def test_losses_hand_computed():
    uniform = T(np.zeros((2, 5)))
    target = lucid.tensor([1, 4])
    assert F.cross_entropy(uniform, target).item() == pytest.approx(math.log(5))
    assert F.nll_loss(T([[-1.0, -2.0]]), lucid.tensor([1])).item() == 2.0
    assert F.mse_loss(T([1.0, 2.0]), T([0.0, 0.0])).item() == 2.5
    assert F.l1_loss(T([1.0, -2.0]), T([0.0, 0.0]), reduction="sum").item() == 3.0
    np.testing.assert_allclose(F.huber_loss(T([0.5, 3.0]), T([0.0, 0.0]), reduction="none").data,
                               [0.125, 2.5])
    np.testing.assert_allclose(F.smooth_l1_loss(T([0.5, 3.0]), T([0.0, 0.0]), reduction="none",
                                                beta=2.0).data, [0.0625, 2.0])
    big = F.binary_cross_entropy_with_logits(T([100.0, -100.0]), T([0.0, 1.0]), reduction="none")
    np.testing.assert_allclose(big.data, [100.0, 100.0])
    assert F.binary_cross_entropy(T([0.0]), T([1.0])).item() == 100.0  # log clamped at -100


def test_cross_entropy_ignore_index_and_smoothing_by_hand():
    x = T([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    logp = np.log(np.exp([2.0, 0, 0]) / np.exp([2.0, 0, 0]).sum())
    assert F.cross_entropy(x, lucid.tensor([0, -100])).item() == pytest.approx(-logp[0])
    smoothed = 0.9 * -logp[0] + 0.1 * -logp.mean()
    assert F.cross_entropy(x[:1], lucid.tensor([0]), label_smoothing=0.1).item() == pytest.approx(smoothed)


def test_dropout_scaling_identity_and_seed():
    x = lucid.ones(1000, 100)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    lucid.manual_seed(3)
    out = F.dropout(x, 0.25).data
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert abs((out == 0).mean() - 0.25) < 0.01
    lucid.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.25).data, out)
    np.testing.assert_array_equal(F.dropout(x, 1.0).data, 0.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, 1.5)


def test_conv_and_pools_by_hand():
    img = T(np.arange(9.0).reshape(1, 1, 3, 3))
    np.testing.assert_allclose(F.conv2d(img, T(np.ones((1, 1, 2, 2)))).data[0, 0], [[8, 12], [20, 24]])
    np.testing.assert_allclose(F.conv2d(img[0], T(np.ones((1, 1, 2, 2))), padding="same").data[0],
                               [[8, 12, 7], [20, 24, 13], [13, 15, 8]])
    np.testing.assert_allclose(F.max_pool2d(img, 2, 1).data[0, 0], [[4, 5], [7, 8]])
    np.testing.assert_allclose(F.avg_pool2d(img, 2, 2, padding=1).data[0, 0], [[0, 0.75], [2.25, 6]])
    np.testing.assert_allclose(F.avg_pool2d(img, 2, 2, padding=1, count_include_pad=False).data[0, 0],
                               [[0, 1.5], [4.5, 6]])
    _, idx = F.max_pool2d(img, 2, 1, return_indices=True)
    np.testing.assert_array_equal(idx.data[0, 0], [[4, 5], [7, 8]])


def test_embedding_padding_row_gets_no_gradient():
    w = T(R.standard_normal((4, 2)), requires_grad=True)
    F.embedding(lucid.tensor([[0, 1], [1, 3]]), w, padding_idx=1).sum().backward()
    np.testing.assert_array_equal(w.grad, [[1, 1], [0, 0], [0, 0], [1, 1]])


def test_embedding_max_norm_renormalizes_rows_in_place():
    w = T([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]])
    array = w.data
    F.embedding(lucid.tensor([0, 1]), w, max_norm=1.0)
    assert w.data is array
    np.testing.assert_allclose(np.linalg.norm(w.data, axis=1), [1.0, 0.5, 10.0], rtol=1e-6)


def test_batch_norm_running_statistics_by_hand():
    x = T([[1.0, 10.0], [3.0, 30.0]])
    mean, var = lucid.zeros(2, dtype="float64"), lucid.ones(2, dtype="float64")
    out = F.batch_norm(x, mean, var, training=True, momentum=0.5, eps=0.0)
    np.testing.assert_allclose(out.data, [[-1, -1], [1, 1]])
    np.testing.assert_allclose(mean.data, [1.0, 10.0])                  # 0.5 * 0 + 0.5 * batch mean
    np.testing.assert_allclose(var.data, [0.5 + 0.5 * 2.0, 0.5 + 0.5 * 200.0])  # unbiased batch variance
    np.testing.assert_allclose(F.batch_norm(x, mean, var, eps=0.0).data[:, 0], [0.0, 2 / math.sqrt(1.5)])


def test_one_hot_pad_flatten():
    np.testing.assert_array_equal(F.one_hot(lucid.tensor([0, 2])).data, [[1, 0, 0], [0, 0, 1]])
    assert F.one_hot(lucid.tensor([[1]]), 4).shape == (1, 1, 4)
    assert F.one_hot(lucid.tensor([1])).dtype == np.int64
    np.testing.assert_array_equal(F.pad(T([[1.0, 2.0]]), (1, 0, 0, 1), value=9).data, [[9, 1, 2], [9, 9, 9]])
    np.testing.assert_array_equal(F.pad(T([[1.0, 2.0, 3.0]]), (2, 1), mode="reflect").data, [[3, 2, 1, 2, 3, 2]])
    assert F.flatten(T(np.zeros((2, 3, 4))), 1).shape == (2, 12)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("call, error, message", [
    (lambda: F.cross_entropy(T(LOGITS), lucid.tensor([0, 1])), ValueError,
     r"Expected input batch_size \(5\) to match target batch_size \(2\)"),
    (lambda: F.cross_entropy(T(LOGITS), lucid.tensor([0, 1, 2, 3, 4])), IndexError, "Target 4 is out of bounds"),
    (lambda: F.cross_entropy(T(LOGITS), lucid.tensor(CLASSES), reduction="avg"), ValueError,
     "avg is not a valid value for reduction"),
    (lambda: F.cross_entropy(T(LOGITS), lucid.tensor(CLASSES), weight=T([1.0])), ValueError,
     "weight tensor should be defined either for all 4 classes"),
    (lambda: F.mse_loss(T(np.zeros((2, 3))), T(np.zeros((4,)))), ValueError, r"\(2, 3\).*\(4,\)"),
    (lambda: F.binary_cross_entropy(T(UNIT), T(UNIT[0])), ValueError, "different to the input size"),
    (lambda: F.binary_cross_entropy(T([1.5]), T([1.0])), ValueError, "between 0 and 1"),
    (lambda: F.binary_cross_entropy_with_logits(T(UNIT), T(UNIT[0])), ValueError, "must be the same as input"),
    (lambda: F.conv2d(T(IMG), T(np.zeros((2, 3, 3, 3)))), ValueError,
     r"expected input\[2, 4, 6, 5\] to have 3 channels, but got 4 channels instead"),
    (lambda: F.conv2d(T(IMG), T(np.zeros((2, 4, 9, 3)))), ValueError, "Kernel size can't be greater"),
    (lambda: F.conv2d(T(IMG), T(np.zeros((2, 4, 3, 3))), stride=2, padding="same"), ValueError,
     "not supported for strided convolutions"),
    (lambda: F.conv2d(T(X), T(np.zeros((2, 4, 3, 3)))), ValueError, "Expected 3D .* or 4D"),
    (lambda: F.max_pool2d(T(IMG), 2, padding=2), ValueError, "pad should be at most half"),
    (lambda: F.avg_pool2d(T(IMG), 7), ValueError, "Output size is too small"),
    (lambda: F.layer_norm(T(X), (3,)), ValueError, r"expected input with shape \[\*, 3\]"),
    (lambda: F.batch_norm(T(X), None, None), ValueError, "must be defined in evaluation mode"),
    (lambda: F.batch_norm(T(X[:1]), None, None, training=True), ValueError,
     "Expected more than 1 value per channel"),
    (lambda: F.batch_norm(T(X), lucid.zeros(3), lucid.ones(3)), ValueError, "should contain 4 elements not 3"),
    (lambda: F.embedding(lucid.tensor([5]), T(np.zeros((3, 2)))), IndexError, "index out of range"),
    (lambda: F.one_hot(lucid.tensor([3]), 2), ValueError, "smaller than num_classes"),
    (lambda: F.pad(T(X), (1,)), ValueError, "divisible by 2"),
    (lambda: F.pad(T(X), (4, 4), mode="reflect"), ValueError, "Padding size should be less than"),
    (lambda: F.pad(T(X), (1, 1), mode="mirror"), ValueError, "Unsupported padding mode"),
    (lambda: F.huber_loss(T(X), T(X), delta=0.0), ValueError, "non-positive values for delta"),
])
def test_bad_input_raises_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_mse_loss_warns_when_the_target_broadcasts():
    with pytest.warns(UserWarning, match="different to the input size"):
        F.mse_loss(T(np.zeros((2, 3))), T(np.zeros(3)))


def test_legacy_size_average_maps_to_reduction():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total = F.mse_loss(T([1.0, 2.0]), T([0.0, 0.0]), size_average=False)
    assert total.item() == 5.0


# ---------------------------------------------------------------- against torch (float64)

def _tf():
    """torch.nn.functional, imported when a torch test runs (torch is optional)."""
    import torch.nn.functional as tf
    return tf


TORCH_CASES = {
    "relu": (F.relu, lambda x: _tf().relu(x), [X]),
    "relu6": (F.relu6, lambda x: _tf().relu6(x), [X * 4]),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: _tf().leaky_relu(x, 0.2), [X]),
    "elu": (lambda x: F.elu(x, 0.7), lambda x: _tf().elu(x, 0.7), [X]),
    "selu": (F.selu, lambda x: _tf().selu(x), [X]),
    "celu": (lambda x: F.celu(x, 0.5), lambda x: _tf().celu(x, 0.5), [X]),
    "gelu": (F.gelu, lambda x: _tf().gelu(x), [X * 3]),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda x: _tf().gelu(x, approximate="tanh"), [X * 3]),
    "silu": (F.silu, lambda x: _tf().silu(x), [X]),
    "mish": (F.mish, lambda x: _tf().mish(x), [X]),
    "softplus": (lambda x: F.softplus(x, 2.0, 1.0), lambda x: _tf().softplus(x, 2.0, 1.0), [X]),
    "sigmoid": (F.sigmoid, lambda x: _tf().sigmoid(x), [X]),
    "tanh": (F.tanh, lambda x: _tf().tanh(x), [X]),
    "logsigmoid": (F.logsigmoid, lambda x: _tf().logsigmoid(x), [X]),
    "hardtanh": (lambda x: F.hardtanh(x, -0.5, 0.8), lambda x: _tf().hardtanh(x, -0.5, 0.8), [X]),
    # torch's hardsigmoid backward multiplies by float32(1/6) even in float64: agree to float32 precision
    "hardsigmoid": (F.hardsigmoid, lambda x: _tf().hardsigmoid(x), [X * 4], None, 1e-7),
    "hardswish": (F.hardswish, lambda x: _tf().hardswish(x), [X * 4]),
    "softsign": (F.softsign, lambda x: _tf().softsign(x), [X]),
    "softmax": (lambda x: F.softmax(x, 0), lambda x: _tf().softmax(x, 0), [X]),
    "softmin": (lambda x: F.softmin(x, 1), lambda x: _tf().softmin(x, 1), [X]),
    "log_softmax": (lambda x: F.log_softmax(x, -1), lambda x: _tf().log_softmax(x, -1), [X]),
    "normalize": (lambda x: F.normalize(x, 3.0, 0), lambda x: _tf().normalize(x, 3.0, 0), [X]),
    "linear": (F.linear, lambda x, w, b: _tf().linear(x, w, b), [X, R.standard_normal((2, 4)), W4[:2]]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, (1, 2), ((1, 2)), (2, 1), 2),
               lambda x, w, b: _tf().conv2d(x, w, b, (1, 2), (1, 2), (2, 1), 2),
               [IMG, R.standard_normal((6, 2, 3, 2)), R.standard_normal(6)]),
    "conv2d_same_unbatched": (lambda x, w: F.conv2d(x, w, padding="same", dilation=2),
                              lambda x, w: _tf().conv2d(x, w, padding="same", dilation=2),
                              [IMG[0], R.standard_normal((3, 4, 2, 3))]),
    "max_pool2d": (lambda x: F.max_pool2d(x, (3, 2), (2, 1), (1, 1), (1, 2)),
                   lambda x: _tf().max_pool2d(x, (3, 2), (2, 1), (1, 1), (1, 2)), [IMG]),
    "max_pool2d_ceil": (lambda x: F.max_pool2d(x, 2, ceil_mode=True),
                        lambda x: _tf().max_pool2d(x, 2, ceil_mode=True), [IMG[0]]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
                   lambda x: _tf().avg_pool2d(x, 3, 2, 1, ceil_mode=True), [IMG]),
    "avg_pool2d_exclude_pad": (lambda x: F.avg_pool2d(x, 3, 2, 1, True, False),
                               lambda x: _tf().avg_pool2d(x, 3, 2, 1, True, False), [IMG]),
    "avg_pool2d_divisor": (lambda x: F.avg_pool2d(x, 2, divisor_override=3),
                           lambda x: _tf().avg_pool2d(x, 2, divisor_override=3), [IMG]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (6, 5), w, b), lambda x, w, b: _tf().layer_norm(x, (6, 5), w, b),
                   [IMG, R.standard_normal((6, 5)), R.standard_normal((6, 5))]),
    "batch_norm_train": (lambda x, w, b: F.batch_norm(x, None, None, w, b, True),
                         lambda x, w, b: _tf().batch_norm(x, None, None, w, b, True),
                         [IMG, R.standard_normal(4), R.standard_normal(4)]),
    "pad_constant": (lambda x: F.pad(x, (1, 2, 0, 1), value=0.5), lambda x: _tf().pad(x, (1, 2, 0, 1), value=0.5),
                     [IMG]),
    "pad_reflect": (lambda x: F.pad(x, (2, 1, 3, 0), mode="reflect"),
                    lambda x: _tf().pad(x, (2, 1, 3, 0), mode="reflect"), [IMG]),
    "pad_replicate": (lambda x: F.pad(x, (2, 1, 3, 0), mode="replicate"),
                      lambda x: _tf().pad(x, (2, 1, 3, 0), mode="replicate"), [IMG]),
    "pad_circular": (lambda x: F.pad(x, (2, 1, 3, 0), mode="circular"),
                     lambda x: _tf().pad(x, (2, 1, 3, 0), mode="circular"), [IMG]),
    "embedding_freq": (lambda i, w: F.embedding(i, w, padding_idx=-1, scale_grad_by_freq=True),
                       lambda i, w: _tf().embedding(i, w, padding_idx=-1, scale_grad_by_freq=True),
                       [np.array([[0, 2, 2], [3, 2, 0]]), R.standard_normal((4, 3))]),
    "cross_entropy": (lambda x, t, w: F.cross_entropy(x, t, w, label_smoothing=0.15),
                      lambda x, t, w: _tf().cross_entropy(x, t, w, label_smoothing=0.15),
                      [LOGITS, CLASSES, W4], [True, False, False]),
    "cross_entropy_spatial_sum": (lambda x, t: F.cross_entropy(x, t, reduction="sum"),
                                  lambda x, t: _tf().cross_entropy(x, t, reduction="sum"),
                                  [IMG, R.integers(0, 4, (2, 6, 5))]),
    "cross_entropy_probs": (lambda x, p: F.cross_entropy(x, p, label_smoothing=0.1, reduction="none"),
                            lambda x, p: _tf().cross_entropy(x, p, label_smoothing=0.1, reduction="none"),
                            [LOGITS, R.dirichlet(np.ones(4), 5)]),
    "nll_loss": (lambda x, t, w: F.nll_loss(x, t, w), lambda x, t, w: _tf().nll_loss(x, t, w),
                 [LOGITS, CLASSES, W4], [True, False, False]),
    "mse_loss_weighted": (lambda x, y, w: F.mse_loss(x, y, weight=w), lambda x, y, w: _tf().mse_loss(x, y, weight=w),
                          [X, UNIT, UNIT], [True, True, False]),
    "l1_loss_weighted": (lambda x, y, w: F.l1_loss(x, y, weight=w), lambda x, y, w: _tf().l1_loss(x, y, weight=w),
                         [X, UNIT, UNIT], [True, True, False]),
    "huber_loss_weighted": (lambda x, y, w: F.huber_loss(x, y, delta=0.3, weight=w),
                            lambda x, y, w: _tf().huber_loss(x, y, delta=0.3, weight=w),
                            [X, UNIT, UNIT], [True, True, False]),
    "smooth_l1_loss": (lambda x, y: F.smooth_l1_loss(x, y, beta=0.4), lambda x, y: _tf().smooth_l1_loss(x, y, beta=0.4),
                       [X, UNIT]),
    "smooth_l1_loss_beta0": (lambda x, y: F.smooth_l1_loss(x, y, beta=0.0),
                             lambda x, y: _tf().smooth_l1_loss(x, y, beta=0.0), [X, UNIT]),
    "binary_cross_entropy": (lambda p, y, w: F.binary_cross_entropy(p, y, w),
                             lambda p, y, w: _tf().binary_cross_entropy(p, y, w),
                             [UNIT, UNIT[::-1].copy(), W4], [True, False, False]),
    "bce_with_logits": (lambda x, y, w, pw: F.binary_cross_entropy_with_logits(x, y, w, pos_weight=pw),
                        lambda x, y, w, pw: _tf().binary_cross_entropy_with_logits(x, y, w, pos_weight=pw),
                        [X * 4, UNIT, W4, W4[::-1].copy()], [True, True, False, False]),
    "kl_div_batchmean": (lambda x, t: F.kl_div(x, t, reduction="batchmean"),
                         lambda x, t: _tf().kl_div(x, t, reduction="batchmean"),
                         [np.log(UNIT), np.where(UNIT > 0.5, UNIT, 0.0)], [True, False]),
    "kl_div_log_target": (lambda x, t: F.kl_div(x, t, reduction="sum", log_target=True),
                          lambda x, t: _tf().kl_div(x, t, reduction="sum", log_target=True),
                          [np.log(UNIT), np.log(UNIT[::-1].copy())]),
}


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(TORCH_CASES))  # (ours, torch's, arrays[, grad flags[, rtol]])
def test_matches_torch(name, against_torch):
    ours, theirs, arrays, grad, rtol = TORCH_CASES[name] + (None, 1e-8)[len(TORCH_CASES[name]) - 3:]
    against_torch(ours, theirs, *arrays, grad=grad, rtol=rtol)


@pytest.mark.torch
def test_batch_norm_eval_and_running_updates_match_torch(torch, against_torch):
    ours = [lucid.Tensor(np.zeros(4)), lucid.Tensor(np.ones(4))]
    theirs = [torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)]
    for training in (True, True, False):
        against_torch(lambda x, t=training: F.batch_norm(x, *ours, training=t, momentum=0.3),
                      lambda x, t=training: _tf().batch_norm(x, *theirs, training=t, momentum=0.3), IMG)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.data, b.numpy(), rtol=1e-12)


@pytest.mark.torch
def test_max_pool_indices_and_one_hot_match_torch(torch):
    _, ours = F.max_pool2d(T(IMG), 3, 2, 1, return_indices=True)
    _, theirs = _tf().max_pool2d(torch.tensor(IMG), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(ours.data, theirs.numpy())
    idx = np.array([[0, 3], [2, 2]])
    np.testing.assert_array_equal(F.one_hot(lucid.tensor(idx), 5).data, _tf().one_hot(torch.tensor(idx), 5).numpy())
