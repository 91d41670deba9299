"""Tensor: an array (`data`), its gradient (`grad`) and its place in the autograd graph.

`data` is a plain numpy.ndarray (cupy.ndarray on the GPU) and `grad` an array of the same shape, dtype
and device, or None; so optimizer code such as `param.data -= lr * param.grad` works as written.
Operators and methods delegate to `lucid.ops`, where each op's forward sits beside its backward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import _backend, autograd, dtypes
from .autograd import RemovableHandle

if TYPE_CHECKING:
    from ._typing import ArrayLike, Device, DTypeLike

_NO_HOOKS = ()


def _as_array(data, dtype, device):
    """Build the array for a new Tensor: arrays keep their dtype, Python numbers take the default."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        dtype = dtypes.to_dtype(dtype)
    if isinstance(data, np.generic) and data.dtype.kind in "biuf":
        data = np.asarray(data)  # a NumPy scalar keeps its dtype, as an array does (and as in torch)
    if isinstance(data, np.ndarray) or _backend.is_gpu_array(data):
        arr = data if dtype is None else data.astype(dtype, copy=False)
    else:
        arr = np.asarray(data)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"cannot make a Tensor from data of type {type(data).__name__} "
                             f"(numpy dtype {arr.dtype})")
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        elif arr.dtype.kind == "f":
            arr = arr.astype(dtypes.get_default_dtype(), copy=False)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64, copy=False)
    if device is not None:
        arr = _backend.to_device(arr, device)
    return arr


