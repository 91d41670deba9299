"""SyncBatchNorm: batch normalization whose training statistics come from every rank's batch (torch's).

In training each rank sums its batch per channel and the sums are added up over all ranks (gathered
and added in rank order, so every rank holds the same bits): the mean first, then
the sum of squared deviations from that mean (two passes, as one process computes them), so every
rank normalizes with the statistics of the whole global batch and updates identical running
statistics. The sums are differentiable: backward sums their gradients over all ranks too, which is
what makes each rank's input gradient the one a single process would compute on the whole batch.
In evaluation, or on one rank, it is plain batch normalization. Ranks inside `distributed.join()`
contribute empty batches.
"""

from __future__ import annotations

import weakref

import numpy as np

import lucid
from lucid import nn
from lucid.nn import functional as F

from . import comm as _comm
from . import joining
from .control import Call


class SyncBatchNorm(nn.BatchNorm1d):
    """Batch normalization over dimension 1 of (N, C, *) input, with statistics over all ranks.

    Args: torch's (`num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
    process_group=None`); `process_group` is a `distributed.Communicator` (default: the world). It is
    a BatchNorm1d (parameters, buffers, state dict and `reset_*` are BatchNorm's) that takes any
    input of two dimensions or more.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group
        self._owners = weakref.WeakKeyDictionary()  # communicator -> this module's joinable id on it

    def _check_input_dim(self, input) -> None:
        if input.ndim < 2:
            raise ValueError(f"expected at least 2D input (got {input.ndim}D input)")

    def forward(self, input):
        self._check_input_dim(input)
        comm = self.process_group or _comm.world()
        if not (self.training and comm.size > 1):
            factor = self._running_factor()
            use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
            keep_running = not self.training or self.track_running_stats
            return F.batch_norm(input, self.running_mean if keep_running else None,
                                self.running_var if keep_running else None, self.weight, self.bias,
                                use_batch_stats, factor, self.eps)
        if comm not in self._owners:  # the first synchronized forward: known to join() from now on
            self._owners[comm] = joining.register(comm, self)
        return self._synchronized(input, comm, self._running_factor())

    def _running_factor(self, training=None) -> float:
        """The weight of this batch in the running statistics (counting the batch, in training)."""
        factor = 0.0 if self.momentum is None else self.momentum
        if (self.training if training is None else training) and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        return factor

    def _synchronized(self, x, comm, factor):
        """Normalize with the global batch's statistics; update the running ones with `factor`."""
        channels = x.shape[1]
        if channels != self.num_features:
            raise ValueError(f"running_mean should contain {channels} elements not {self.num_features}")
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, channels) + (1,) * (x.ndim - 2)
        count = lucid.Tensor(np.array([x.data.size // max(channels, 1)], dtype=x.data.dtype))
        mean_call = Call("SyncBatchNorm mean", owner=self._owners[comm], shadow=True)
        totals = _summed(lucid.cat([x.sum(axis=axes), count]), comm, mean_call)
        n = float(totals.data[channels])
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got {int(n)} values per "
                             f"channel over all ranks (input size {list(x.shape)} here)")
        mean = totals[:channels] * (1.0 / n)
        centered = x - mean.reshape(shape)
        var = _summed((centered * centered).sum(axis=axes), comm, Call("SyncBatchNorm variance")) * (1.0 / n)
        out = centered * (1.0 / (var + self.eps).sqrt()).reshape(shape)
        if self.weight is not None:
            out = out * self.weight.reshape(shape)
        if self.bias is not None:
            out = out + self.bias.reshape(shape)
        if self.running_mean is not None:
            keep = 1.0 - factor
            self.running_mean.data *= keep
            self.running_mean.data += factor * mean.data.astype(self.running_mean.data.dtype, copy=False)
            self.running_var.data *= keep
            self.running_var.data += factor * (var.data * (n / (n - 1))).astype(self.running_var.data.dtype, copy=False)
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """`module` with every BatchNorm1d/2d replaced by a SyncBatchNorm holding the same parameters and
        running statistics (the module itself is returned converted if it is a batch norm)."""
        converted = module
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and not isinstance(module, cls):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group)
            converted.weight, converted.bias = module.weight, module.bias
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
            converted.train(module.training)
        for name, child in module.named_children():
            converted.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return converted

    # ------------------------------------------------------------------ distributed.join()

    def check_joinable(self) -> None:
        """Any time: a forward pass leaves nothing pending."""

    def shadow(self, comm, kind, call) -> None:
        """On a joined rank: a training forward pass over an empty batch, so the running statistics stay
        equal to the other ranks'."""
        empty = lucid.Tensor(np.zeros((0, self.num_features), dtype=self.running_dtype()))
        self._synchronized(empty, comm, self._running_factor(training=True))

    def joined(self, last: int) -> None:
        """Nothing to settle: the running statistics were updated on every rank alike."""

    def running_dtype(self):
        for tensor in (self.running_mean, self.weight):
            if tensor is not None:
                return tensor.data.dtype
        return lucid.get_default_dtype()


def _summed(tensor, comm, call: Call):
    """`tensor` summed over all ranks, differentiably: its gradient is summed over all ranks too.

    Every rank's part is gathered and added up in rank order, so every rank gets the same bits (an MPI
    all-reduce may round differently on different ranks) and a joined rank simply has no part.
    """
    reduced = _sum_in_rank_order(tensor.data, comm, call)
    if not tensor.requires_grad:
        return lucid.Tensor(reduced)
    path = tensor * 1.0  # a node of its own: its hook sees the gradient of this sum only
    path.register_hook(lambda grad: _sum_in_rank_order(grad, comm, Call(call.name + " backward")))
    # exactly the sum's bits (path - its own value is exactly 0), with the gradient flowing into path
    return lucid.Tensor(reduced) + (path - lucid.Tensor(tensor.data))


def _sum_in_rank_order(array, comm, call: Call):
    parts = comm.allgather_rows(array.reshape(1, -1), call=call)
    return parts.sum(axis=0).reshape(array.shape)
