"""Parameter: a Tensor that a Module registers as learnable (requires_grad=True by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..tensor import Tensor

if TYPE_CHECKING:
    from .._typing import ArrayLike, Device, DTypeLike


class Parameter(Tensor):
    """A learnable tensor. Accepts lists, numbers, arrays and Tensors: `nn.Parameter([1.0, 2.0, 3.0])`.

    A Tensor or array argument is shared, not copied (as torch.nn.Parameter shares storage).

    Args:
        data: the initial value.
        requires_grad: whether backward fills `.grad` (True by default).
    """

    __slots__ = ()

    def __init__(self, data: ArrayLike | Tensor | None = None, requires_grad: bool = True,
                 dtype: DTypeLike = None, device: Device | None = None) -> None:
        if data is None:
            data = []
        super().__init__(data, requires_grad=requires_grad, dtype=dtype, device=device)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
