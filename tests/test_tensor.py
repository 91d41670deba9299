"""lucid.Tensor: construction and dtypes, array facts, conversion, operators, reductions, shapes, indexing,
in-place updates, casts and error messages. Gradients of the primitives are checked in tests/ops."""

import operator

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.nn import functional as F

T = lucid.Tensor


@pytest.fixture
def default_dtype():
    """Restore the default dtype after a test that changes it."""
    before = lucid.get_default_dtype()
    yield
    lucid.set_default_dtype(before)


def m23():
    return np.arange(6.0).reshape(2, 3)


# ---------------------------------------------------------------------------- construction and dtypes

@pytest.mark.parametrize("data, dtype", [
    (np.ones(3), np.float64),                        # arrays keep their dtype
    (np.ones(3, dtype=np.float16), np.float16),
    (np.ones(3, dtype=np.int32), np.int32),
    (np.float64(2.0), np.float64),                   # so do NumPy scalars, as in torch
    (np.int32(2), np.int32),
    ([1.0, 2.0], np.float32),                        # Python floats: the default dtype
    (2.5, np.float32),
    ([1, 2.5], np.float32),
    ([], np.float32),
    ([1, 2], np.int64),                              # Python ints: int64
    (3, np.int64),
    ([True, False], np.bool_),
    (T(np.ones(2)), np.float64),
])
def test_dtype_inferred_from_data(data, dtype):
    assert T(data).dtype == dtype
    assert lucid.tensor(data).dtype == dtype


def test_default_dtype_is_settable_and_restored(default_dtype):
    assert lucid.get_default_dtype() == lucid.float32
    lucid.set_default_dtype(lucid.float64)
    assert lucid.get_default_dtype() == np.float64
    assert T([1.0]).dtype == np.float64
    assert lucid.zeros(2).dtype == np.float64 and lucid.randn(2).dtype == np.float64
    assert T([1]).dtype == np.int64               # integers are not affected
    assert T(np.ones(2, dtype=np.float32)).dtype == np.float32
    lucid.set_default_dtype("float16")
    assert T([1.0]).dtype == np.float16
    with pytest.raises(TypeError, match="floating"):
        lucid.set_default_dtype(lucid.int64)


def test_explicit_dtype_wins():
    assert T([1, 2], dtype=lucid.float64).dtype == np.float64
    assert T(np.ones(2), dtype="float32").dtype == np.float32
    assert T([1.7], dtype=np.int32).dtype == np.int32
    assert lucid.zeros(2, 3, dtype=lucid.int64).dtype == np.int64


def test_tensor_copies_and_constructor_shares():
    a = m23()
    shared, copied = T(a), lucid.tensor(a)
    assert shared.data is a
    assert not np.shares_memory(copied.data, a)
    a[0, 0] = 42.0
    assert shared[0, 0].item() == 42.0 and copied[0, 0].item() == 0.0
    source = T(np.ones(3))
    assert T(source).data is source.data
    assert not np.shares_memory(lucid.tensor(source).data, source.data)
    p = nn.Parameter(a)
    assert p.data is a and p.requires_grad


@pytest.mark.parametrize("dtype", ["float128", "complex64", "int128", "foo", object])
def test_unknown_dtype_is_a_value_error(dtype):
    with pytest.raises(ValueError, match="unknown dtype"):
        T([1.0], dtype=dtype)


@pytest.mark.parametrize("device", ["tpu", "mps", "", 0])
def test_unknown_device_is_a_value_error(device):
    with pytest.raises(ValueError, match="unknown device"):
        T([1.0], device=device)
    with pytest.raises(ValueError, match="unknown device"):
        lucid.zeros(2, device=device)


def test_non_numeric_data_is_refused():
    with pytest.raises(ValueError, match="cannot make a Tensor"):
        T("abc")


@pytest.mark.parametrize("make", [
    lambda: T([1, 2], requires_grad=True),
    lambda: T([True], requires_grad=True),
    lambda: lucid.zeros(2, dtype=lucid.int32, requires_grad=True),
    lambda: T([1, 2]).requires_grad_(),
])
def test_only_floating_tensors_can_require_grad(make):
    with pytest.raises(RuntimeError, match="floating point"):
        make()


