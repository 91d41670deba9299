"""nn layers and loss modules: behaviour by hand, and (with torch) outputs, gradients, buffers and reprs
equal torch's on the same weights in float64; default initialisations are plausible."""

import math
from collections import OrderedDict

import numpy as np
import pytest

import lucid
from lucid import nn

R = np.random.default_rng(0)
IMG = R.standard_normal((2, 4, 6, 5))
VEC = R.standard_normal((5, 4))
SEQ = R.standard_normal((3, 4, 6))
UNIT = R.uniform(0.05, 0.95, (5, 4))
CLASSES = np.array([0, 3, -100, 2, 1])
IDX = np.array([[0, 2, 5], [5, 1, 1]])


# ---------------------------------------------------------------- by hand

def test_linear_forward_by_hand():
    layer = nn.Linear(2, 3).double()
    layer.weight.data[...] = [[1, 0], [0, 1], [1, 1]]
    layer.bias.data[...] = [0.5, -0.5, 0]
    np.testing.assert_allclose(layer(lucid.tensor([[2.0, 3.0]], dtype="float64")).data, [[2.5, 2.5, 5.0]])
    assert nn.Linear(2, 3, bias=False).bias is None
    assert [n for n, _ in nn.Linear(2, 3).named_parameters()] == ["weight", "bias"]


def test_sgd_steps_on_an_mlp_reduce_the_loss():
    lucid.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = lucid.randn(32, 4), lucid.tensor(R.integers(0, 3, 32))
    loss_fn, losses = nn.CrossEntropyLoss(), []
    for _ in range(30):
        model.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        for param in model.parameters():
            param.data -= 0.5 * param.grad  # the seed's update, written against raw arrays
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_sequential_container_api():
    a, b, c = nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)
    seq = nn.Sequential(a, b)
    assert len(seq) == 2 and seq[0] is a and seq[-1] is b and list(seq) == [a, b]
    seq.append(c)
    assert seq[2] is c and isinstance(seq[1:], nn.Sequential) and list(seq[1:]) == [b, c]
    del seq[0]
    assert list(seq) == [b, c] and list(seq._modules) == ["0", "1"]
    seq.insert(0, a)
    assert list(seq) == [a, b, c]
    seq[1] = nn.Tanh()
    assert isinstance(seq[1], nn.Tanh)
    assert seq(lucid.ones(3, 2)).shape == (3, 1)
    named = nn.Sequential(OrderedDict([("fc", a), ("act", b)]))
    assert named.fc is a and [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    with pytest.raises(IndexError):
        seq[5]


def test_module_list_and_dict():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.Linear(2, 1))
    assert len(layers) == 4 and len(list(layers.parameters())) == 8
    assert isinstance(layers[:2], nn.ModuleList) and len(layers[:2]) == 2
    layers += [nn.ReLU()]
    assert len(layers) == 5
    heads = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 3)})
    heads["c"] = nn.Identity()
    assert list(heads) == ["a", "b", "c"] and "b" in heads and len(heads) == 3
    assert heads.pop("a") is not None and list(heads.keys()) == ["b", "c"]
    assert [n for n, _ in heads.named_parameters()] == ["b.weight", "b.bias"]


def test_batch_norm_running_statistics_and_modes():
    bn = nn.BatchNorm1d(2, momentum=None).double()
    batches = [R.standard_normal((8, 2)) * s + s for s in (1.0, 3.0)]
    for batch in batches:
        bn(lucid.Tensor(batch))
    assert int(bn.num_batches_tracked.item()) == 2
    np.testing.assert_allclose(bn.running_mean.data, np.mean([b.mean(0) for b in batches], axis=0))
    np.testing.assert_allclose(bn.running_var.data, np.mean([b.var(0, ddof=1) for b in batches], axis=0))
    bn.eval()
    x = lucid.Tensor(batches[0])
    expected = (batches[0] - bn.running_mean.data) / np.sqrt(bn.running_var.data + bn.eps)
    np.testing.assert_allclose(bn(x).data, expected)
    assert int(bn.num_batches_tracked.item()) == 2
    free = nn.BatchNorm2d(3, affine=False, track_running_stats=False).eval()
    assert free.running_mean is None and list(free.parameters()) == []
    out = free(lucid.Tensor(IMG[:, :3]))
    np.testing.assert_allclose(out.data.mean(axis=(0, 2, 3)), 0, atol=1e-12)


