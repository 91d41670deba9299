"""Pending non-blocking operations: Request, and the Pipeline that starts collectives in order."""

from __future__ import annotations

import collections
import time


class Request:
    """A pending non-blocking operation; `wait()` completes it (and runs its completion step once)."""

    contributors = None  # ranks whose data it combined, when fewer than all may have (distributed.join)

    def __init__(self, mpi_request=None, on_complete=None):
        self._mpi_request = mpi_request
        self._on_complete = on_complete
        self.done = mpi_request is None and on_complete is None

    def test(self) -> bool:
        """Progress the operation; True once it has completed (without running the completion step)."""
        return self._mpi_request is None or self._mpi_request.Test()

    def wait(self) -> None:
        if self.done:
            return
        if self._mpi_request is not None:
            self._mpi_request.Wait()
        if self._on_complete is not None:
            self._on_complete()
        self.done = True


# A host all-reduce is cut into pieces of this many bytes, reduced one after another (see Pipeline).
PIECE_BYTES = 1 << 20
# How many collectives a Pipeline keeps started at once.
IN_FLIGHT = 1


class Gate:
    """A control message: the data submitted `after` it starts only once it has settled."""

    __slots__ = ("start", "request", "settle", "label", "settled")

    def __init__(self, start, settle, label):
        self.start, self.request, self.settle, self.label = start, None, settle, label
        self.settled = start is None


def open_gate(label=None) -> Gate:
    """A gate that is open already (its control exchange happened elsewhere)."""
    return Gate(None, None, label)