def test_creation_functions():
    assert lucid.zeros(2, 3).shape == (2, 3) and lucid.zeros((2, 3)).shape == (2, 3)
    np.testing.assert_array_equal(lucid.ones(2).numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(lucid.full((2,), 7).numpy(), [7, 7])
    assert lucid.full((2,), 7).dtype == np.int64 and lucid.full((2,), 7.0).dtype == np.float32
    assert lucid.arange(5).dtype == np.int64 and lucid.arange(0, 1, 0.5).dtype == np.float32
    np.testing.assert_array_equal(lucid.eye(2).numpy(), np.eye(2))
    like = lucid.zeros_like(T([1, 2]))
    assert like.dtype == np.int64 and like.shape == (2,)
    lucid.manual_seed(3)
    a = lucid.randn(4)
    lucid.manual_seed(3)
    np.testing.assert_array_equal(lucid.randn(4).numpy(), a.numpy())
    r = lucid.randint(0, 5, (100,))
    assert r.dtype == np.int64 and 0 <= r.numpy().min() and r.numpy().max() < 5


# ---------------------------------------------------------------------------- array facts and conversion

def test_array_facts():
    x = T(m23())
    assert x.shape == (2, 3) and isinstance(x.shape, tuple)
    assert x.ndim == 2 and x.dim() == 2
    assert x.dtype == np.float64 and x.device == "cpu"
    assert x.size() == (2, 3) and x.size(1) == 3 and x.size(-1) == 3
    assert x.numel() == 6 and len(x) == 2
    assert x.is_leaf and not x.requires_grad and x.grad is None and x.grad_fn is None
    with pytest.raises(TypeError, match="0-d"):
        len(T(1.0))


def test_conversions():
    a = m23()
    x = T(a)
    assert x.numpy() is a
    assert x.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert x[1, 2].item() == 5.0 and isinstance(x[1, 2].item(), float)
    assert isinstance(T([3]).item(), int)
    assert float(T(2.5)) == 2.5 and int(T(4)) == 4 and bool(T([1.0]))
    assert [10, 20, 30][T(1)] == 20                      # __index__
    np.testing.assert_array_equal(np.asarray(x), a)
    assert np.array(x, dtype=np.float32).dtype == np.float32
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        x.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)
    assert [row.tolist() for row in x] == a.tolist()     # iteration yields rows


def test_repr():
    assert repr(T([1.0, 2.0])) == "Tensor([1., 2.])"
    assert repr(T([1, 2])) == "Tensor([1, 2])"
    assert repr(T(np.ones(2))) == "Tensor([1., 1.], dtype=float64)"
    assert repr(T([1.0], requires_grad=True)) == "Tensor([1.], requires_grad=True)"
    assert repr(T([1.0], requires_grad=True) * 2) == "Tensor([2.], grad_fn=<mul>)"
    assert repr(nn.Parameter([1.0])).startswith("Parameter containing:\nTensor([1.]")
    assert "\n" in repr(T(m23()))


# ---------------------------------------------------------------------------- operators

BINARY = [
    ("add", operator.add), ("sub", operator.sub), ("mul", operator.mul), ("truediv", operator.truediv),
    ("pow", operator.pow),
]


@pytest.mark.parametrize("name, op", BINARY)
def test_binary_operators_with_scalars_arrays_and_tensors(name, op):
    a = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    b = np.array([0.5, 2.0, 1.5], dtype=np.float32)
    x, y = T(a), T(b)
    for got, expected in [
        (op(x, y), op(a, b)),
        (op(x, 2.0), op(a, np.float32(2.0))),
        (op(2.0, x), op(np.float32(2.0), a)),
        (op(x, b), op(a, b)),
        (op(b, x), op(b, a)),                   # ndarray <op> Tensor: Tensor's reflected operator
    ]:
        assert isinstance(got, T), type(got)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_scalars_do_not_promote_but_arrays_do():
    x = T([1.0, 2.0])                                    # float32
    assert (x * 2).dtype == np.float32 and (x / 3).dtype == np.float32
    assert (x / np.sqrt(4)).dtype == np.float32          # a NumPy float64 scalar is weak, as in torch
    assert (np.float64(2.0) * x).dtype == np.float32
    assert x.clip(np.float64(0.5), np.float64(1.5)).dtype == np.float32
    assert lucid.maximum(x, np.float64(1.0)).dtype == np.float32
    assert (x + np.ones(2)).dtype == np.float64          # a float64 array promotes, as a float64 tensor does
    assert (x + T(np.ones(2))).dtype == np.float64
    assert (T([1, 2]) * 2).dtype == np.int64
    assert (T([1, 2]) / 2).dtype.kind == "f"