def test_dropout_layer_modes():
    drop = nn.Dropout(0.5)
    x = lucid.ones(100, 100)
    assert (drop(x).data == 0).any()
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(-0.1)


def test_embedding_layer():
    emb = nn.Embedding(6, 3, padding_idx=-1)
    assert emb.padding_idx == 5 and np.all(emb.weight.data[5] == 0)
    assert emb(lucid.tensor(IDX)).shape == (2, 3, 3)
    table = lucid.Tensor(R.standard_normal((4, 2)))
    frozen = nn.Embedding.from_pretrained(table)
    assert frozen.weight.data is table.data and not frozen.weight.requires_grad
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad
    with pytest.raises(ValueError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(3, 2, padding_idx=3)


def test_flatten_unflatten_identity():
    x = lucid.Tensor(IMG)
    assert nn.Flatten()(x).shape == (2, 120)
    assert nn.Flatten(0, 1)(x).shape == (8, 6, 5)
    assert nn.Unflatten(1, (2, 2))(x).shape == (2, 2, 2, 6, 5)
    assert nn.Unflatten(-1, (5, -1))(x).shape == (2, 4, 6, 5, 1)
    assert nn.Identity(3, foo=1)(x) is x


@pytest.mark.parametrize("call, message", [
    (lambda: nn.Conv2d(3, 4, 3, groups=2), "in_channels must be divisible by groups"),
    (lambda: nn.Conv2d(4, 3, 3, groups=2), "out_channels must be divisible by groups"),
    (lambda: nn.Conv2d(4, 4, 3, groups=0), "groups must be a positive integer"),
    (lambda: nn.Conv2d(4, 4, 3, padding="full"), "Invalid padding string 'full'"),
    (lambda: nn.Conv2d(4, 4, 3, stride=2, padding="same"), "not supported for strided convolutions"),
    (lambda: nn.Conv2d(4, 4, 3, padding_mode="mirror"), "padding_mode must be one of"),
    (lambda: nn.BatchNorm2d(4)(lucid.Tensor(VEC)), r"expected 4D input \(got 2D input\)"),
    (lambda: nn.BatchNorm1d(4)(lucid.Tensor(IMG)), r"expected 2D or 3D input \(got 4D input\)"),
    (lambda: nn.GELU("fast"), "approximate"),
    (lambda: nn.Linear(3, 2)(lucid.Tensor(VEC)), r"\(5, 4\).*\(2, 3\)"),
])
def test_bad_layer_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_default_initialisations_are_plausible():
    lucid.manual_seed(0)
    linear = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    for values in (linear.weight.data, linear.bias.data):
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.95 * bound
    assert linear.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    conv = nn.Conv2d(16, 32, 3)
    conv_bound = 1 / math.sqrt(16 * 9)
    assert np.abs(conv.weight.data).max() <= conv_bound
    assert conv.weight.data.std() == pytest.approx(conv_bound / math.sqrt(3), rel=0.05)
    emb = nn.Embedding(1000, 64)
    assert emb.weight.data.mean() == pytest.approx(0, abs=0.01)
    assert emb.weight.data.std() == pytest.approx(1, rel=0.02)
    norm = nn.LayerNorm(5)
    assert np.all(norm.weight.data == 1) and np.all(norm.bias.data == 0)
    assert linear.weight.dtype == np.float32


def test_layers_take_dtype_and_reset_parameters_in_place():
    layer = nn.Linear(3, 2, dtype="float64")
    assert layer.weight.dtype == np.float64
    array = layer.weight.data
    layer.reset_parameters()
    assert layer.weight.data is array


# ---------------------------------------------------------------- against torch (float64)

def _t(torch):
    return lambda a: torch.tensor(np.asarray(a, dtype=np.float64))


LAYERS = {  # factory(nn, to_tensor) builds the same layer in either library; the call's arrays[; rtol]
    "Identity": (lambda nn, T: nn.Identity(), [VEC]),
    "Linear": (lambda nn, T: nn.Linear(4, 3), [VEC]),
    "Linear_no_bias": (lambda nn, T: nn.Linear(6, 2, bias=False), [SEQ]),
    "Conv2d": (lambda nn, T: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2), [IMG]),
    "Conv2d_same": (lambda nn, T: nn.Conv2d(4, 2, 4, padding="same", bias=False), [IMG]),
    "Conv2d_reflect": (lambda nn, T: nn.Conv2d(4, 3, 3, padding=(2, 1), padding_mode="reflect"), [IMG]),
    "Conv2d_circular": (lambda nn, T: nn.Conv2d(4, 3, 3, padding=1, padding_mode="circular"), [IMG[0]]),
    "ReLU": (lambda nn, T: nn.ReLU(), [VEC]),
    "ReLU6": (lambda nn, T: nn.ReLU6(), [VEC * 5]),
    "LeakyReLU": (lambda nn, T: nn.LeakyReLU(0.2), [VEC]),
    "ELU": (lambda nn, T: nn.ELU(alpha=0.5), [VEC]),
    "SELU": (lambda nn, T: nn.SELU(), [VEC]),
    # torch's CELU backward loses precision (float32 1/alpha) even in float64: compare to float32 precision
    "CELU": (lambda nn, T: nn.CELU(0.8), [VEC], 1e-7),
    "GELU": (lambda nn, T: nn.GELU(), [VEC]),
    "GELU_tanh": (lambda nn, T: nn.GELU(approximate="tanh"), [VEC]),
    "SiLU": (lambda nn, T: nn.SiLU(), [VEC]),
    "Mish": (lambda nn, T: nn.Mish(), [VEC]),
    "Softplus": (lambda nn, T: nn.Softplus(beta=2.0, threshold=1.0), [VEC]),
    "Sigmoid": (lambda nn, T: nn.Sigmoid(), [VEC]),
    "Tanh": (lambda nn, T: nn.Tanh(), [VEC]),
    "LogSigmoid": (lambda nn, T: nn.LogSigmoid(), [VEC]),
    "Hardtanh": (lambda nn, T: nn.Hardtanh(-0.5, 0.5), [VEC]),
    "Hardswish": (lambda nn, T: nn.Hardswish(), [VEC * 4]),
    "Softsign": (lambda nn, T: nn.Softsign(), [VEC]),
    "Softmax": (lambda nn, T: nn.Softmax(dim=1), [VEC]),
    "Softmin": (lambda nn, T: nn.Softmin(dim=0), [VEC]),
    "LogSoftmax": (lambda nn, T: nn.LogSoftmax(dim=-1), [SEQ]),
    "Sequential": (lambda nn, T: nn.Sequential(nn.Conv2d(4, 3, 3), nn.BatchNorm2d(3), nn.ReLU(),
                                               nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6, 2)), [IMG]),
    "Dropout_eval": (lambda nn, T: nn.Dropout(0.3).eval(), [VEC]),
    "Dropout2d_eval": (lambda nn, T: nn.Dropout2d(0.3).eval(), [IMG]),
    "Embedding": (lambda nn, T: nn.Embedding(6, 3, padding_idx=2), [IDX]),
    "Embedding_max_norm": (lambda nn, T: nn.Embedding(6, 3, max_norm=1.0, scale_grad_by_freq=True), [IDX]),
    "Flatten": (lambda nn, T: nn.Flatten(), [IMG]),
    "Unflatten": (lambda nn, T: nn.Unflatten(2, (2, 3)), [IMG]),
    "MaxPool2d": (lambda nn, T: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), [IMG]),
    "AvgPool2d": (lambda nn, T: nn.AvgPool2d((2, 3), stride=1, padding=1, count_include_pad=False), [IMG]),
    "LayerNorm": (lambda nn, T: nn.LayerNorm((6, 5), eps=1e-3), [IMG]),
    "LayerNorm_no_bias": (lambda nn, T: nn.LayerNorm(6, bias=False), [SEQ]),
    "LayerNorm_no_affine": (lambda nn, T: nn.LayerNorm(6, elementwise_affine=False), [SEQ]),
    "BatchNorm1d": (lambda nn, T: nn.BatchNorm1d(4, momentum=0.2), [VEC]),
    "BatchNorm1d_3d": (lambda nn, T: nn.BatchNorm1d(4, momentum=None), [SEQ]),
    "BatchNorm2d": (lambda nn, T: nn.BatchNorm2d(4, eps=1e-3), [IMG]),
    "BatchNorm2d_eval": (lambda nn, T: nn.BatchNorm2d(4).eval(), [IMG]),
    "MSELoss": (lambda nn, T: nn.MSELoss(), [VEC, UNIT]),
    "L1Loss": (lambda nn, T: nn.L1Loss(reduction="sum"), [VEC, UNIT]),
    "HuberLoss": (lambda nn, T: nn.HuberLoss(delta=0.5), [VEC, UNIT]),
    "SmoothL1Loss": (lambda nn, T: nn.SmoothL1Loss(beta=0.3, reduction="none"), [VEC, UNIT]),
    "CrossEntropyLoss": (lambda nn, T: nn.CrossEntropyLoss(T([1.0, 2.0, 0.5, 1.5]), label_smoothing=0.1),
                         [VEC, CLASSES]),
    "NLLLoss": (lambda nn, T: nn.NLLLoss(ignore_index=3), [VEC, np.array([0, 3, 2, 2, 1])]),
    "BCELoss": (lambda nn, T: nn.BCELoss(weight=T([1.0, 2.0, 0.5, 1.5])), [UNIT, UNIT[::-1].copy()]),
    "BCEWithLogitsLoss": (lambda nn, T: nn.BCEWithLogitsLoss(pos_weight=T([1.0, 2.0, 0.5, 1.5])), [VEC, UNIT]),
    "KLDivLoss": (lambda nn, T: nn.KLDivLoss(reduction="batchmean", log_target=True), [VEC, np.log(UNIT)]),
}


