"""lucid.autograd: broadcasting, accumulation in place (flat views, attached storage), post-accumulate-grad
hooks and when they fire, tensor hooks, retain_grad, deep graphs, error messages, grad mode, and gradcheck
itself. The finite-difference checks of every primitive live in tests/ops/test_gradcheck.py."""

import gc
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.gradcheck import gradcheck
from lucid.ops._core import result

T = lucid.Tensor


def leaf(*shape, seed=0, dtype=np.float64):
    return T(np.random.default_rng(seed).standard_normal(shape).astype(dtype), requires_grad=True)


# ---------------------------------------------------------------------------- broadcasting

@pytest.mark.parametrize("a_shape, b_shape", [
    ((3, 4), (4,)),           # leading dimension added
    ((3, 4), (1, 4)),         # size-1 axis stretched
    ((3, 1), (1, 4)),         # both stretched
    ((2, 3, 4), (3, 1)),      # added and stretched
    ((2, 3, 4), ()),          # a 0-d tensor
])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_gradients_are_reduced_over_broadcast_dimensions(a_shape, b_shape, op):
    rng = np.random.default_rng(0)
    a = rng.uniform(1, 2, a_shape)
    b = rng.uniform(1, 2, b_shape)
    x, y = T(a, requires_grad=True), T(b, requires_grad=True)
    out = {"add": x + y, "sub": x - y, "mul": x * y, "div": x / y}[op]
    g = rng.standard_normal(out.shape)
    out.backward(g)
    assert x.grad.shape == a_shape and y.grad.shape == b_shape
    full_a, full_b = np.broadcast_to(a, out.shape), np.broadcast_to(b, out.shape)
    dx, dy = {"add": (g, g), "sub": (g, -g), "mul": (g * full_b, g * full_a),
              "div": (g / full_b, -g * full_a / full_b ** 2)}[op]
    np.testing.assert_allclose(x.grad, reduce_to(dx, a_shape), rtol=1e-12)
    np.testing.assert_allclose(y.grad, reduce_to(dy, b_shape), rtol=1e-12)


def reduce_to(g, shape):
    """Sum a full-size gradient over the axes that broadcasting added (leading) or stretched (size 1)."""
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    return g.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True).reshape(shape)


def test_backward_with_an_explicit_gradient():
    x = leaf(2, 3)
    (x * 3).backward(np.ones((2, 3)) * 2)
    np.testing.assert_allclose(x.grad, np.full((2, 3), 6.0))
    x.grad = None
    (x * 3).backward(T(np.ones((2, 3))))
    np.testing.assert_allclose(x.grad, np.full((2, 3), 3.0))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        (x * 3).backward(np.ones(3))


# ---------------------------------------------------------------------------- accumulation

def test_gradients_accumulate_across_backward_passes():
    x = leaf(3)
    (x * x).sum().backward()
    first = x.grad
    (x * 3).sum().backward()
    assert x.grad is first
    np.testing.assert_allclose(x.grad, 2 * x.data + 3)
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 3.0))


def test_first_gradient_is_a_fresh_array_of_the_leafs_dtype():
    x = leaf(3, dtype=np.float32)
    y = x.double()                       # float64 gradients flow back into a float32 leaf
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.flags.writeable and x.grad.flags.owndata
    s = T(2.0, requires_grad=True)       # a scalar leaf as the root
    s.backward()
    assert s.grad == 1.0


def test_grad_is_accumulated_in_place_into_a_view_of_a_flat_array():
    flat = np.zeros(10)
    a, b = nn.Parameter(np.ones(3)), nn.Parameter(np.ones((2, 2)))
    a.grad, b.grad = flat[1:4], flat[4:8].reshape(2, 2)
    view_a, view_b = a.grad, b.grad
    for step in range(2):
        ((a * 2).sum() + (b * b).sum()).backward()
        assert a.grad is view_a and b.grad is view_b
        assert np.shares_memory(a.grad, flat) and np.shares_memory(b.grad, flat)
    np.testing.assert_allclose(flat, [0, 4, 4, 4, 4, 4, 4, 4, 0, 0])