def test_unary_operators_and_matmul():
    a = m23()
    x = T(a)
    np.testing.assert_array_equal((-x).numpy(), -a)
    assert (+x) is x
    np.testing.assert_array_equal(abs(T([-1.0, 2.0])).numpy(), [1.0, 2.0])
    np.testing.assert_allclose((x @ x.T).numpy(), a @ a.T)
    np.testing.assert_allclose((x @ np.ones(3)).numpy(), a @ np.ones(3))
    r = np.ones((3, 2)) @ x
    assert isinstance(r, T)
    np.testing.assert_allclose(r.numpy(), np.ones((3, 2)) @ a)


COMPARISONS = [operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge]


@pytest.mark.parametrize("op", COMPARISONS)
def test_comparisons_return_bool_tensors(op):
    a = np.array([1.0, 2.0, 3.0])
    x = T(a)
    for got, expected in [(op(x, 2.0), op(a, 2.0)), (op(2.0, x), op(2.0, a)),
                          (op(x, T([3.0, 2.0, 1.0])), op(a, np.array([3.0, 2.0, 1.0]))),
                          (op(np.full(3, 2.0), x), op(np.full(3, 2.0), a))]:
        assert isinstance(got, T) and got.dtype == np.bool_
        np.testing.assert_array_equal(got.numpy(), expected)
    assert op(T([1.0], requires_grad=True), 0.0).grad_fn is None


# ---------------------------------------------------------------------------- reductions

REDUCTIONS = [
    ("sum", np.sum), ("mean", np.mean), ("max", np.max), ("min", np.min),
    ("var", lambda a, axis=None, keepdims=False: np.var(a, axis=axis, keepdims=keepdims, ddof=1)),
    ("std", lambda a, axis=None, keepdims=False: np.std(a, axis=axis, keepdims=keepdims, ddof=1)),
    ("logsumexp", lambda a, axis=None, keepdims=False:
        np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdims))),
]


@pytest.mark.parametrize("name, ref", REDUCTIONS)
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_axis_and_dim_spellings(name, ref, axis, keepdims):
    a = np.random.default_rng(0).standard_normal((2, 3, 4))
    x = T(a)
    expected = ref(a, axis=axis, keepdims=keepdims)
    numpy_kw = getattr(x, name)(axis=axis, keepdims=keepdims)
    if name in ("max", "min"):  # max(dim) is PyTorch's (values, indices): see test_torch_idioms.py
        spellings = [numpy_kw] + ([getattr(x, name)(dim=axis, keepdim=keepdims).values,
                                   getattr(x, name)(axis, keepdims).values] if isinstance(axis, int) else [])
    else:
        spellings = [numpy_kw, getattr(x, name)(axis, keepdims), getattr(x, name)(dim=axis, keepdim=keepdims)]
    for got in spellings:
        assert got.shape == np.shape(expected)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    if axis is not None:
        with pytest.raises(TypeError, match="either 'axis' or 'dim'"):
            getattr(x, name)(axis=axis, dim=axis)


def test_reduction_functions_and_list_axes():
    a = m23()
    x = T(a)
    np.testing.assert_allclose(lucid.sum(x, dim=1).numpy(), a.sum(1))
    np.testing.assert_allclose(lucid.mean(x, axis=[0, 1]).numpy(), a.mean())
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.sum(axis=2)


