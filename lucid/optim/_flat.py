"""FlatBuffer: the parameters of one (group, device, dtype) in one contiguous array, and their gradients and
optimizer state in arrays of the same layout.

Each parameter's `.data` becomes a view into `data`; its gradient lands in a view into `grad` (backward
writes into the attached storage, see `autograd.accumulate_grad`), and each state array is a view into a
flat state array. An elementwise rule then updates all of them with one pass over the flat arrays, and
the distributed optimizer reduces slices of `grad` in place. Views stay valid as long as nobody rebinds
`.data`; `is_intact()` checks that with one identity test per parameter.
"""

from __future__ import annotations

from .. import _backend


class FlatBuffer:
    """Flat storage for parameters of one device and dtype.

    Args:
        params: the parameters, in order; their current values are copied in.
        pad_to: round the flat length up to a multiple of this (sharding needs equal slices).
    """

    def __init__(self, params, pad_to: int = 1):
        self.params = list(params)
        first = self.params[0].data
        self.device = _backend.device_of(first)
        self.dtype = first.dtype
        self.xp = _backend.array_module(first)
        self.offsets, offset = [], 0
        for p in self.params:
            self.offsets.append(offset)
            offset += p.data.size
        self.numel = offset                                # elements that belong to parameters
        self.size = -(-offset // pad_to) * pad_to if offset else pad_to  # padded length
        self.data = self.xp.zeros(self.size, dtype=self.dtype)
        self.grad = self.xp.zeros(self.size, dtype=self.dtype)
        self.state = {}                                    # name -> flat array of `size`
        self.storage = FullStorage(self)                   # where optimizer state for this buffer lives
        self._data_views = []
        for i, p in enumerate(self.params):
            view = self.view(self.data, i)
            self.xp.copyto(view, p.data)
            p.data = view
            self._data_views.append(view)
        self._grad_views = [self.view(self.grad, i) for i in range(len(self.params))]
        for p, gview in zip(self.params, self._grad_views):
            if p.grad is not None:
                self.xp.copyto(gview, p.grad)
                p._grad = gview
            p._grad_storage = gview

    def span(self, i: int) -> tuple:
        """(start, stop) of parameter i in the flat arrays."""
        return self.offsets[i], self.offsets[i] + self.params[i].data.size

    def view(self, flat, i: int):
        """Parameter i's region of a flat array, in the parameter's shape."""
        start, stop = self.span(i)
        return flat[start:stop].reshape(self.params[i].data.shape)

    def is_intact(self) -> bool:
        """True while every parameter's `.data` is still the view this buffer gave it."""
        return all(p.data is view for p, view in zip(self.params, self._data_views))

    def gather_grads(self) -> list:
        """Make every present gradient a view into `grad`; return which parameters have one.

        A gradient the user assigned (any array of the right shape and dtype) is copied in, so the
        flat pass sees it.
        """
        present = []
        for p, gview in zip(self.params, self._grad_views):
            grad = p._grad
            if grad is None:
                present.append(False)
                continue
            if grad is not gview:
                self.xp.copyto(gview, grad)
                p._grad = gview
            present.append(True)
        return present

    def zero_grad(self, set_to_none: bool) -> None:
        """Reset gradients: to None (the storage stays attached) or to zeros in one fill."""
        if set_to_none:
            for p in self.params:
                p._grad = None
        else:
            self.grad.fill(0)
            for p, gview in zip(self.params, self._grad_views):
                p._grad = gview

    def state_array(self, name: str):
        """The flat array for state `name`, allocated (zeros) on first use."""
        flat = self.state.get(name)
        if flat is None:
            flat = self.state[name] = self.xp.zeros(self.size, dtype=self.dtype)
        return flat

    def detach(self) -> None:
        """Stop routing these parameters' gradients into this buffer (before a rebuild)."""
        for p, gview in zip(self.params, self._grad_views):
            if p._grad_storage is gview:
                p._grad_storage = None
            if p._grad is gview:
                p._grad = gview.copy()


class FullStorage:
    """Optimizer state for all of a FlatBuffer: flat state arrays, parameter-shaped views into them.

    The sharded optimizer swaps in a storage with the same three methods that keeps only one slice
    of the flat range (`distributed.strategies.ShardStorage`); the optimizer's step and state loading
    go through this interface, so they work unchanged on a shard.
    """

    def __init__(self, flat: FlatBuffer):
        self.flat = flat
        self.span = (0, flat.size)  # the flat range [start, stop) whose state is kept here

    def view(self, name: str, i: int):
        """Parameter i's state `name`: a view into the flat state array, in the parameter's shape."""
        return self.flat.view(self.flat.state_array(name), i)

    def load(self, name: str, i: int, value):
        """Copy a full, parameter-shaped `value` into parameter i's storage; return the view."""
        view = self.view(name, i)
        self.flat.xp.copyto(view, _backend.to_device(value, self.flat.device).reshape(view.shape),
                            casting="unsafe")
        return view

    def arrays(self, names, start: int, stop: int) -> dict:
        """The state arrays for flat range [start, stop), which lies inside `span`."""
        return {name: self.flat.state[name][start:stop] for name in names}
