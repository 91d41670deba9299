"""Reverse-mode autograd: grad mode, graph recording, and the iterative backward pass.

An op that produced a Tensor from inputs that require grad stores a `Node` on it: the inputs and a
closure mapping the output's gradient to one gradient per input. `backward` walks the recorded graph
in reverse topological order with an explicit stack (a 10,000-op chain is fine), reduces gradients
over broadcast dimensions, and accumulates each leaf's gradient **in place** into its `.grad` array.
As soon as a leaf's gradient for this pass is complete its post-accumulate-grad hooks fire, while the
rest of the graph is still being walked; the distributed optimizer starts communicating from there.
"""

from __future__ import annotations

import functools

from . import _backend

_grad_enabled = True


def is_grad_enabled() -> bool:
    """True when ops record the graph (the default)."""
    return _grad_enabled


def set_grad_enabled(mode: bool) -> None:
    """Turn graph recording on or off globally."""
    global _grad_enabled
    _grad_enabled = bool(mode)


class _GradMode:
    """A context manager and decorator that sets grad mode for its body."""

    _mode = True

    def __new__(cls, orig_func=None):
        # `@no_grad` without parentheses decorates too, as in torch
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)

    def __enter__(self):
        self._previous = is_grad_enabled()
        set_grad_enabled(self._mode)
        return self

    def __exit__(self, *exc):
        set_grad_enabled(self._previous)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Disable graph recording: `with lucid.no_grad(): ...` or `@lucid.no_grad()`."""

    _mode = False


class enable_grad(_GradMode):
    """Enable graph recording inside a `no_grad` region."""

    _mode = True


class Node:
    """How to push a gradient from one op's output back to its inputs."""

    __slots__ = ("inputs", "backward_fn", "name")

    def __init__(self, inputs, backward_fn, name):
        self.inputs = inputs            # tuple aligned with backward_fn's results; non-Tensors are None
        self.backward_fn = backward_fn  # grad_out -> tuple of grads (or None) per input
        self.name = name


class RemovableHandle:
    """Returned by hook registration; `remove()` unregisters the hook."""

    def __init__(self, hooks: list, hook):
        self._hooks = hooks
        self._hook = hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def unbroadcast(grad, shape):
    """Sum `grad` over the dimensions that broadcasting added or stretched, to get `shape`."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


def _graph_order(root):
    """Non-leaf tensors reachable from `root` in topological order, and how many ops consume each tensor.

    Iterative depth-first post-order, so deep graphs do not hit Python's recursion limit.
    """
    order, consumers = [], {}
    visited = set()
    stack = [(root, False)]
    while stack:
        tensor, expanded = stack.pop()
        if expanded:
            order.append(tensor)
            continue
        # marked when expanded, not when pushed: a tensor pushed earlier by another consumer must
        # still finish before this path's consumers, or the post-order is not topological
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        node = tensor._node
        if node is None:
            continue
        if node.backward_fn is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved tensors "
                "after they have already been freed). Saved intermediate values of the graph are freed "
                "when you call .backward(). Specify retain_graph=True if you need to backward through "
                "the graph a second time.")
        stack.append((tensor, True))
        for inp in node.inputs:
            if inp is None or not inp.requires_grad:
                continue
            consumers[id(inp)] = consumers.get(id(inp), 0) + 1
            if id(inp) not in visited:
                stack.append((inp, False))
    return order, consumers


def _run_tensor_hooks(tensor, grad):
    for hook in tensor._hooks:
        result = hook(grad)
        if result is not None:
            grad = result.data if hasattr(result, "_node") else result
    return grad


def accumulate_grad(leaf, grad) -> None:
    """Add `grad` into `leaf.grad` in place; the first gradient of a pass lands in fresh or attached storage.

    `leaf.grad` is never rebound once it holds an array: a view into someone else's flat buffer stays
    that view. When `.grad` is None but a storage array is attached (`leaf._grad_storage`, set by the
    optimizer's flat buffers), the gradient is copied into it instead of allocating.
    """
    current = leaf._grad
    if current is not None:
        xp = _backend.array_module(current)
        xp.add(current, grad, out=current, casting="unsafe")
        return
    storage = leaf._grad_storage
    if storage is not None and storage.shape == leaf.data.shape:
        xp = _backend.array_module(storage)
        xp.copyto(storage, grad, casting="unsafe")
        leaf._grad = storage
    else:
        xp = _backend.array_module(leaf.data)
        leaf._grad = xp.array(grad, dtype=leaf.data.dtype, copy=True)


def _finish_leaf(leaf, grad) -> None:
    """A leaf's gradient for this pass is complete: hooks, in-place accumulation, post-accumulate hooks."""
    if leaf._hooks:
        grad = _run_tensor_hooks(leaf, grad)
    accumulate_grad(leaf, grad)
    for hook in tuple(leaf._post_accumulate_hooks):
        hook(leaf)


def _seed_grad(root, grad):
    xp = _backend.array_module(root.data)
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError("grad can be implicitly created only for scalar outputs")
        return xp.ones_like(root.data)
    grad = grad.data if hasattr(grad, "_node") else xp.asarray(grad)
    if grad.shape != root.data.shape:
        raise ValueError(f"backward: gradient of shape {tuple(grad.shape)} does not match the "
                         f"tensor's shape {tuple(root.data.shape)}")
    return grad


def backward(root, grad=None, retain_graph: bool = False) -> None:
    """Compute the gradient of `root` with respect to every leaf that requires grad.

    Args:
        root: the Tensor to differentiate (a scalar unless `grad` is given).
        grad: d(objective)/d(root), an array or Tensor of root's shape; defaults to 1 for a scalar.
        retain_graph: keep the saved values so the graph can be walked again.
    """
    if not root.requires_grad:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    grad = _seed_grad(root, grad)
    if root._node is None:
        _finish_leaf(root, grad)
        return
    order, consumers = _graph_order(root)
    pending = {id(root): grad}
    for tensor in reversed(order):
        node = tensor._node
        grad = pending.pop(id(tensor), None)
        if grad is None:  # every consumer returned "no gradient": pass that on
            input_grads = (None,) * len(node.inputs)
        else:
            input_grads = _node_backward(tensor, node, grad, retain_graph)
        for inp, g in zip(node.inputs, input_grads):
            if inp is None or not inp.requires_grad:
                continue
            key = id(inp)
            if g is not None:
                g = unbroadcast(g, inp.data.shape)
                previous = pending.get(key)
                # out-of-place sum: an op's gradient may alias its upstream gradient
                pending[key] = g if previous is None else previous + g
            consumers[key] -= 1
            if consumers[key] == 0 and inp._node is None:
                leaf_grad = pending.pop(key, None)
                if leaf_grad is not None:
                    _finish_leaf(inp, leaf_grad)


def _node_backward(tensor, node, grad, retain_graph):
    """Run the hooks of a non-leaf tensor and its node's backward; free saved values unless retained."""
    if tensor._hooks:
        grad = _run_tensor_hooks(tensor, grad)
    if tensor._retains_grad:
        tensor._grad = grad.copy() if tensor._grad is None else tensor._grad + grad
    input_grads = node.backward_fn(grad)
    if not retain_graph:
        node.backward_fn = None
    return input_grads