def _call_twice_and_compare(ours, theirs, arrays, torch, rtol):
    """Forward (twice, so running statistics move) and backward both; compare everything."""
    for _ in range(2):
        xs = [lucid.Tensor(a.copy(), requires_grad=a.dtype.kind == "f") for a in arrays]
        txs = [torch.tensor(a.copy(), requires_grad=a.dtype.kind == "f") for a in arrays]
        out, expected = ours(*xs), theirs(*txs)
        np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=rtol, atol=1e-12)
    probe = np.random.default_rng(1).standard_normal(expected.shape)
    out.backward(probe)
    expected.backward(torch.tensor(probe))
    for x, tx in zip(xs, txs):
        if tx.requires_grad:
            np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=rtol, atol=1e-12)
    grads = {n: p.grad for n, p in theirs.named_parameters()}
    for name, param in ours.named_parameters():
        np.testing.assert_allclose(param.grad, grads[name].numpy(), rtol=rtol, atol=1e-12, err_msg=name)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note on even kernels
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_torch(name, torch):
    factory, arrays, rtol = (LAYERS[name] + (1e-9,))[:3]
    ours = factory(nn, lambda a: lucid.Tensor(np.asarray(a, dtype=np.float64))).double()
    theirs = factory(torch.nn, _t(torch)).double()
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _call_twice_and_compare(ours, theirs, arrays, torch, rtol)
    for key, value in theirs.state_dict().items():  # running statistics, renormalized embeddings
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-9, atol=1e-12, err_msg=key)


def _ks_statistic(a, b):
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    pooled = np.concatenate([a, b])
    cdf_a = np.searchsorted(np.sort(a), pooled, side="right") / a.size
    cdf_b = np.searchsorted(np.sort(b), pooled, side="right") / b.size
    return np.max(np.abs(cdf_a - cdf_b))


@pytest.mark.torch
@pytest.mark.parametrize("make", [lambda nn: nn.Linear(300, 200), lambda nn: nn.Conv2d(8, 16, 3),
                                  lambda nn: nn.Embedding(500, 40)])
def test_default_init_has_torchs_distribution(make, torch):
    lucid.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = make(nn), make(torch.nn)
    for (name, p), tp in zip(ours.named_parameters(), theirs.parameters()):
        a, b = p.data.ravel().astype(np.float64), tp.detach().numpy().ravel().astype(np.float64)
        critical = 1.95 * np.sqrt(2.0 / a.size)  # the KS test at level 0.001
        assert _ks_statistic(a, b) < critical, name


def test_inplace_flags_show_in_repr_like_torch():
    assert repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"
    assert repr(nn.LeakyReLU(0.2, inplace=True)) == "LeakyReLU(negative_slope=0.2, inplace=True)"