def test_attached_grad_storage_receives_the_first_gradient():
    flat = np.full(8, 7.0)               # stale values: backward must copy, not add
    p = nn.Parameter(np.arange(3.0))
    storage = flat[2:5]
    p._grad_storage = storage
    (p * p).sum().backward()
    assert p.grad is storage
    np.testing.assert_allclose(flat, [7, 7, 0, 2, 4, 7, 7, 7])
    (p * 1).sum().backward()             # then accumulates in place
    assert p.grad is storage
    np.testing.assert_allclose(storage, [1, 3, 5])
    p.grad = None                        # zero_grad(set_to_none=True): the storage stays attached
    (p * 5).sum().backward()
    assert p.grad is storage
    np.testing.assert_allclose(storage, [5, 5, 5])


def test_flat_buffer_of_an_optimizer_is_honoured():
    """The optimizer's flat buffers attach `_grad_storage` views; backward fills exactly those."""
    params = [nn.Parameter(np.ones(3, dtype=np.float32)), nn.Parameter(np.ones((2, 2), dtype=np.float32))]
    opt = lucid.optim.SGD(params, lr=0.1)
    sum(((p * p).sum() for p in params), T(0.0)).backward()
    opt.step()
    storages = [p._grad_storage for p in params]
    assert all(s is not None for s in storages)
    assert np.shares_memory(storages[0].base, storages[1])        # views of one flat array
    opt.zero_grad()                                                # set_to_none: storage stays attached
    assert all(p.grad is None for p in params)
    sum(((p * 3).sum() for p in params), T(0.0)).backward()
    for p, storage in zip(params, storages):
        assert p.grad is storage
        np.testing.assert_allclose(p.grad, np.full(p.shape, 3.0))


def test_user_assigned_grad_is_honoured_and_accumulated_into():
    p = nn.Parameter([1.0, 2.0])
    mine = np.array([10.0, 20.0], dtype=np.float32)
    p.grad = mine
    assert p.grad is mine
    (p * 2).sum().backward()
    assert p.grad is mine
    np.testing.assert_allclose(mine, [12.0, 22.0])
    p.grad = T(np.zeros(2, dtype=np.float32))      # a Tensor's array is taken
    assert isinstance(p.grad, np.ndarray)


@pytest.mark.parametrize("value, match", [
    (np.ones(3, dtype=np.float32), "different size"),
    (np.ones((2, 1), dtype=np.float32), "different size"),
    (np.ones(2, dtype=np.float64), "different type"),
])
def test_wrong_grad_assignment_is_a_value_error(value, match):
    p = nn.Parameter([1.0, 2.0])
    with pytest.raises(ValueError, match=match):
        p.grad = value
    assert p.grad is None


def test_grad_assignment_of_a_non_array_is_a_type_error():
    with pytest.raises(TypeError):
        nn.Parameter([1.0, 2.0]).grad = [1.0, 2.0]


# ---------------------------------------------------------------------------- post-accumulate-grad hooks

def test_post_accumulate_hook_fires_once_per_pass_with_the_complete_gradient():
    p = nn.Parameter([1.0, 2.0])
    seen = []
    p.register_post_accumulate_grad_hook(lambda t: seen.append((t is p, t.grad.copy())))
    ((p * p).sum() + (p * 3).sum() + p[0]).backward()      # p used three times
    assert len(seen) == 1
    assert seen[0][0]
    np.testing.assert_allclose(seen[0][1], [2 * 1 + 3 + 1, 2 * 2 + 3])
    (p * 1).sum().backward()
    assert len(seen) == 2
    np.testing.assert_allclose(seen[1][1], [7.0, 8.0])        # accumulated: hooks see .grad


def test_post_accumulate_hooks_fire_before_backward_finishes_the_graph():
    lucid.manual_seed(0)
    first, last = nn.Linear(4, 8), nn.Linear(8, 3)
    events = []
    for name, p in [("first.weight", first.weight), ("first.bias", first.bias),
                    ("last.weight", last.weight), ("last.bias", last.bias)]:
        p.register_post_accumulate_grad_hook(
            lambda t, name=name: events.append((name, first.weight.grad is None)))
    h = first(lucid.randn(5, 4))
    h.register_hook(lambda g: events.append(("h", first.weight.grad is None)))
    last(h.relu()).sum().backward()
    names = [name for name, _ in events]
    assert sorted(names) == sorted(["first.weight", "first.bias", "last.weight", "last.bias", "h"])
    # the last layer's hooks ran before the tensor hook on the first layer's output, while the first
    # layer's weight had no gradient yet: the walk was not over
    assert names.index("last.weight") < names.index("h") < names.index("first.weight")
    assert names.index("last.bias") < names.index("h")
    assert dict(events)["last.weight"] is True and dict(events)["last.bias"] is True
    assert dict(events)["first.weight"] is False


