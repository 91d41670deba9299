"""Finite-difference checks (float64) of every differentiable primitive in lucid.ops and every nn layer/loss.

One table drives them all. A case names a function, the shapes of its float64 inputs (each requires grad)
and options: `values` ("normal", "positive", "unit" in (0.1, 0.9), one per input or one for all), `module`
(a factory; the function then gets the module first, and its parameters are checked too) and `tol`
(gradcheck's eps/atol/rtol). Two completeness tests make sure no primitive or layer is left out.
"""

import inspect
from collections import namedtuple

import numpy as np
import pytest

import lucid
from lucid import nn, ops
from lucid.gradcheck import gradcheck
from lucid.ops import conv, losses, nn_ops, norm

Case = namedtuple("Case", "name fn shapes opts", defaults=((), {}))

_R = np.random.default_rng(1)
COND = _R.standard_normal((3, 4)) > 0
INDEX = np.array([[0, 2, 2], [1, 0, 2]])  # row 3 unused: a padding_idx receives no gradient
CLASSES = lucid.tensor([0, 2, -100, 1])                       # with one ignored entry
CLASSES_2D = lucid.tensor(_R.integers(0, 3, (2, 2, 3)))
# float32 constants: they leave float64 inputs float64, and keep the float32 check all float32.
# Modules get copies: Module.double() converts its buffers' arrays in place, shared Tensors included.
PROBS = lucid.tensor(_R.dirichlet(np.ones(3), 4).tolist())
UNIT = lucid.tensor(_R.uniform(0.1, 0.9, (3, 4)).tolist())
WEIGHT3 = lucid.tensor([0.5, 1.2, 0.9])
POS_WEIGHT = lucid.tensor([0.5, 1.0, 2.0, 3.0])
RUNNING_MEAN = lucid.tensor([0.3, -1.1, 0.6])
RUNNING_VAR = lucid.tensor([0.7, 1.4, 1.1])
F32_ROUNDTRIP = {"eps": 1e-3, "atol": 1e-3, "rtol": 1e-3}


def _seeded_dropout(a):
    lucid.manual_seed(0)
    return nn_ops.dropout(a, 0.3)


def _residual(a):
    """h + tanh(h): an intermediate used twice, once through another op, so backward must order them."""
    h = ops.tanh(a * 1.5)
    return h + ops.tanh(h)


def _module(factory, *shapes, values="normal", tol=None, call=lambda m, *xs: m(*xs)):
    return {"module": factory, "values": values, "tol": tol or {}, "call": call}


