"""The DistributedOptimizer's side of `distributed.join()`: announcing local steps, shadowing them.

A mixin of DistributedOptimizer (its own methods, kept apart so they move with it): on the ranks not
joined, a step or a clip that changes state without a collective is announced to the joined ranks
(only while some rank has joined); on a joined rank, `shadow()` takes part in the others' gradient
reductions with zero gradients and runs the same steps, so parameters and state stay equal.
"""

from __future__ import annotations

from .control import Call, Kind


class JoinableOptimizer:
    """distributed.join()'s protocol for DistributedOptimizer (see joining.py)."""

    def _announce(self, name: str, args: tuple = ()) -> bool:
        """Tell ranks inside join() about a step or clip they must shadow; False (no message) when none."""
        if not self.comm.joined_ranks():  # every rank has drained: all decide alike
            return False
        self.comm.control_exchange(Kind.ANNOUNCE, self.call(name, args=args, shadow=True))
        return True

    def _share_hyperparameters(self, root=None) -> None:
        """The groups' options (a scheduler's lr) from `root` (default: the lowest rank not joined)."""
        if root is None:
            root = min(set(range(self.comm.size)) - set(self.comm.joined_ranks()))
        options = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        options = self.comm.broadcast_object(options if self.comm.rank == root else None, root,
                                             call=self.call("step hyperparameters"))
        for group, received in zip(self.optimizer.param_groups, options):
            group.update(received)

    def check_joinable(self) -> None:
        """Raise unless this rank may call join(): no gradients waiting to be reduced."""
        if self._requests or self._readiness.any_gradient:
            raise RuntimeError("join() was called with gradients computed since the last optimizer.step(): "
                               "call step() (or zero_grad()) first")

    def joined(self, last: int) -> None:
        """Every rank has joined: all take the options of the rank that stepped last."""
        self._share_hyperparameters(last)

    def shadow(self, comm, kind: Kind, call: Call) -> None:
        """distributed.join()'s hook: take part, with no gradient of this rank's own, in the call the
        ranks not joined are making (gradient buckets, the presence exchange, step, clip_grad_norm_)."""
        if call.name == "gradients":
            if self._readiness.next_launch == 0:  # the step's first bucket: contribute zeros
                for bucket in self._buckets:
                    bucket.grad.fill(0)
                    self._fill_missing(bucket)
            self._readiness.next_launch = call.bucket + 1
            self._launch(self._buckets[call.bucket])
        elif call.name == "gradient presence":
            self._shadowing = True
            try:
                self._reduce("internal")
            finally:
                self._shadowing = False
        elif call.name in ("step", "clip_grad_norm_"):
            self.comm.control_exchange(kind, call)  # the announcement itself, already exchanged
            if call.name == "step":
                self._share_hyperparameters()
                self._local_step()
            else:
                self._clip(*call.args)