def test_post_accumulate_hook_handle_remove():
    p = nn.Parameter([1.0])
    calls = []
    handle = p.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    other = p.register_post_accumulate_grad_hook(lambda t: calls.append(2))
    (p * 2).sum().backward()
    handle.remove()
    handle.remove()                                    # twice is harmless
    (p * 2).sum().backward()
    assert calls == [1, 2, 2]
    other.remove()
    (p * 2).sum().backward()
    assert calls == [1, 2, 2]


def test_post_accumulate_hook_only_on_leaves():
    x = T([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (x * 2).register_post_accumulate_grad_hook(lambda t: None)


def test_post_accumulate_hook_can_read_and_zero_the_gradient():
    """A hook sees the final gradient and may consume it (as a bucketed all-reduce would)."""
    p = nn.Parameter([1.0, 2.0])
    taken = []

    def take(t):
        taken.append(t.grad.copy())
        t.grad[...] = 0
    p.register_post_accumulate_grad_hook(take)
    (p * 4).sum().backward()
    np.testing.assert_allclose(taken[0], [4.0, 4.0])
    np.testing.assert_allclose(p.grad, [0.0, 0.0])


# ---------------------------------------------------------------------------- tensor hooks and retain_grad

def test_register_hook_on_a_non_leaf_can_replace_the_gradient():
    x = T([1.0, 2.0], requires_grad=True)
    h = x * 2
    seen = []
    h.register_hook(lambda g: seen.append(g.copy()))             # None: observe only
    h.register_hook(lambda g: g * 10)                            # replaces
    (h * h).sum().backward()
    np.testing.assert_allclose(seen[0], [4.0, 8.0])
    np.testing.assert_allclose(x.grad, [80.0, 160.0])


def test_register_hook_on_a_leaf_and_remove():
    x = T([1.0, 2.0], requires_grad=True)
    handle = x.register_hook(lambda g: g * 0 + 1)
    (x * 5).sum().backward()
    np.testing.assert_allclose(x.grad, [1.0, 1.0])
    handle.remove()
    x.grad = None
    (x * 5).sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 5.0])
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        T([1.0]).register_hook(lambda g: g)


def test_retain_grad():
    x = T([1.0, 2.0], requires_grad=True)
    h = x * 3
    other = x * 4
    h.retain_grad()
    (h * h + other).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * h.data)
    assert other.grad is None                          # non-leaves keep no gradient by default
    np.testing.assert_allclose(x.grad, 18 * x.data + 4)
    x.retain_grad()                                    # a no-op on a leaf


# ---------------------------------------------------------------------------- deep graphs

def test_ten_thousand_op_chain():
    x = T(np.array([1.0, 2.0]), requires_grad=True)
    h = x
    for _ in range(10_000):
        h = h * 1.0001
    h.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(2, 1.0001 ** 10_000), rtol=1e-10)
    del h                                           # freeing the chain must not recurse either
    gc.collect()