class Tensor:
    """An n-dimensional array that can record the operations applied to it and differentiate them.

    Args:
        data: a list, number, numpy/cupy array or Tensor. Arrays keep their dtype (float64 stays
            float64); Python numbers and lists take the default dtype (float32 unless changed with
            `lucid.set_default_dtype`) or int64 for integers.
        requires_grad: record operations on this tensor so `backward()` can fill its `.grad`.
        dtype: force a dtype (`lucid.float64`, `"float32"`, `numpy.float16`, ...).
        device: "cpu" or "gpu"; by default where `data` already lives (the CPU for Python data).
    """

    __slots__ = ("data", "_grad", "requires_grad", "_node", "_hooks", "_post_accumulate_hooks",
                 "_grad_storage", "_retains_grad", "__weakref__")
    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected operators

    def __init__(self, data: ArrayLike | Tensor, requires_grad: bool = False, dtype: DTypeLike = None,
                 device: Device | None = None) -> None:
        if device is not None:
            device = _backend.normalize_device(device)
        arr = _as_array(data, dtype, device)
        if requires_grad and arr.dtype.kind != "f":
            raise RuntimeError("Only Tensors of floating point dtype can require gradients")
        self.data = arr
        self._grad = None
        self.requires_grad = bool(requires_grad)
        self._node = None
        self._hooks = _NO_HOOKS
        self._post_accumulate_hooks = _NO_HOOKS
        self._grad_storage = None
        self._retains_grad = False

    @classmethod
    def _wrap(cls, data, requires_grad: bool = False) -> "Tensor":
        """Wrap an array produced by an op, skipping validation (the hot path)."""
        out = Tensor.__new__(Tensor)
        out.data = data
        out._grad = None
        out.requires_grad = requires_grad
        out._node = None
        out._hooks = _NO_HOOKS
        out._post_accumulate_hooks = _NO_HOOKS
        out._grad_storage = None
        out._retains_grad = False
        return out

    # ------------------------------------------------------------------ gradient

    @property
    def grad(self):
        """The accumulated gradient: an array like `data`, or None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is None:
            self._grad = None
            return
        if isinstance(value, Tensor):
            value = value.data
        if not (isinstance(value, np.ndarray) or _backend.is_gpu_array(value)):
            raise TypeError(f"assigned grad expected to be an array or None but got "
                            f"{type(value).__name__}")
        if value.shape != self.data.shape:
            raise ValueError(f"assigned grad has data of a different size: grad shape "
                             f"{tuple(value.shape)}, tensor shape {tuple(self.data.shape)}")
        if value.dtype != self.data.dtype:
            raise ValueError(f"assigned grad has data of a different type: grad dtype {value.dtype}, "
                             f"tensor dtype {self.data.dtype}")
        if _backend.device_of(value) != _backend.device_of(self.data):
            raise ValueError(f"assigned grad has data located on a different device: grad on "
                             f"{_backend.device_of(value)}, tensor on {_backend.device_of(self.data)}")
        self._grad = value

    @property
    def is_leaf(self) -> bool:
        """True for tensors created by the user rather than by an op on tensors that require grad."""
        return self._node is None

    @property
    def grad_fn(self):
        """The autograd node that produced this tensor (None for leaves)."""
        return self._node

    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into the `.grad` of every leaf that requires grad."""
        autograd.backward(self, grad, retain_graph=retain_graph)

    def register_hook(self, hook) -> RemovableHandle:
        """Call `hook(grad)` when this tensor's gradient is computed; a non-None return replaces it."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._hooks is _NO_HOOKS:
            self._hooks = []
        self._hooks.append(hook)
        return RemovableHandle(self._hooks, hook)

    def register_post_accumulate_grad_hook(self, hook) -> RemovableHandle:
        """Call `hook(tensor)` once per backward pass, right after this leaf's gradient is accumulated."""
        if not self.is_leaf:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        if self._post_accumulate_hooks is _NO_HOOKS:
            self._post_accumulate_hooks = []
        self._post_accumulate_hooks.append(hook)
        return RemovableHandle(self._post_accumulate_hooks, hook)

    def retain_grad(self) -> None:
        """Keep the gradient of a non-leaf tensor in `.grad` after backward."""
        if self.is_leaf:
            return
        self._retains_grad = True

    def zero_grad(self) -> None:
        """Drop the gradient (`grad = None`)."""
        self._grad = None

    def detach(self) -> "Tensor":
        """A tensor sharing this data, cut from the graph."""
        return Tensor._wrap(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Set `requires_grad` in place and return self."""
        if requires_grad and self.data.dtype.kind != "f":
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        self.requires_grad = bool(requires_grad)
        return self

    # ------------------------------------------------------------------ array facts

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> str:
        return _backend.device_of(self.data)

    def size(self, dim=None):
        """The shape (PyTorch's `size()`), or one dimension of it."""
        return self.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def dim(self) -> int:
        return self.data.ndim

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    # ------------------------------------------------------------------ conversion

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (the same array on the CPU, a host copy from the GPU)."""
        return _backend.to_host(self.data)

    def item(self):
        """The single value as a Python number."""
        if self.data.size != 1:
            raise RuntimeError(f"a Tensor with {self.data.size} elements cannot be converted to Scalar")
        return self.data.reshape(()).item()

    def tolist(self):
        return _backend.to_host(self.data).tolist()

    def to(self, device=None, dtype=None) -> "Tensor":
        """This tensor on `device` and/or as `dtype` (self when nothing changes); differentiable."""
        if isinstance(device, np.dtype) or (device is not None and not isinstance(device, str)):
            device, dtype = None, device
        out = self
        if dtype is not None:
            out = _ops.astype(out, dtypes.to_dtype(dtype))
        if device is not None:
            out = _ops_device.to_device(out, _backend.normalize_device(device))
        return out

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def gpu(self) -> "Tensor":
        return self.to("gpu")

    def cuda(self) -> "Tensor":
        """PyTorch's spelling of `gpu()`."""
        return self.to("gpu")

    def astype(self, dtype) -> "Tensor":
        return self.to(dtype=dtype)

    def float(self) -> "Tensor":
        return self.to(dtype=dtypes.float32)

    def double(self) -> "Tensor":
        return self.to(dtype=dtypes.float64)

    def half(self) -> "Tensor":
        return self.to(dtype=dtypes.float16)

    def long(self) -> "Tensor":
        return self.to(dtype=dtypes.int64)

    def clone(self) -> "Tensor":
        """A copy of the data that stays in the graph."""
        return _ops.clone(self)

    def __array__(self, dtype=None, copy=None):
        arr = _backend.to_host(self.data)
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def __repr__(self) -> str:
        body = np.array2string(_backend.to_host(self.data), separator=", ", precision=4,
                               prefix="Tensor(")
        extras = []
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self.data.dtype != dtypes.get_default_dtype() and self.data.dtype != np.int64:
            extras.append(f"dtype={self.data.dtype}")
        if self._node is not None:
            extras.append(f"grad_fn=<{self._node.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "Tensor(" + ", ".join([body] + extras) + ")"

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self.data.size} values is ambiguous")
        return bool(self.data.reshape(()))

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.data.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    __hash__ = object.__hash__

    # ------------------------------------------------------------------ operators

    def __add__(self, other): return _ops.add(self, other)
    def __radd__(self, other): return _ops.add(other, self)
    def __sub__(self, other): return _ops.sub(self, other)
    def __rsub__(self, other): return _ops.sub(other, self)
    def __mul__(self, other): return _ops.mul(self, other)
    def __rmul__(self, other): return _ops.mul(other, self)
    def __truediv__(self, other): return _ops.div(self, other)
    def __rtruediv__(self, other): return _ops.div(other, self)
    def __pow__(self, other): return _ops.pow(self, other)
    def __rpow__(self, other): return _ops.pow(other, self)
    def __matmul__(self, other): return _ops.matmul(self, _as_tensor(other, self))
    def __rmatmul__(self, other): return _ops.matmul(_as_tensor(other, self), self)
    def __neg__(self): return _ops.neg(self)
    def __pos__(self): return self
    def __abs__(self): return _ops.abs(self)
    def __eq__(self, other): return _ops.eq(self, other)
    def __ne__(self, other): return _ops.ne(self, other)
    def __lt__(self, other): return _ops.lt(self, other)
    def __le__(self, other): return _ops.le(self, other)
    def __gt__(self, other): return _ops.gt(self, other)
    def __ge__(self, other): return _ops.ge(self, other)
    def __getitem__(self, index): return _ops.getitem(self, index)

    def __setitem__(self, index, value):
        if self.requires_grad and autograd.is_grad_enabled():
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place "
                               "operation (write under lucid.no_grad())")
        value = value.data if isinstance(value, Tensor) else value
        if isinstance(value, np.ndarray) or _backend.is_gpu_array(value):  # onto this tensor's device
            value = _backend.to_device(value, _backend.device_of(self.data))
        self.data[_ops_shape.unwrap_index(index, self.data)] = value

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # in-place updates on the data (outside the graph, e.g. for initialisation and optimizers)
    def _inplace(self, fn):
        if self.requires_grad and autograd.is_grad_enabled() and self.is_leaf:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        fn(self.data)
        return self

    def add_(self, other, alpha=1):
        o = other.data if isinstance(other, Tensor) else other
        return self._inplace(lambda d: d.__iadd__(o * alpha if alpha != 1 else o))

    def sub_(self, other, alpha=1):
        o = other.data if isinstance(other, Tensor) else other
        return self._inplace(lambda d: d.__isub__(o * alpha if alpha != 1 else o))

    def mul_(self, other):
        o = other.data if isinstance(other, Tensor) else other
        return self._inplace(lambda d: d.__imul__(o))

    def div_(self, other):
        o = other.data if isinstance(other, Tensor) else other
        return self._inplace(lambda d: d.__itruediv__(o))

    def fill_(self, value):
        return self._inplace(lambda d: d.fill(value))

    def zero_(self):
        return self.fill_(0)

    def copy_(self, src):
        """Copy `src` (a Tensor, array or number, on any device; broadcast) into this tensor's data."""
        src = _backend.to_device(src.data if isinstance(src, Tensor) else src, _backend.device_of(self.data))
        xp = _backend.array_module(self.data)
        return self._inplace(lambda d: xp.copyto(d, src, casting="unsafe"))

    # ------------------------------------------------------------------ methods delegating to ops

    def sum(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _ops.sum(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def mean(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _ops.mean(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def var(self, axis=None, keepdims=False, *, dim=None, keepdim=None, correction=1, unbiased=None):
        return _ops.var(self, axis, keepdims, dim=dim, keepdim=keepdim, correction=correction,
                        unbiased=unbiased)

    def std(self, axis=None, keepdims=False, *, dim=None, keepdim=None, correction=1, unbiased=None):
        return self.var(axis, keepdims, dim=dim, keepdim=keepdim, correction=correction,
                        unbiased=unbiased).sqrt()

    def max(self, *args, axis=None, keepdims=False, dim=None, keepdim=None):
        """Values with `axis=` (NumPy); `(values, indices)` with `dim` (PyTorch); see `lucid.max`."""
        return _ops.max(self, *args, axis=axis, keepdims=keepdims, dim=dim, keepdim=keepdim)

    def min(self, *args, axis=None, keepdims=False, dim=None, keepdim=None):
        """Values with `axis=` (NumPy); `(values, indices)` with `dim` (PyTorch); see `lucid.min`."""
        return _ops.min(self, *args, axis=axis, keepdims=keepdims, dim=dim, keepdim=keepdim)

    def amax(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _ops.amax(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def amin(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _ops.amin(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def argmax(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _ops.argmax(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def argmin(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _ops.argmin(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def logsumexp(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _ops.logsumexp(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def exp(self): return _ops.exp(self)
    def log(self): return _ops.log(self)
    def sqrt(self): return _ops.sqrt(self)
    def abs(self): return _ops.abs(self)
    def tanh(self): return _ops.tanh(self)
    def sigmoid(self): return _ops.sigmoid(self)
    def relu(self): return _ops.relu(self)
    def sin(self): return _ops.sin(self)
    def cos(self): return _ops.cos(self)
    def sign(self): return _ops.sign(self)
    def pow(self, exponent): return _ops.pow(self, exponent)
    def square(self): return _ops.mul(self, self)
    def matmul(self, other): return self @ other

    # PyTorch's method spellings of the comparison operators (boolean tensors, no gradient)
    def eq(self, other): return _ops.eq(self, other)
    def ne(self, other): return _ops.ne(self, other)
    def lt(self, other): return _ops.lt(self, other)
    def le(self, other): return _ops.le(self, other)
    def gt(self, other): return _ops.gt(self, other)
    def ge(self, other): return _ops.ge(self, other)

    def clip(self, min=None, max=None):
        return _ops.clip(self, min, max)

    clamp = clip

    def reshape(self, *shape): return _ops.reshape(self, *shape)
    def view(self, *shape): return _ops.reshape(self, *shape)
    def view_as(self, other): return _ops.reshape(self, other.shape)
    def reshape_as(self, other): return _ops.reshape(self, other.shape)
    def expand_as(self, other): return _ops.expand(self, other.shape)
    def type_as(self, other): return self.to(dtype=other.dtype)
    def transpose(self, *dims): return _ops.transpose(self, *dims)
    def permute(self, *dims): return _ops.permute(self, *dims)
    def squeeze(self, axis=None, *, dim=None): return _ops.squeeze(self, axis, dim=dim)
    def unsqueeze(self, axis=None, *, dim=None): return _ops.unsqueeze(self, axis, dim=dim)
    def flatten(self, start_dim=0, end_dim=-1): return _ops.flatten(self, start_dim, end_dim)
    def expand(self, *shape): return _ops.expand(self, *shape)

    @property
    def T(self):
        return _ops.permute(self, tuple(reversed(range(self.ndim))))


def _as_tensor(value, like: Tensor) -> Tensor:
    return value if isinstance(value, Tensor) else Tensor(value, dtype=like.dtype, device=like.device)


from . import ops as _ops  # noqa: E402  (ops import Tensor from this module)
from .ops import device as _ops_device  # noqa: E402
from .ops import shape as _ops_shape  # noqa: E402