def test_max_returns_values_and_argmax_indices():
    a = np.array([[1.0, 9.0, 3.0], [7.0, 2.0, 8.0]])
    x = T(a)
    np.testing.assert_array_equal(x.max(axis=1).numpy(), [9.0, 8.0])
    np.testing.assert_array_equal(x.max(dim=0).values.numpy(), [7.0, 9.0, 8.0])
    np.testing.assert_array_equal(x.max(dim=0).indices.numpy(), [1, 0, 1])
    np.testing.assert_array_equal(x.min(axis=1).numpy(), [1.0, 2.0])
    idx = x.argmax(axis=1)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx.numpy(), [1, 2])
    np.testing.assert_array_equal(x.argmin(dim=1, keepdim=True).numpy(), [[0], [1]])
    assert x.argmax().item() == 1 and lucid.argmax(x).item() == 1      # over the flattened tensor
    assert x.max().item() == 9.0 and lucid.max(x, axis=0).shape == (3,)


def test_var_uses_bessels_correction():
    x = T([1.0, 2.0, 3.0, 4.0])
    assert x.var().item() == pytest.approx(5.0 / 3.0)
    assert x.var(correction=0).item() == pytest.approx(1.25)
    assert x.var(unbiased=False).item() == pytest.approx(1.25)
    assert x.std().item() == pytest.approx(np.sqrt(5.0 / 3.0))


# ---------------------------------------------------------------------------- shapes

def test_reshape_and_view():
    a = np.arange(24.0).reshape(2, 3, 4)
    x = T(a)
    for y in (x.reshape(6, 4), x.reshape((6, 4)), x.view(6, 4), x.view(-1, 4), lucid.reshape(x, 6, 4)):
        assert y.shape == (6, 4)
        np.testing.assert_array_equal(y.numpy(), a.reshape(6, 4))
    assert x.reshape(-1).shape == (24,)
    with pytest.raises(ValueError, match=r"invalid for input of size 24"):
        x.reshape(5, 5)


def test_transpose_spellings():
    a = np.arange(24.0).reshape(2, 3, 4)
    x = T(a)
    np.testing.assert_array_equal(x.transpose(0, 2).numpy(), np.swapaxes(a, 0, 2))    # torch: swap two
    np.testing.assert_array_equal(x.transpose(-1, 1).numpy(), np.swapaxes(a, 2, 1))
    np.testing.assert_array_equal(x.transpose((2, 0, 1)).numpy(), a.transpose(2, 0, 1))  # a permutation
    np.testing.assert_array_equal(x.transpose().numpy(), a.T)                            # reverse all
    np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), a.transpose(1, 2, 0))
    np.testing.assert_array_equal(x.permute((1, 2, 0)).numpy(), a.transpose(1, 2, 0))
    np.testing.assert_array_equal(x.T.numpy(), a.T)
    np.testing.assert_array_equal(lucid.transpose(T(m23()), 0, 1).numpy(), m23().T)
    with pytest.raises(ValueError, match="permutation"):
        x.permute(0, 0, 1)
    with pytest.raises(TypeError):
        x.transpose(0, 1, 2)


def test_squeeze_unsqueeze_flatten_expand():
    x = T(np.arange(6.0).reshape(1, 2, 1, 3))
    assert x.squeeze().shape == (2, 3)
    assert x.squeeze(0).shape == (2, 1, 3) and x.squeeze(dim=2).shape == (1, 2, 3)
    assert x.squeeze(1).shape == (1, 2, 1, 3)                      # not size 1: a no-op, as in torch
    assert T(m23()).unsqueeze(0).shape == (1, 2, 3)
    assert T(m23()).unsqueeze(-1).shape == (2, 3, 1)
    assert T(m23()).unsqueeze(dim=1).shape == (2, 1, 3)
    y = T(np.arange(24.0).reshape(2, 3, 4))
    assert y.flatten().shape == (24,) and y.flatten(1).shape == (2, 12)
    assert y.flatten(0, 1).shape == (6, 4) and T(5.0).flatten().shape == (1,)
    col = T([[1.0], [2.0]])
    np.testing.assert_array_equal(col.expand(2, 3).numpy(), [[1, 1, 1], [2, 2, 2]])
    assert T([1.0, 2.0, 3.0]).expand(4, -1).shape == (4, 3)
    assert T([1.0, 2.0, 3.0]).expand((2, 4, 3)).shape == (2, 4, 3)


# ---------------------------------------------------------------------------- indexing