TABLE = [
    # ------------------------------------------------ arith
    Case("add", ops.add, [(3, 4), (4,)]),
    Case("sub", ops.sub, [(3, 1), (1, 4)]),
    Case("mul", ops.mul, [(2, 3), (2, 3)]),
    Case("add[residual]", _residual, [(3, 2)]),
    Case("mul[scalar]", lambda a: ops.mul(a, 2.5), [(3,)]),
    Case("div", ops.div, [(3, 2), (2,)], {"values": ("normal", "positive")}),
    Case("pow", ops.pow, [(3,), (3,)], {"values": "positive"}),
    Case("pow[scalar]", lambda a: ops.pow(a, 3), [(4,)]),
    Case("maximum", ops.maximum, [(3, 4), (3, 4)]),
    Case("minimum", ops.minimum, [(3, 4), (4,)]),
    Case("where", lambda a, b: ops.where(COND, a, b), [(3, 4), (3, 4)]),
    Case("neg", ops.neg, [(3,)]),
    Case("exp", ops.exp, [(3, 2)]),
    Case("log", ops.log, [(3, 2)], {"values": "positive"}),
    Case("sqrt", ops.sqrt, [(3, 2)], {"values": "positive"}),
    Case("abs", ops.abs, [(5,)]),
    Case("clip", lambda a: ops.clip(a, -0.5, 0.7), [(3, 4)]),
    Case("tanh", ops.tanh, [(5,)]),
    Case("sigmoid", ops.sigmoid, [(5,)]),
    Case("relu", ops.relu, [(5,)]),
    Case("sin", ops.sin, [(5,)]),
    Case("cos", ops.cos, [(5,)]),
    # ------------------------------------------------ device
    Case("astype", lambda a: ops.astype(ops.astype(a, lucid.float32), lucid.float64), [(4,)],
         {"tol": F32_ROUNDTRIP}),
    Case("clone", ops.clone, [(2, 3)]),
    Case("to_device", lambda a: ops.to_device(a, "cpu") * 2.0, [(3,)]),
    # ------------------------------------------------ linalg
    Case("matmul", ops.matmul, [(3, 4), (4, 2)]),
    Case("matmul[vector-matrix]", ops.matmul, [(4,), (4, 2)]),
    Case("matmul[matrix-vector]", ops.matmul, [(3, 4), (4,)]),
    Case("matmul[batched-broadcast]", ops.matmul, [(2, 3, 4), (4, 5)]),
    Case("linear", ops.linear, [(2, 3, 4), (5, 4), (5,)]),
    Case("linear[no-bias]", ops.linear, [(3, 4), (2, 4)]),
    # ------------------------------------------------ reduce
    Case("sum", lambda a: ops.sum(a, axis=1), [(3, 4)]),
    Case("sum[all]", ops.sum, [(3, 4)]),
    Case("mean", lambda a: ops.mean(a, dim=0, keepdim=True), [(3, 4)]),
    Case("var", lambda a: ops.var(a, axis=1), [(3, 4)]),
    Case("max", lambda a: ops.max(a, axis=1), [(3, 4)]),
    Case("min", lambda a: ops.min(a, axis=0), [(3, 4)]),
    Case("max[dim]", lambda a: ops.max(a, 1).values, [(3, 4)]),
    Case("min[dim-keepdim]", lambda a: a.min(dim=0, keepdim=True).values, [(3, 4)]),
    Case("max[other]", lambda a, b: a.max(b), [(3, 4), (4,)]),
    Case("amax", lambda a: ops.amax(a, axis=(0, 2)), [(3, 4, 2)]),
    Case("amin", lambda a: ops.amin(a, dim=1, keepdim=True), [(3, 4)]),
    Case("logsumexp", lambda a: ops.logsumexp(a, axis=-1), [(3, 4)]),
    # ------------------------------------------------ shape
    Case("reshape", lambda a: ops.reshape(a, 4, 3), [(3, 4)]),
    Case("permute", lambda a: ops.permute(a, 2, 0, 1), [(2, 3, 4)]),
    Case("transpose", lambda a: ops.transpose(a, 0, 2), [(2, 3, 4)]),
    Case("squeeze", lambda a: ops.squeeze(a, 1), [(3, 1, 2)]),
    Case("unsqueeze", lambda a: ops.unsqueeze(a, 1), [(3, 2)]),
    Case("flatten", lambda a: ops.flatten(a, 1), [(2, 3, 2)]),
    Case("expand", lambda a: ops.expand(a, 2, 3, 4), [(3, 1)]),
    Case("getitem", lambda a: a[1:, ::2], [(3, 4)]),
    Case("getitem[advanced-repeated]", lambda a: a[INDEX], [(3, 2)]),
    Case("concatenate", lambda a, b: ops.concatenate([a, b], axis=1), [(2, 3), (2, 1)]),
    Case("stack", lambda a, b: ops.stack([a, b], dim=1), [(2, 3), (2, 3)]),
    Case("pad", lambda a: ops.pad(a, ((1, 0), (2, 1))), [(2, 3)]),
    # ------------------------------------------------ nn_ops
    Case("erf", nn_ops.erf, [(6,)]),
    Case("gelu", nn_ops.gelu, [(6,)]),
    Case("gelu[tanh]", lambda a: nn_ops.gelu(a, "tanh"), [(6,)]),
    Case("leaky_relu", lambda a: nn_ops.leaky_relu(a, 0.2), [(6,)]),
    Case("elu", lambda a: nn_ops.elu(a, 1.5), [(6,)]),
    Case("silu", nn_ops.silu, [(6,)]),
    Case("softplus", lambda a: nn_ops.softplus(a * 2, beta=2.0, threshold=1.5), [(8,)]),
    Case("logsigmoid", nn_ops.logsigmoid, [(6,)]),
    Case("log1p", nn_ops.log1p, [(6,)], {"values": "positive"}),
    Case("hardtanh", lambda a: nn_ops.hardtanh(a, -0.5, 0.8), [(8,)]),
    Case("softmax", lambda a: nn_ops.softmax(a, axis=0), [(3, 4)]),
    Case("log_softmax", lambda a: nn_ops.log_softmax(a, axis=1), [(3, 4)]),
    Case("dropout", _seeded_dropout, [(4, 5)]),
    Case("embedding", lambda w: nn_ops.embedding(INDEX, w, padding_idx=3), [(4, 3)]),
    # ------------------------------------------------ norm
    Case("layer_norm", lambda x, w, b: norm.layer_norm(x, (2, 3), w, b), [(2, 2, 3), (2, 3), (2, 3)]),
    Case("batch_norm[train]", lambda x, w, b: norm.batch_norm(x, None, None, w, b, True),
         [(4, 3, 2), (3,), (3,)]),
    Case("batch_norm[eval]", lambda x, w, b: norm.batch_norm(x, RUNNING_MEAN, RUNNING_VAR, w, b, False),
         [(4, 3), (3,), (3,)]),
    # ------------------------------------------------ conv
    Case("conv2d", lambda x, w, b: conv.conv2d(x, w, b, stride=(2, 1), padding=((1, 0), (2, 1)),
                                               dilation=(1, 2), groups=2), [(2, 4, 5, 5), (4, 2, 2, 2), (4,)]),
    Case("max_pool2d", lambda x: conv.max_pool2d(x, 3, 2, padding=1, dilation=(1, 2)), [(2, 2, 5, 6)]),
    Case("max_pool2d[ceil]", lambda x: conv.max_pool2d(x, 2, ceil_mode=True), [(1, 2, 5, 5)]),
    Case("avg_pool2d", lambda x: conv.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
         [(2, 2, 6, 5)]),
    Case("avg_pool2d[divisor]", lambda x: conv.avg_pool2d(x, 2, 1, divisor_override=3), [(1, 2, 3, 3)]),
    Case("pad_mode[reflect]", lambda a: conv.pad_mode(a, ((0, 0), (2, 1)), "reflect"), [(2, 4)]),
    Case("pad_mode[replicate]", lambda a: conv.pad_mode(a, ((1, 0), (2, 1)), "replicate"), [(2, 3)]),
    Case("pad_mode[circular]", lambda a: conv.pad_mode(a, ((1, 2), (0, 3)), "circular"), [(2, 3)]),
    # ------------------------------------------------ losses
    Case("cross_entropy", lambda x: losses.cross_entropy(x, CLASSES, WEIGHT3, label_smoothing=0.1), [(4, 3)]),
    Case("cross_entropy[spatial-none]", lambda x: losses.cross_entropy(x, CLASSES_2D, reduction="none"),
         [(2, 3, 2, 3)]),
    Case("cross_entropy[probs]", lambda x, p: losses.cross_entropy(x, p, WEIGHT3, label_smoothing=0.2),
         [(4, 3), (4, 3)], {"values": ("normal", "unit")}),
    Case("nll_loss", lambda x: losses.nll_loss(x, CLASSES, WEIGHT3, reduction="sum"), [(4, 3)]),
    Case("binary_cross_entropy", losses.binary_cross_entropy, [(3, 4), (3, 4)], {"values": "unit"}),
    Case("binary_cross_entropy_with_logits", losses.binary_cross_entropy_with_logits, [(3, 4), (3, 4), (4,)],
         {"values": ("normal", "unit", "positive")}),
    Case("huber", lambda x, y: losses.huber(x, y, 0.8), [(3, 4), (3, 4)]),
    # ------------------------------------------------ layers (input and parameter gradients)
    Case("nn.Identity", None, [(3,)], _module(nn.Identity)),
    Case("nn.Linear", None, [(2, 3)], _module(lambda: nn.Linear(3, 2))),
    Case("nn.Conv2d", None, [(1, 4, 5, 4)],
         _module(lambda: nn.Conv2d(4, 2, (3, 2), stride=2, padding=1, groups=2, padding_mode="reflect"))),
    Case("nn.Conv2d[same]", None, [(3, 5, 4)], _module(lambda: nn.Conv2d(3, 2, (2, 3), padding="same",
                                                                          dilation=(2, 1)))),
    Case("nn.ReLU", None, [(5,)], _module(nn.ReLU)),
    Case("nn.ReLU6", None, [(6,)], _module(nn.ReLU6, values="positive", call=lambda m, x: m(x * 5 - 4))),
    Case("nn.LeakyReLU", None, [(5,)], _module(lambda: nn.LeakyReLU(0.1))),
    Case("nn.ELU", None, [(5,)], _module(nn.ELU)),
    Case("nn.SELU", None, [(5,)], _module(nn.SELU)),
    Case("nn.CELU", None, [(5,)], _module(lambda: nn.CELU(0.7))),
    Case("nn.GELU", None, [(5,)], _module(lambda: nn.GELU("tanh"))),
    Case("nn.SiLU", None, [(5,)], _module(nn.SiLU)),
    Case("nn.Mish", None, [(5,)], _module(nn.Mish)),
    Case("nn.Softplus", None, [(5,)], _module(lambda: nn.Softplus(2.0, 1.0))),
    Case("nn.Sigmoid", None, [(5,)], _module(nn.Sigmoid)),
    Case("nn.Tanh", None, [(5,)], _module(nn.Tanh)),
    Case("nn.LogSigmoid", None, [(5,)], _module(nn.LogSigmoid)),
    Case("nn.Hardtanh", None, [(5,)], _module(lambda: nn.Hardtanh(-0.5, 0.5))),
    Case("nn.Hardsigmoid", None, [(6,)], _module(nn.Hardsigmoid, call=lambda m, x: m(x * 3))),
    Case("nn.Hardswish", None, [(6,)], _module(nn.Hardswish, call=lambda m, x: m(x * 3))),
    Case("nn.Softsign", None, [(5,)], _module(nn.Softsign)),
    Case("nn.Softmax", None, [(2, 3)], _module(lambda: nn.Softmax(dim=1))),
    Case("nn.Softmin", None, [(2, 3)], _module(lambda: nn.Softmin(dim=0))),
    Case("nn.LogSoftmax", None, [(2, 3)], _module(lambda: nn.LogSoftmax(dim=-1))),
    Case("nn.Sequential", None, [(2, 3)], _module(lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(),
                                                                         nn.Linear(4, 2)))),
    Case("nn.Dropout", None, [(3, 4)], _module(lambda: nn.Dropout(0.4),
                                                call=lambda m, x: (lucid.manual_seed(0), m(x))[1])),
    Case("nn.Dropout2d", None, [(2, 3, 2, 2)], _module(lambda: nn.Dropout2d(0.4),
                                                      call=lambda m, x: (lucid.manual_seed(0), m(x))[1])),
    Case("nn.Embedding", None, [], _module(lambda: nn.Embedding(4, 3, padding_idx=3),
                                           call=lambda m: m(lucid.tensor(INDEX)))),
    Case("nn.Flatten", None, [(2, 3, 2)], _module(nn.Flatten)),
    Case("nn.Unflatten", None, [(2, 6)], _module(lambda: nn.Unflatten(1, (2, 3)))),
    Case("nn.MaxPool2d", None, [(1, 2, 4, 4)], _module(lambda: nn.MaxPool2d(2))),
    Case("nn.AvgPool2d", None, [(1, 2, 4, 4)], _module(lambda: nn.AvgPool2d(3, 1, padding=1))),
    Case("nn.LayerNorm", None, [(2, 4)], _module(lambda: nn.LayerNorm(4))),
    Case("nn.BatchNorm1d", None, [(4, 3, 2)], _module(lambda: nn.BatchNorm1d(3))),
    Case("nn.BatchNorm2d[eval]", None, [(2, 2, 2, 2)], _module(lambda: nn.BatchNorm2d(2).eval())),
    Case("nn.BatchNorm2d", None, [(2, 2, 2, 2)], _module(lambda: nn.BatchNorm2d(2, momentum=None))),
    # ------------------------------------------------ losses as modules
    Case("nn.MSELoss", None, [(3, 4)], _module(nn.MSELoss, call=lambda m, x: m(x, UNIT))),
    Case("nn.L1Loss", None, [(3, 4)], _module(lambda: nn.L1Loss(reduction="sum"),
                                              call=lambda m, x: m(x, UNIT))),
    Case("nn.HuberLoss", None, [(3, 4)], _module(lambda: nn.HuberLoss(delta=0.5),
                                                 call=lambda m, x: m(x, UNIT))),
    Case("nn.SmoothL1Loss", None, [(3, 4)], _module(lambda: nn.SmoothL1Loss(beta=0.5),
                                                    call=lambda m, x: m(x, UNIT))),
    Case("nn.CrossEntropyLoss", None, [(4, 3)], _module(lambda: nn.CrossEntropyLoss(lucid.tensor(WEIGHT3)),
                                                        call=lambda m, x: m(x, CLASSES))),
    Case("nn.NLLLoss", None, [(4, 3)], _module(lambda: nn.NLLLoss(reduction="none"),
                                               call=lambda m, x: m(x, CLASSES))),
    Case("nn.BCELoss", None, [(3, 4)], _module(nn.BCELoss, values="unit", call=lambda m, x: m(x, UNIT))),
    Case("nn.BCEWithLogitsLoss", None, [(3, 4)],
         _module(lambda: nn.BCEWithLogitsLoss(pos_weight=lucid.tensor(POS_WEIGHT)),
                 call=lambda m, x: m(x, UNIT))),
    Case("nn.KLDivLoss", None, [(4, 3)], _module(lambda: nn.KLDivLoss(reduction="batchmean"),
                                                 call=lambda m, x: m(x, PROBS))),
]

