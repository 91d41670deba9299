"""DistributedOptimizer: wraps any lucid optimizer and averages (or sums) gradients across ranks.

Gradients live in flat buffers (the wrapped optimizer's own, or the strategy's for a plain optimizer);
buckets are slices of them (`buckets.py`). Each parameter's post-accumulate-grad hook marks it ready;
a bucket whose gradients are all ready starts its reduction at once, in bucket order, so
communication overlaps the rest of backward. `step()` waits for the buckets, then steps. Where the
optimizer state lives, how a bucket is reduced, what each rank steps and how parameters come back is
the business of one strategy (`strategies/`): replicated (all-reduce, every rank steps everything),
or with `shard_state=True` sharded optimizer state, ZeRO stage 1 (reduce-scatter, each rank steps
what it owns, the parameters go back to every rank): element slices for an elementwise optimizer,
whole parameters for one with a plain step. The wrapper never asks which.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

from lucid import autograd
from lucid.tensor import Tensor

from . import comm as _comm
from . import joining as _joining
from . import strategies
from .agreement import LayoutMismatchError, check_same_layout
from .arguments import check_arguments, check_predivide, parameter_names
from .buckets import Readiness, plan_buckets
from .compression import Compression
from .control import Call, JoinedError
from .joinable import JoinableOptimizer

__all__ = ["DistributedOptimizer", "LayoutMismatchError", "check_same_layout"]


class DistributedOptimizer(JoinableOptimizer):
    """Data-parallel training over MPI ranks for any lucid optimizer (Horovod's interface).

    Args:
        optimizer: the lucid optimizer to wrap; it is used as it is, state included.
        named_parameters: (name, Parameter) pairs covering the optimizer's parameters, used in error
            messages and to check that ranks agree; default names are "group.index".
        op: `distributed.Average` (default) or `distributed.Sum`.
        compression: `Compression.none` or `Compression.fp16` (gradients travel as float16).
        backward_passes_per_step: backward passes accumulated locally before one reduction.
        bucket_cap_mb: the most MiB of gradients one all-reduce carries.
        shard_state: partition the optimizer state across ranks (ZeRO stage 1: optimizer state only;
            every rank keeps all parameters and a full gradient buffer). Element slices for an
            elementwise optimizer, whole parameters (balanced by state bytes) for one with a plain
            `step`; LBFGS cannot be sharded.
        comm: a `Communicator` (default: `distributed.init()`).
        gradient_predivide_factor: with op=Average, gradients are divided by this factor before the
            sum and by (ranks / factor) after it (Horovod's; 1.0: the plain average).
    """

    def __init__(self, optimizer, named_parameters=None, *, op=_comm.Average, compression=Compression.none,
                 backward_passes_per_step: int = 1, bucket_cap_mb: float = 25.0, shard_state: bool = False,
                 comm=None, gradient_predivide_factor: float = 1.0):
        if isinstance(optimizer, DistributedOptimizer):
            raise TypeError("the optimizer is already a DistributedOptimizer")
        check_arguments(optimizer, op, compression, backward_passes_per_step, bucket_cap_mb)
        self.gradient_predivide_factor = check_predivide(gradient_predivide_factor, op)
        if shard_state:
            strategies.check_shardable(optimizer)
        self.optimizer = optimizer
        self.comm = comm if comm is not None else _comm.init()
        self.op = _comm.ReduceOp(op)
        self.compression = compression
        self.backward_passes_per_step = int(backward_passes_per_step)
        self.bucket_cap_mb = float(bucket_cap_mb)
        self.shard_state = bool(shard_state)
        self._names = parameter_names(optimizer, named_parameters)
        self._user_named = named_parameters is not None
        self._requests = {}
        self._synchronized = None  # None, "user" or "internal": who reduced this step's gradients
        self._should_synchronize = True
        self._strategy = None
        self._sync_enabled = True   # False inside no_sync()
        self._shadowing = False     # True while a joined rank shadows the others' presence exchange
        self._consolidated = None   # consolidate_state_dict()'s full dict, on its rank, until the next step
        self._steps = 0
        self._owner = _joining.register(self.comm, self)
        self._build()
        self._hooks = []
        if self.comm.size > 1:
            self._hooks = [p.register_post_accumulate_grad_hook(self._on_gradient)
                           for group in optimizer.param_groups for p in group["params"]]

    # ------------------------------------------------------------------ the wrapped optimizer's face

    @property
    def param_groups(self) -> list:
        """The wrapped optimizer's own list: lr schedulers drive it unchanged."""
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    @property
    def defaults(self) -> dict:
        return self.optimizer.defaults

    @property
    def _step_count(self) -> int:
        return self.optimizer._step_count

    @property
    def flat_buffers(self) -> list:
        """The flat buffers this optimizer reduces and steps, in order (read them; do not modify them).

        Each has `params`, `span(i)` (parameter i's [start, stop) in the flat arrays) and `storage`, whose
        `span` is the flat range whose elementwise optimizer state this rank holds (all of it unless
        the state is element-sharded) and whose `view(name, i)` is parameter i's part of state `name`.
        """
        return list(self._flats)

    @property
    def strategy(self):
        """Where the optimizer state lives (`strategies.ReplicatedState`, `ElementShardedState` or
        `ParameterShardedState`): its `state_bytes()` is what this rank holds, its `checkpoint_view()`
        what distributed.checkpoint saves and loads here."""
        return self._strategy

    def register_step_pre_hook(self, hook):
        return self.optimizer.register_step_pre_hook(hook)

    def register_step_post_hook(self, hook):
        return self.optimizer.register_step_post_hook(hook)

    def __repr__(self) -> str:
        return (f"DistributedOptimizer({type(self.optimizer).__name__}, ranks={self.comm.size}, "
                f"op={self.op.name}, compression={self.compression!r}, buckets={len(self._buckets)}, "
                f"backward_passes_per_step={self.backward_passes_per_step}, shard_state={self.shard_state})")

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        """Plan a strategy and buckets over its flat buffers; check that every rank has the same layout.

        Called at wrap time and, on every rank together, when a rank rebound a parameter's `.data`
        (the flat buffers were rebuilt) or a group was added. The old strategy hands its state over
        (gathered first when it was sharded), so the state survives the new layout.
        """
        handover = self._strategy.release() if self._strategy is not None else None
        strategy = strategies.create(self, self.shard_state)
        self._flats = strategy.flats
        self._buckets = plan_buckets(self._flats, int(self.bucket_cap_mb * 2 ** 20))
        self._readiness = Readiness(self._buckets, self.backward_passes_per_step)
        self._bucket_params = [p for b in self._buckets for p in b.params]
        check_same_layout(self.comm, self._layout())
        strategy.start(handover)
        self._strategy = strategy

    def _layout(self) -> list:
        """What must match across ranks: the options, then each parameter in bucket order."""
        names = {id(p): n for p, n in self._names.items()}
        options = ("options", f"op={self.op.name}", f"compression={self.compression.name}",
                   f"backward_passes_per_step={self.backward_passes_per_step}",
                   f"bucket_cap_mb={self.bucket_cap_mb}", f"shard_state={self.shard_state}",
                   f"gradient_predivide_factor={self.gradient_predivide_factor}")
        return [options] + [(names[id(p)], tuple(p.shape), p.dtype.name) for p in self._bucket_params]

    # ------------------------------------------------------------------ communication

    def call(self, name: str, bucket: int = -1, args: tuple = (), shadow: bool = False) -> Call:
        """What this optimizer's collectives say they are (control messages, stall reports, join)."""
        return Call(name, self._steps, bucket, self._owner, args, shadow)

    def scale_factors(self) -> tuple:
        """(prescale, postscale) of the gradient reduction: Horovod's split of gradient_predivide_factor."""
        factor = self.gradient_predivide_factor
        return (1.0 / factor, factor) if factor != 1.0 else (1.0, 1.0)

    def _on_gradient(self, param) -> None:
        """Post-accumulate-grad hook: launch every bucket this gradient completes (in bucket order)."""
        if not self._sync_enabled:
            return  # no_sync(): this backward only accumulates
        for index in self._readiness.mark(param):
            self._launch(self._buckets[index])
        if self._requests:
            self.comm.progress()  # lets MPI advance the launched buckets while backward goes on

    def _launch(self, bucket) -> None:
        """Start the reduction of one bucket."""
        self._synchronized = None
        self._requests[bucket.index] = self._strategy.launch(bucket)

    def wire_scale(self) -> float:
        """The factor gradients get before a compressed (or sharded) sum: the predivide, else 1/size."""
        if self.gradient_predivide_factor != 1.0:
            return 1.0 / self.gradient_predivide_factor
        return 1.0 / self.comm.size if self.op is _comm.Average else 1.0

    def rescale(self, reduced, contributors) -> None:
        """After a sum of `wire_scale()`d gradients: the rest of the average over `contributors` ranks
        (None: all of them)."""
        contributors = contributors or self.comm.size
        factor = self.gradient_predivide_factor / contributors if self.gradient_predivide_factor != 1.0 else (
            self.comm.size / contributors if self.op is _comm.Average else 1.0)
        if factor != 1.0:
            reduced *= reduced.dtype.type(factor)

    def synchronize(self) -> None:
        """Finish reducing this step's gradients (every rank must call it; `step()` does)."""
        self._reduce("user")

    def _reduce(self, who: str) -> None:
        if self._synchronized:
            return
        if self.comm.size > 1:
            present = np.array([p.grad is not None for p in self._bucket_params]
                               + [not all(f.is_intact() for f in self._flats)], dtype=np.uint8)
            if self._shadowing:
                present[:] = 0  # a joined rank contributes no gradient
            for index in self._readiness.remaining():
                self._launch(self._fill_missing(self._buckets[index]))
            # queued behind the last bucket, not after waiting for it: its control message and its few
            # bytes travel while the gradients do
            presence, anywhere = self.comm.iallreduce_max(present, call=self.call("gradient presence", shadow=True))
            for bucket in self._buckets:
                self._strategy.finish(bucket, self._requests.pop(bucket.index))
            presence.wait()
            for p, seen in zip(self._bucket_params, anywhere[:-1]):
                if not seen:
                    p.grad = None  # no rank computed it: leave it out of the step, as one process would
            if anywhere[-1]:
                self._build()  # some rank rebound a parameter's .data: everyone re-plans, together
        elif not all(f.is_intact() for f in self._flats):
            self._build()  # one process: re-plan too, or clip_grad_norm_ would read the old buffers
        self._readiness.reset()
        self._synchronized = who

    def _fill_missing(self, bucket):
        """Count a parameter without a gradient as a zero gradient (as DDP does), so ranks stay in step."""
        for i, p in enumerate(bucket.params, bucket.first):
            if p.grad is None:
                view = bucket.flat.view(bucket.flat.grad, i)
                view.fill(0)
                p.grad = view
        return bucket

    @contextlib.contextmanager
    def no_sync(self):
        """Inside this block backward passes only accumulate gradients locally (DDP's no_sync()).

        The first backward pass after the block reduces the accumulated sum, so k - 1 passes inside and
        one outside equal `backward_passes_per_step=k`.
        """
        previous, self._sync_enabled = self._sync_enabled, False
        try:
            yield
        finally:
            self._sync_enabled = previous

    @contextlib.contextmanager
    def skip_synchronize(self):
        """Inside this block `step()` does not reduce: use after calling `synchronize()` yourself."""
        self._should_synchronize = False
        try:
            yield
        finally:
            self._should_synchronize = True

    # ------------------------------------------------------------------ stepping

    def step(self, closure=None):
        """Reduce the gradients (unless already done), then run the wrapped optimizer's step."""
        if closure is not None and self.optimizer.requires_closure:
            if self.comm.joined_ranks():
                raise JoinedError(f"{type(self.optimizer).__name__} evaluates its closure several times a step, "
                                  f"which ranks {list(self.comm.joined_ranks())} in join() cannot shadow")
            # LBFGS evaluates the closure itself, several times a step: each evaluation must be reduced
            return self.optimizer.step(self._reducing(closure))
        loss = None
        if closure is not None:
            with autograd.enable_grad():
                loss = closure()
        if self._should_synchronize:
            if self._synchronized == "user":
                warnings.warn("optimizer.step() called without optimizer.skip_synchronize() context after "
                              "optimizer.synchronize(). This can cause training slowdown.", stacklevel=2)
            self._reduce("internal")
        if self._announce("step"):
            self._share_hyperparameters()
        self._local_step()
        return loss

    def _local_step(self) -> None:
        """The wrapped optimizer's step on the reduced gradients (this rank's shard, then an all-gather)."""
        self._consolidated = None
        self._strategy.step()
        self._steps += 1
        self._synchronized = None

    def _reducing(self, closure):
        """`closure`, followed by the reduction of its gradients and of its loss (so that every rank's
        line search sees the same numbers and takes the same branches)."""
        def evaluate():
            loss = closure()
            self._reduce("internal")
            self._synchronized = None  # the next evaluation's gradients are new
            if self.comm.size > 1 and loss is not None:
                value = np.array([float(loss)], dtype=np.float64)
                self.comm.allreduce(value, self.op, call=self.call("closure loss"))
                loss = Tensor(value[0])
            return loss
        return evaluate

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset gradients; refused while reductions are in flight (they read the gradient buffers)."""
        if self._requests:
            raise RuntimeError("optimizer.zero_grad() was called after loss.backward() but before "
                               "optimizer.step() or optimizer.synchronize(). This is prohibited as it can "
                               "cause a race condition.")
        self._readiness.reset()
        self.optimizer.zero_grad(set_to_none)

    def clip_grad_norm_(self, max_norm: float, norm_type: float = 2.0):
        """Reduce the gradients, then scale them so their global norm is at most `max_norm`.

        Returns:
            The global norm before clipping (a 0-d float64 lucid Tensor), the same on every rank.
        """
        self._reduce("internal")
        self._announce("clip_grad_norm_", (float(max_norm), float(norm_type)))
        return self._clip(float(max_norm), float(norm_type))

    def _clip(self, max_norm: float, norm_type: float):
        total = self._strategy.grad_norm(norm_type)
        coefficient = min(float(max_norm) / (total + 1e-6), 1.0)
        for flat in self._flats:
            flat.grad *= flat.grad.dtype.type(coefficient)
        return Tensor(np.float64(total))

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """The full state dict the wrapped optimizer would give in one process (a collective when sharded,
        except on the rank that `consolidate_state_dict()` gathered it onto, until the next step)."""
        if self._consolidated is not None:
            return dict(self._consolidated, param_groups=self.optimizer.state_dict()["param_groups"])
        return self._strategy.state_dict()

    def consolidate_state_dict(self, to: int = 0) -> None:
        """Gather the full state dict onto rank `to` (torch ZeroRedundancyOptimizer's; every rank calls it).

        Afterwards `state_dict()` on rank `to` returns it without communicating, so
        `if rank == to: save(opt.state_dict())` works with `shard_state=True`, until the next `step()`.
        """
        if isinstance(to, bool) or not isinstance(to, int) or not 0 <= to < self.comm.size:
            raise ValueError(f"consolidate_state_dict: rank {to!r} is out of range for a world of size "
                             f"{self.comm.size}")
        self.comm.barrier(call=self.call("consolidate_state_dict"))  # a collective whatever the strategy
        full = self._strategy.state_dict()
        self._consolidated = full if self.comm.rank == to else None

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a full state dict (from any world size, or from a plain optimizer); each rank keeps what it owns.

        Raises:
            JoinedError: while some rank is inside `distributed.join()` (it could not load the same
                state); with sharded state every rank not joined raises it, as the load is a collective.
        """
        self._consolidated = None
        self._strategy.load_state_dict(state_dict)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group to the wrapped optimizer and re-plan the buckets (call it on every rank)."""
        before = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        self.optimizer.add_param_group(param_group)
        new = [p for p in self.optimizer.param_groups[-1]["params"] if id(p) not in before]
        for i, p in enumerate(new):
            self._names.setdefault(p, f"{len(self.optimizer.param_groups) - 1}.{i}")
        if self.comm.size > 1:
            self._hooks += [p.register_post_accumulate_grad_hook(self._on_gradient) for p in new]
        self._build()