@pytest.mark.parametrize("index", [
    1, -1, (1, 2), slice(None, None, -1), (slice(None), 1), (Ellipsis, 0), (None, 0),
    np.array([1, 0, 1]),                                     # integer arrays (with repeats)
    [0, 0],
    (slice(None), [2, 0]),
    np.array([True, False]),                                 # boolean masks
    m23() > 2,
])
def test_indexing_follows_numpy(index):
    a = m23()
    np.testing.assert_array_equal(T(a)[index].numpy(), a[index])


def test_indexing_with_tensors():
    a = m23()
    x = T(a)
    np.testing.assert_array_equal(x[x > 2].numpy(), a[a > 2])
    np.testing.assert_array_equal(x[T([1, 1, 0])].numpy(), a[[1, 1, 0]])
    np.testing.assert_array_equal(x[T([True, False])].numpy(), a[[True, False]])
    np.testing.assert_array_equal(x[:, T([2, 0])].numpy(), a[:, [2, 0]])


def test_setitem():
    x = T(m23())
    x[x > 4] = -1.0
    x[0, 1] = 10.0
    np.testing.assert_array_equal(x.numpy(), [[0.0, 10.0, 2.0], [3.0, 4.0, -1.0]])
    x[1] = T([7.0, 8.0, 9.0])
    x[:, T([0, 2])] = 5.0
    np.testing.assert_array_equal(x.numpy(), [[5.0, 10.0, 5.0], [5.0, 8.0, 5.0]])


def test_setitem_is_refused_on_a_tensor_requiring_grad():
    p = T([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        p[0] = 5.0
    np.testing.assert_array_equal(p.numpy(), [1.0, 2.0, 3.0])
    with lucid.no_grad():
        p[0] = 5.0
    np.testing.assert_array_equal(p.numpy(), [5.0, 2.0, 3.0])


# ---------------------------------------------------------------------------- in-place updates

def test_inplace_updates_write_into_the_same_array():
    x = T([1.0, 2.0, 3.0])
    data = x.data
    assert x.add_(1) is x
    np.testing.assert_array_equal(x.numpy(), [2.0, 3.0, 4.0])
    x.add_(T([1.0, 1.0, 1.0]), alpha=2)
    np.testing.assert_array_equal(x.numpy(), [4.0, 5.0, 6.0])
    x.sub_(1).mul_(2)
    np.testing.assert_array_equal(x.numpy(), [6.0, 8.0, 10.0])
    x.div_(T([2.0, 4.0, 5.0]))
    np.testing.assert_array_equal(x.numpy(), [3.0, 2.0, 2.0])
    x.mul_(np.array([1.0, 0.5, 2.0]))
    np.testing.assert_array_equal(x.numpy(), [3.0, 1.0, 4.0])
    assert x.zero_() is x
    np.testing.assert_array_equal(x.numpy(), [0.0, 0.0, 0.0])
    x.fill_(7)
    np.testing.assert_array_equal(x.numpy(), [7.0, 7.0, 7.0])
    assert x.copy_(np.array([1, 2, 3])) is x
    np.testing.assert_array_equal(x.numpy(), [1.0, 2.0, 3.0])
    x.copy_(T(9.0))                                                  # broadcasts
    np.testing.assert_array_equal(x.numpy(), [9.0, 9.0, 9.0])
    assert x.data is data and x.dtype == np.float32


def test_copy_casts_into_the_destination_dtype():
    y = T([0, 0, 0])
    y.copy_(T([1.7, 2.2, -3.9]))
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y.numpy(), [1, 2, -3])       # truncation, as torch's copy_


def test_inplace_on_a_leaf_requiring_grad_needs_no_grad():
    p = nn.Parameter([1.0, 2.0])
    for fn in (lambda: p.add_(1), lambda: p.mul_(2), lambda: p.zero_(), lambda: p.fill_(0),
               lambda: p.copy_(np.zeros(2))):
        with pytest.raises(RuntimeError, match="in-place"):
            fn()
    with lucid.no_grad():
        p.mul_(3).add_(1)
    np.testing.assert_array_equal(p.numpy(), [4.0, 7.0])


# ---------------------------------------------------------------------------- casts and copies

def test_to_dtype_double_and_clone():
    x = T([1.5, 2.5])
    assert x.to(lucid.float64).dtype == np.float64
    assert x.to(dtype="float64").dtype == np.float64
    assert x.to(np.float16).dtype == np.float16
    assert x.double().dtype == np.float64 and x.half().dtype == np.float16
    assert x.long().dtype == np.int64 and x.double().float().dtype == np.float32
    assert x.to(lucid.float32) is x and x.to("cpu") is x and x.cpu() is x
    d = x.double()
    d.data[0] = 100.0
    assert x[0].item() == 1.5                                  # a cast copies
    c = x.clone()
    assert not np.shares_memory(c.data, x.data)
    np.testing.assert_array_equal(c.numpy(), x.numpy())
    c.data[1] = -1.0
    assert x[1].item() == 2.5


def test_casts_and_clone_stay_in_the_graph():
    x = T([1.0, 2.0], requires_grad=True)
    y = x.double()
    assert y.grad_fn is not None and x.clone().grad_fn is not None
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])