NOT_DIFFERENTIABLE = {"sign", "eq", "ne", "lt", "le", "gt", "ge", "argmax", "argmin",
                      "erf_array", "log_softmax_array", "pair", "padding_pairs"}


def _inputs(case, rng):
    values = case.opts.get("values", "normal")
    tensors = []
    for i, shape in enumerate(case.shapes):
        kind = values[i] if isinstance(values, tuple) else values
        data = rng.standard_normal(shape)
        if kind == "positive":
            data = np.abs(data) + 0.5
        elif kind == "unit":
            data = rng.uniform(0.1, 0.9, shape)
        tensors.append(lucid.Tensor(data, requires_grad=True))
    return tensors


@pytest.mark.parametrize("case", TABLE, ids=[c.name for c in TABLE])
def test_gradcheck(case):
    rng = np.random.default_rng(0)
    inputs = _inputs(case, rng)
    fn = case.fn
    if "module" in case.opts:
        module = case.opts["module"]().double()
        call, n = case.opts["call"], len(inputs)
        fn = lambda *ts: call(module, *ts[:n])
        inputs += list(module.parameters())
    assert gradcheck(fn, inputs, **case.opts.get("tol", {}))


def _public_functions(module):
    return {name for name, obj in vars(module).items()
            if inspect.isfunction(obj) and obj.__module__ == module.__name__ and not name.startswith("_")}


