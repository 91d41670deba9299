"""Pending non-blocking operations: Request, and the Pipeline that starts collectives in order."""

from __future__ import annotations

import collections


class Request:
    """A pending non-blocking operation; `wait()` completes it (and runs its completion step once)."""

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


class Pipeline:
    """The non-blocking collectives of one communicator, started in submission order, IN_FLIGHT at a time.

    Why: on one node MPI all-reduces a 40 MB buffer at ~2.7 GB/s, but the same bytes as 1 MiB pieces
    reduced one after another at ~4.5 GB/s (a piece stays in cache from the reduction to the copy
    back, and the Average division of a piece runs while it is still there); pieces all started at
    once evict each other and get ~3.3 GB/s (scripts/bench_comm.py).

    MPI matches the collectives of a communicator by the order in which each rank starts them. Work
    here starts strictly in submission order on every rank, when the collective before it completes
    (inside `progress()` or `wait()`); a blocking collective of the communicator calls `drain()` first,
    so it cannot overtake a queued one.
    """

    def __init__(self, in_flight: int = IN_FLIGHT):
        self.in_flight = in_flight
        self._queued = collections.deque()   # (start, complete) not started yet
        self._active = collections.deque()   # (MPI request, complete) started, oldest first
        self.submitted = self.completed = 0

    def submit(self, start, complete=None) -> int:
        """Queue `start()` (which starts one MPI collective and returns its request); returns its number."""
        self._queued.append((start, complete))
        self.submitted += 1
        self._start_more()
        return self.submitted

    def progress(self) -> None:
        """Retire what has completed (without blocking) and start what may start."""
        while self._active and self._active[0][0].Test():
            self._retire()

    def wait(self, number: int) -> None:
        """Block until collective `number` and all submitted before it have completed."""
        while self.completed < number:
            self._active[0][0].Wait()
            self._retire()

    def drain(self) -> None:
        self.wait(self.submitted)

    def _retire(self) -> None:
        _, complete = self._active.popleft()
        self.completed += 1
        self._start_more()  # first: the next piece travels while this one is finished off
        if complete is not None:
            complete()

    def _start_more(self) -> None:
        while self._queued and len(self._active) < self.in_flight:
            start, complete = self._queued.popleft()
            self._active.append((start(), complete))


class PipelinedRequest(Request):
    """Work submitted to a `Pipeline`, complete once collective `number` (and all before it) has."""

    def __init__(self, pipeline: Pipeline, number: int):
        super().__init__()
        self._pipeline, self._number = pipeline, number
        self.done = False

    def test(self) -> bool:
        self._pipeline.progress()
        return self._pipeline.completed >= self._number

    def wait(self) -> None:
        if not self.done:
            self._pipeline.wait(self._number)
            self.done = True
