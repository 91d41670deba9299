"""PyTorch's spellings mean what they mean in PyTorch; lucid's own spellings keep lucid's meaning, and a
spelling that could be read either way raises.

One table of calls drives the checks: each is evaluated on lucid and (when torch is installed) on
torch, and must give the same kind of result (a tensor, or a (values, indices) named tuple) with the
same numbers. Calls that torch rejects must raise in lucid too.
"""

import warnings

import numpy as np
import pytest

import lucid
from lucid import nn

A = np.array([[1.0, 3.0, 3.0, -2.0], [2.0, 0.0, 5.0, 5.0], [-1.0, -1.0, 0.5, 4.0]])  # ties on purpose
OTHER = np.array([0.0, 2.0, 4.0, 1.0])

# (id, call): `call(x, other)` with x a (3, 4) tensor and other a (4,) tensor of the same library
SAME_AS_TORCH = [
    ("max()", lambda x, o: x.max()),
    ("max(1)", lambda x, o: x.max(1)),
    ("max(1, keepdim=True)", lambda x, o: x.max(1, keepdim=True)),
    ("max(1, True)", lambda x, o: x.max(1, True)),
    ("max(dim=0)", lambda x, o: x.max(dim=0)),
    ("max(-1, keepdims=True)", lambda x, o: x.max(-1, keepdims=True)),
    ("max(other)", lambda x, o: x.max(o)),
    ("min()", lambda x, o: x.min()),
    ("min(1)", lambda x, o: x.min(1)),
    ("min(dim=0, keepdim=True)", lambda x, o: x.min(dim=0, keepdim=True)),
    ("min(other)", lambda x, o: x.min(o)),
    ("amax((0, 1))", lambda x, o: x.amax((0, 1))),
    ("amin(1, keepdim=True)", lambda x, o: x.amin(1, keepdim=True)),
    ("max(1, keepdim=True)[1]", lambda x, o: x.max(1, keepdim=True)[1]),
    ("eq", lambda x, o: x.eq(o)),
    ("ne", lambda x, o: x.ne(3.0)),
    ("lt gt le ge", lambda x, o: (x.lt(o).float() + x.gt(o).float() * 2 + x.le(1.0).float() * 4
                                  + x.ge(o).float() * 8)),
    ("view_as", lambda x, o: x.view_as(x.reshape(4, 3))),
    ("reshape_as", lambda x, o: x.reshape_as(x.reshape(2, 6))),
    ("expand_as", lambda x, o: o.expand_as(x)),
    ("type_as", lambda x, o: x.long().type_as(o)),
    ("pred.eq(target.view_as(pred)).sum()",
     lambda x, o: x.max(1, keepdim=True)[1].eq(x.argmax(1).view_as(x.max(1, keepdim=True)[1])).sum()),
]

# calls torch rejects: lucid raises the same kind of error
REJECTED = [
    ("max((0, 1))", lambda x, o: x.max((0, 1)), TypeError),
    ("max(dim=(0, 1))", lambda x, o: x.max(dim=(0, 1)), TypeError),
    ("max(1.5)", lambda x, o: x.max(1.5), TypeError),
    ("max(1, dim=1)", lambda x, o: x.max(1, dim=1), TypeError),
    ("max(other, 1)", lambda x, o: x.max(o, 1), TypeError),
    ("max(1, True, 3)", lambda x, o: x.max(1, True, 3), TypeError),
    ("min(dim=(0, 1))", lambda x, o: x.min(dim=(0, 1)), TypeError),
    ("max(3)", lambda x, o: x.max(3), IndexError),
    ("empty.max(1)", lambda x, o: x[:, :0].max(1), IndexError),
]


def test_module_level_max_and_min_take_both_spellings():
    x = lucid.Tensor(A)
    values, indices = lucid.max(x, 1)
    np.testing.assert_array_equal(indices.numpy(), [1, 2, 3])
    np.testing.assert_array_equal(lucid.min(x, dim=0).values.numpy(), [-1.0, -1.0, 0.5, -2.0])
    np.testing.assert_array_equal(lucid.max(x, lucid.Tensor(OTHER)).numpy(), np.maximum(A, OTHER))
    np.testing.assert_array_equal(lucid.amax(x, (0, 1)).numpy(), 5.0)


def _lucid_inputs():
    return lucid.Tensor(A), lucid.Tensor(OTHER)


def _as_result(value):
    """('values-indices', values, indices) for a named tuple, else ('tensor', array)."""
    if isinstance(value, tuple):
        assert hasattr(value, "values") and hasattr(value, "indices") and len(value) == 2, value
        return ("values-indices", np.asarray(value.values.numpy()), np.asarray(value.indices.numpy()))
    return ("tensor", np.asarray(value.numpy()))