def test_deleting_a_deep_graph_without_backward():
    code = textwrap.dedent("""
        import sys, lucid
        sys.setrecursionlimit(1000)
        h = lucid.Tensor([1.0], requires_grad=True)
        for _ in range(50_000):
            h = h + 1.0
        del h
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_ten_thousand_step_residual_chain_with_fan_out():
    c, n = 1e-3, 10_000
    x0 = np.array([0.3, -1.2])
    x = T(x0, requires_grad=True)
    h = x
    for _ in range(n):
        h = h + c * h.tanh()            # h feeds both the skip path and tanh
    h.sum().backward()
    # analytic: d h_{k+1} / d h_k = 1 + c (1 - tanh(h_k)^2), multiplied along the chain
    value, grad = x0.copy(), np.ones(2)
    for _ in range(n):
        t = np.tanh(value)
        grad *= 1 + c * (1 - t * t)
        value = value + c * t
    np.testing.assert_allclose(h.numpy(), value, rtol=1e-12)
    np.testing.assert_allclose(x.grad, grad, rtol=1e-10)


def test_diamond_graph_gradient():
    x = T([2.0], requires_grad=True)
    a = x * x            # 4
    b = a * x            # x^3
    c = a + b            # x^2 + x^3
    (c * a).sum().backward()      # x^4 + x^5 -> 4x^3 + 5x^4
    np.testing.assert_allclose(x.grad, [4 * 8 + 5 * 16])


# ---------------------------------------------------------------------------- errors

def test_backward_on_a_non_scalar_needs_a_gradient():
    x = T([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        (x * 2).backward()


def test_backward_on_a_tensor_not_requiring_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        T([1.0]).sum().backward()
    x = T([1.0], requires_grad=True)
    with lucid.no_grad():
        y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_second_backward_needs_retain_graph():
    x = T([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    x.grad = None
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 3 * 2 * x.data)
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


# ---------------------------------------------------------------------------- grad mode

def test_no_grad_and_enable_grad_context_managers_nest():
    x = T([1.0], requires_grad=True)
    assert lucid.is_grad_enabled()
    with lucid.no_grad():
        assert not lucid.is_grad_enabled()
        assert (x * 2).grad_fn is None and not (x * 2).requires_grad
        with lucid.enable_grad():
            assert lucid.is_grad_enabled()
            assert (x * 2).grad_fn is not None
            with lucid.no_grad():
                assert not lucid.is_grad_enabled()
            assert lucid.is_grad_enabled()
        assert not lucid.is_grad_enabled()
    assert lucid.is_grad_enabled()
    assert (x * 2).grad_fn is not None


def test_grad_mode_is_restored_after_an_exception():
    with pytest.raises(KeyError), lucid.no_grad():
        raise KeyError
    assert lucid.is_grad_enabled()


def test_no_grad_and_enable_grad_as_decorators():
    x = T([1.0], requires_grad=True)

    @lucid.no_grad()
    def frozen(t):
        assert not lucid.is_grad_enabled()
        return t * 2

    @lucid.enable_grad()
    def recorded(t):
        return t * 2

    @lucid.no_grad
    def frozen_bare(t):
        return t * 2

    assert frozen.__name__ == "frozen"
    assert frozen(x).grad_fn is None and frozen_bare(x).grad_fn is None
    assert lucid.is_grad_enabled()
    with lucid.no_grad():
        assert recorded(x).grad_fn is not None
        assert not lucid.is_grad_enabled()


def test_set_grad_enabled():
    lucid.set_grad_enabled(False)
    try:
        assert (T([1.0], requires_grad=True) * 2).grad_fn is None
    finally:
        lucid.set_grad_enabled(True)


def test_detach_cuts_the_graph():
    x = T([1.0, 2.0], requires_grad=True)
    y = x * 3
    z = y.detach() * x + y
    z.sum().backward()
    np.testing.assert_allclose(x.grad, y.data + 3)       # d/dx of (const * x + 3x)


def test_ops_on_tensors_not_requiring_grad_record_nothing():
    a, b = T([1.0, 2.0]), T([3.0, 4.0])
    for out in (a + b, a * b, a @ b, (a - b).exp().sum(), a[0], a.reshape(2, 1), a.T, a.max(),
                lucid.stack([a, b]), lucid.where(a > 1, a, b)):
        assert out.grad_fn is None and not out.requires_grad and out.is_leaf
    assert (a + T([1.0, 1.0], requires_grad=True)).grad_fn is not None


# ---------------------------------------------------------------------------- gradcheck itself

def square_with_backward(a, wrong: bool):
    x = a.data

    def backward(g):
        return (g * (3 if wrong else 2) * x,)
    return result(x * x, (a,), backward, "square")


def test_gradcheck_accepts_a_correct_backward():
    assert gradcheck(lambda t: square_with_backward(t, False), [leaf(3, 2)])


def test_gradcheck_detects_a_wrong_backward():
    with pytest.raises(AssertionError, match="gradcheck failed for input 0"):
        gradcheck(lambda t: square_with_backward(t, True), [leaf(3, 2)])


def test_gradcheck_detects_a_missing_gradient():
    def dropped(a, b):
        return result(a.data * b.data, (a, b), lambda g: (g * b.data, None), "dropped")
    with pytest.raises(AssertionError, match="input 1"):
        gradcheck(dropped, [leaf(2, seed=1), leaf(2, seed=2)])


def test_gradcheck_on_a_non_contiguous_input():
    a = T(np.random.default_rng(0).standard_normal((3, 4)).T, requires_grad=True)
    assert not a.data.flags.c_contiguous
    assert gradcheck(lambda t: (t * t).sum(axis=0), [a])