class Pipeline:
    """The non-blocking collectives of one communicator, started in submission order, IN_FLIGHT at a time.

    Why: on one node MPI all-reduces a 40 MB buffer at ~2.7 GB/s, but the same bytes as 1 MiB pieces
    reduced one after another at ~4.5 GB/s (a piece stays in cache from the reduction to the copy
    back, and the Average division of a piece runs while it is still there); pieces all started at
    once evict each other and get ~3.3 GB/s (scripts/bench_comm.py).

    MPI matches the collectives of a communicator by the order in which each rank starts them. Work
    here starts strictly in submission order on every rank, when what is before it has started
    (inside `submit()`, `progress()` or `wait()`); a blocking collective of the communicator calls
    `drain()` first, so it cannot overtake a queued one.

    Control messages (`control()`) are small: one starts as soon as everything before it has started,
    without waiting for the data in flight (IN_FLIGHT counts data only), so its round trip overlaps
    the data before it; they settle in order. Data submitted `after` a gate starts only once the gate
    has settled, and data submitted with `ready` (an object with `query()` and `synchronize()`, such
    as a CUDA event recorded after the copy or the kernels that fill the buffer) only once `ready`
    has completed: the submitter never blocks for it, a later `submit()`/`progress()` starts it, and a
    wait blocks on `ready` itself when nothing else is in flight. A start that returns None started
    nothing (its work was cancelled). `break_(error)` drops everything queued; later use raises
    `error`. While a wait blocks, `waiting_since` and `waiting_on` (the label of what it waits for)
    say so.
    """

    def __init__(self, in_flight: int = IN_FLIGHT):
        self.in_flight = in_flight
        self._queued = collections.deque()   # Gates and (start, complete, gate, label, ready) not started yet
        self._gates = collections.deque()    # control messages started, not settled yet, oldest first
        self._active = collections.deque()   # (MPI request, complete, label) data started, oldest first
        self.submitted = self.completed = 0
        self.broken = None
        self.waiting_since = None
        self.waiting_on = None

    def control(self, start, settle, label=None) -> Gate:
        """Queue a control message; `settle()` runs when it completes (control messages settle in order)."""
        if self.broken is not None:
            raise self.broken
        gate = Gate(start, settle, label)
        self._queued.append(gate)
        self._start_more()
        return gate

    def submit(self, start, complete=None, after: Gate | None = None, label=None, ready=None) -> int:
        """Queue `start()` (which starts one MPI collective and returns its request); returns its number."""
        if self.broken is not None:
            raise self.broken
        self._queued.append((start, complete, after, label, ready))
        self.submitted += 1
        self._start_more()
        return self.submitted

    def progress(self) -> None:
        """Retire what has completed (without blocking) and start what may start."""
        moved = True
        while moved:
            self._start_more()
            moved = False
            while self._gates and self._gates[0].request.Test():
                self._settle_gate()
                moved = True
            while self._active and self._active[0][0].Test():
                self._retire()
                moved = True

    def wait(self, number: int) -> None:
        """Block until collective `number` and all submitted before it have completed."""
        self._block_until(lambda: self.completed >= number)

    def wait_gate(self, gate: Gate) -> None:
        """Block until `gate` has settled."""
        self._block_until(lambda: gate.settled)

    def drain(self) -> None:
        """Block until everything submitted has completed and every control message has settled."""
        self._block_until(lambda: self.completed >= self.submitted and not self._gates and not self._queued)

    def _block_until(self, done) -> None:
        if not done():
            self.waiting_since = time.monotonic()
            try:
                while not done() and self.broken is None:
                    self.progress()
                    if done() or self.broken is not None:
                        break
                    if self._gates and (not self._active or self._head_waits_for(self._gates[0])):
                        self.waiting_on = self._gates[0].label
                        self._gates[0].request.Wait()
                        self._settle_gate()
                    elif self._active:  # MPI's progress engine moves the control messages meanwhile
                        self.waiting_on = self._active[0][2]
                        self._active[0][0].Wait()
                        self._retire()
                    elif self._head_not_ready():  # nothing in flight: the next data waits for its buffer
                        self.waiting_on = self._queued[0][3]
                        self._queued[0][4].synchronize()
                    else:
                        break
            finally:
                self.waiting_since = self.waiting_on = None
        if self.broken is not None:
            raise self.broken

    def _head_waits_for(self, gate: Gate) -> bool:
        """Whether the next data to start is held back by `gate`."""
        head = self._queued[0] if self._queued else None
        return isinstance(head, tuple) and head[2] is gate

    def _head_not_ready(self) -> bool:
        """Whether the next data to start is held back by its buffer (its `ready` has not completed)."""
        head = self._queued[0] if self._queued else None
        return isinstance(head, tuple) and head[4] is not None and not head[4].query()

    def break_(self, error: Exception) -> None:
        """Nothing more runs here: queued work is dropped and every later use raises `error`."""
        self.broken = error
        self.completed += sum(1 for entry in self._queued if isinstance(entry, tuple))
        self._queued.clear()

    def _settle_gate(self) -> None:
        gate = self._gates.popleft()
        gate.settled = True
        gate.settle()

    def _retire(self) -> None:
        _, complete, _ = self._active.popleft()
        self.completed += 1
        self._start_more()  # first: the next piece travels while this one is finished off
        if complete is not None:
            complete()

    def _start_more(self) -> None:
        while self._queued and self.broken is None:
            head = self._queued[0]
            if isinstance(head, Gate):
                self._queued.popleft()
                head.request = head.start()
                self._gates.append(head)
                continue
            start, complete, gate, label, ready = head
            if len(self._active) >= self.in_flight or (gate is not None and not gate.settled) or (
                    ready is not None and not ready.query()):
                return  # the data waits for its turn, for its control message to decide, or for its buffer
            self._queued.popleft()
            request = start()
            if request is None:  # cancelled: counts as done at once
                self.completed += 1
                continue
            self._active.append((request, complete, label))


class PipelinedRequest(Request):
    """Work submitted to a `Pipeline`, complete once collective `number` (and all before it) has.

    With `op` (the collective's control state, `comm.Op`), `wait()` raises the error its control
    exchange settled on, and `contributors` is the number of ranks whose data it combined.
    """

    def __init__(self, pipeline: Pipeline, number: int, op=None):
        super().__init__()
        self._pipeline, self._number, self._op = pipeline, number, op
        self.done = False

    def test(self) -> bool:
        self._pipeline.progress()
        return self._pipeline.completed >= self._number and (self._op is None or self._op.gate.settled)

    def wait(self) -> None:
        if not self.done:
            self._pipeline.wait(self._number)
            if self._op is not None:
                self._pipeline.wait_gate(self._op.gate)
            self.done = True
        if self._op is not None and self._op.error is not None:
            raise self._op.error

    @property
    def contributors(self) -> int:
        return self._op.contributors if self._op is not None else None