def _compare(ours, theirs):
    assert ours[0] == theirs[0], (ours, theirs)
    for a, b in zip(ours[1:], theirs[1:]):
        assert a.shape == b.shape, (a, b)
        np.testing.assert_array_equal(a.astype(np.float64), b.astype(np.float64))


@pytest.mark.parametrize("name, call", SAME_AS_TORCH, ids=[c[0] for c in SAME_AS_TORCH])
def test_same_result_as_torch(name, call):
    torch = pytest.importorskip("torch")
    ours = _as_result(call(*_lucid_inputs()))
    theirs = _as_result(call(torch.tensor(A), torch.tensor(OTHER)))
    _compare(ours, theirs)


@pytest.mark.parametrize("name, call, error", REJECTED, ids=[c[0] for c in REJECTED])
def test_rejected(name, call, error):
    with pytest.raises(error):
        call(*_lucid_inputs())


@pytest.mark.parametrize("name, call, error", REJECTED, ids=[c[0] for c in REJECTED])
def test_torch_rejects_them_too(name, call, error):
    torch = pytest.importorskip("torch")
    with pytest.raises((error, RuntimeError)):
        call(torch.tensor(A), torch.tensor(OTHER))


def test_max_over_a_dim_gives_values_and_first_indices():
    x = lucid.Tensor(A)
    result = x.max(1)
    assert type(result).__name__ == "max" and result._fields == ("values", "indices")
    np.testing.assert_array_equal(result.values.numpy(), [3.0, 5.0, 4.0])
    np.testing.assert_array_equal(result.indices.numpy(), [1, 2, 3])  # the first of tied maxima
    assert result.indices.dtype == np.int64
    values, indices = x.min(0, keepdim=True)
    np.testing.assert_array_equal(values.numpy(), [[-1.0, -1.0, 0.5, -2.0]])
    np.testing.assert_array_equal(indices.numpy(), [[2, 2, 2, 0]])
    pred = x.max(1, keepdim=True)[1]
    assert pred.shape == (3, 1) and int(pred.eq(lucid.tensor([1, 2, 0]).view_as(pred)).sum()) == 2
    scalar = lucid.Tensor(7.0).max(0)
    assert scalar.values.item() == 7.0 and scalar.indices.item() == 0 and scalar.values.shape == ()


def test_lucids_axis_spelling_keeps_giving_values():
    x = lucid.Tensor(A)
    np.testing.assert_array_equal(x.max(axis=1).numpy(), [3.0, 5.0, 4.0])
    np.testing.assert_array_equal(x.min(axis=(0, 1)).numpy(), -2.0)
    np.testing.assert_array_equal(lucid.max(x, axis=0, keepdims=True).numpy(), [[2.0, 3.0, 5.0, 5.0]])
    with pytest.raises(TypeError, match="either 'axis' or 'dim'"):
        x.max(axis=1, dim=1)


def test_the_gradient_of_max_over_a_dim_goes_to_the_chosen_element_and_amax_shares_ties():
    x = lucid.Tensor(A, requires_grad=True)
    x.max(1).values.sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])  # as torch: one winner
    y = lucid.Tensor(A, requires_grad=True)
    y.amax(1).sum().backward()
    np.testing.assert_array_equal(y.grad, [[0, 0.5, 0.5, 0], [0, 0, 0.5, 0.5], [0, 0, 0, 1]])


def test_dropout2d_zeroes_whole_channels_and_scales_the_rest():
    lucid.manual_seed(0)
    layer = nn.Dropout2d(0.5)
    out = layer(lucid.ones(8, 16, 3, 3)).numpy()
    per_channel = out.reshape(8, 16, 9)
    assert set(np.unique(per_channel)) <= {0.0, 2.0}
    assert (per_channel.min(axis=2) == per_channel.max(axis=2)).all()  # a channel is all kept or all zero
    dropped = (per_channel[:, :, 0] == 0).mean()
    assert 0.3 < dropped < 0.7, dropped
    layer.eval()
    x = lucid.ones(2, 3, 2, 2)
    assert layer(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.functional.dropout2d(x, 1.5)


@pytest.mark.parametrize("shape, warns", [((2, 3, 4), "3D input"), ((2, 3), "2-D input"), ((2, 3, 2, 2), None)])
def test_dropout2d_warns_where_torch_does(shape, warns):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = nn.functional.dropout2d(lucid.ones(*shape), 0.5, training=True)
    assert out.shape == shape
    messages = [str(w.message) for w in caught]
    assert (warns is None and not messages) or any(warns in m for m in messages), messages