def test_table_covers_every_primitive():
    names = set(ops.__all__)
    for module in (nn_ops, conv, norm, losses):
        names |= _public_functions(module)
    covered = {case.name.split("[")[0] for case in TABLE}
    assert sorted(names - NOT_DIFFERENTIABLE - covered) == []


def test_table_covers_every_layer():
    layers = set(nn.modules.__all__) - {"ModuleList", "ModuleDict"}
    covered = {case.name.split("[")[0][3:] for case in TABLE if case.name.startswith("nn.")}
    assert sorted(layers - covered) == []


@pytest.mark.parametrize("case", [c for c in TABLE if c.name != "astype"], ids=lambda c: c.name)
def test_float32_stays_float32(case):
    """No primitive promotes float32 data or gradients to float64 (constants are Python floats)."""
    inputs = [lucid.Tensor(t.data.astype(np.float32), requires_grad=True)
              for t in _inputs(case, np.random.default_rng(0))]
    fn = case.fn
    if "module" in case.opts:
        module = case.opts["module"]()
        fn = lambda *ts: case.opts["call"](module, *ts)
        inputs_and_params = inputs + list(module.parameters())
    else:
        inputs_and_params = inputs
    out = fn(*inputs)
    assert out.dtype == np.float32
    out.sum().backward()
    for t in inputs_and_params:
        assert t.grad is None or t.grad.dtype == np.float32