def test_detach_shares_data_and_leaves_the_graph():
    x = T([1.0, 2.0], requires_grad=True)
    d = (x * 2).detach()
    assert d.grad_fn is None and not d.requires_grad and d.is_leaf
    assert x.detach().data is x.data


# ---------------------------------------------------------------------------- shape errors

@pytest.mark.parametrize("fn, a_shape, b_shape", [
    (operator.add, (2, 3), (4, 3)),
    (operator.mul, (2, 3), (2,)),
    (operator.matmul, (2, 3), (4, 5)),
    (operator.matmul, (3,), (2, 2)),
    (F.linear, (2, 3), (4, 5)),
    (lambda x, w: nn.Linear(5, 4)(x), (2, 3), (4, 5)),
])
def test_shape_mismatch_is_a_value_error_naming_both_shapes(fn, a_shape, b_shape):
    with pytest.raises(ValueError) as info:
        fn(T(np.ones(a_shape)), T(np.ones(b_shape)))
    message = str(info.value)
    assert str(a_shape) in message and str(b_shape) in message, message


# ---------------------------------------------------------------------------- torch cross-checks

def test_against_torch_reductions_and_shapes():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(1).standard_normal((3, 4, 5))
    x, t = T(a), torch.tensor(a)
    pairs = [
        (x.var(), t.var()), (x.var(dim=1), t.var(dim=1)), (x.std(dim=(0, 2), keepdim=True),
                                                          t.std(dim=(0, 2), keepdim=True)),
        (x.max(dim=2).values, t.max(dim=2).values), (x.argmax(dim=2), t.argmax(dim=2)),
        (x.logsumexp(dim=1), t.logsumexp(dim=1)),
        (x.transpose(0, 2), t.transpose(0, 2)), (x.permute(2, 0, 1), t.permute(2, 0, 1)),
        (x.flatten(1), t.flatten(1)), (x[:, None, 1].squeeze(), t[:, None, 1].squeeze()),
        (x.unsqueeze(1).expand(3, 2, 4, 5), t.unsqueeze(1).expand(3, 2, 4, 5)),
        (x[x > 0.5], t[t > 0.5]), (x[[2, 0, 2]], t[[2, 0, 2]]),
    ]
    for i, (ours, theirs) in enumerate(pairs):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12, err_msg=f"pair {i}")


def test_against_torch_gradients_through_indexing_and_broadcasting():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((1, 3))
    x, y = T(a, requires_grad=True), T(b, requires_grad=True)
    tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    idx = [0, 2, 2, 3]
    ((x[idx] * y).tanh().sum(dim=1).max() + (x @ y.T).var()).backward()
    ((tx[idx] * ty).tanh().sum(dim=1).max() + (tx @ ty.T).var()).backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y.grad, ty.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_against_torch_dtype_rules():
    torch = pytest.importorskip("torch")
    for data in ([1.0, 2.0], [1, 2], [True], np.float64(1.0), np.int32(3), np.ones(2, dtype=np.float16)):
        assert T(data).dtype.name == str(torch.tensor(data).dtype).replace("torch.", ""), data
    t32, x32 = torch.ones(2), T(np.ones(2, dtype=np.float32))
    for scalar in (2, 2.0, np.float64(2.0)):
        assert (x32 * scalar).dtype.name == str((t32 * scalar).dtype).replace("torch.", "")
