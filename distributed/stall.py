"""The stall inspector: when a collective waits too long, say which ranks have not arrived and where they are.

A daemon thread per process (started by `distributed.init()` for a world of several ranks) wakes a
few times a second. It answers other ranks' queries about this process, and when this process's main
thread has waited in one collective for LUCID_STALL_TIMEOUT seconds (default 60; 0 turns the
inspector off) it asks every other rank of that communicator what it last entered and whether it is
waiting, prints a report on stderr, and repeats it every LUCID_STALL_TIMEOUT seconds while the stall
lasts. With LUCID_STALL_ABORT=S the job is aborted (non-zero) after S seconds of stall, report first.

Queries and answers travel on a duplicate of COMM_WORLD of their own, so they never meet the job's
collectives; MPI runs with MPI_THREAD_MULTIPLE (mpi4py's default), and the main thread's blocking
waits release the GIL, so the thread runs while the main thread waits or computes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref

TIMEOUT_VARIABLE, ABORT_VARIABLE = "LUCID_STALL_TIMEOUT", "LUCID_STALL_ABORT"
DEFAULT_TIMEOUT = 60.0
_QUERY, _REPLY = 1, 2

_watched = weakref.WeakSet()   # every MPIComm of this process (guarded by _lock: two threads use it)
_lock = threading.Lock()
_serials = {}                  # members -> how many communicators over them this process made
_inspector = None


def watch(comm) -> None:
    """Make `comm` (an MPIComm) visible to the inspector; called by every MPIComm."""
    members = tuple(comm.world_ranks)
    _serials[members] = _serials.get(members, 0) + 1
    comm.stall_key = (members, _serials[members])  # the same on every member that made the same comms
    with _lock:
        _watched.add(comm)


def _communicators() -> list:
    with _lock:
        return list(_watched)


def settings() -> tuple:
    """(timeout, abort) seconds from the environment; timeout 0 means off, abort None means never."""
    def seconds(name, default):
        text = os.environ.get(name, "").strip()
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value >= 0 or value == float("inf"):
            raise ValueError(f"{name} must be a number of seconds >= 0, got {text!r}")
        return value
    return seconds(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT), seconds(ABORT_VARIABLE, None) or None


def start(world) -> None:
    """Start this process's inspector for `world` (collective: every rank calls it, at init)."""
    global _inspector
    timeout, abort = settings()
    if _inspector is not None or world.size < 2 or not (timeout or abort):
        return
    _inspector = Inspector(world, timeout, abort)
    _inspector.start()


def stop() -> None:
    """Stop the inspector thread (before MPI is finalized)."""
    global _inspector
    if _inspector is not None:
        _inspector.stopping.set()
        _inspector.join()
        _inspector = None


def state_of(comm) -> dict:
    """What this process is doing on `comm`, for another rank's report."""
    waiting, last = comm.waiting(), comm.last_entered
    return {"entered": comm.entered, "last": None if last is None else f"{last!r}",
            "waiting": None if waiting is None else (time.monotonic() - waiting[0], f"{waiting[1]!r}")}


class Inspector(threading.Thread):
    """The inspector thread of one process (see the module docstring)."""

    def __init__(self, world, timeout: float, abort):
        super().__init__(name="lucid-stall-inspector", daemon=True)
        self.world, self.timeout, self.abort = world, timeout, abort
        self.MPI = world.MPI
        self.side = world.MPI.COMM_WORLD.Dup()
        self.rank = self.side.Get_rank()
        limit = min(x for x in (timeout, abort) if x)
        self.interval = max(0.02, min(0.25, limit / 8))
        self.stopping = threading.Event()
        self.round = 0
        self.reported = {}  # comm key -> monotonic time of the last report

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.answer()
                for comm in _communicators():
                    self.inspect(comm)
            except Exception as error:  # noqa: BLE001 - say so, and keep inspecting
                sys.stderr.write(f"[rank {self.rank}] stall inspector: {type(error).__name__}: {error}\n")

    # ------------------------------------------------------------------ answering

    def answer(self) -> None:
        """Reply to every pending query with this process's state on the communicator asked about."""
        status = self.MPI.Status()
        while self.side.Iprobe(source=self.MPI.ANY_SOURCE, tag=_QUERY, status=status):
            source = status.Get_source()
            round_id, key = self.side.recv(source=source, tag=_QUERY)
            comm = next((c for c in _communicators() if c.stall_key == key), None)
            reply = None if comm is None else state_of(comm)
            self.side.send((round_id, self.rank, reply), dest=source, tag=_REPLY)

    # ------------------------------------------------------------------ inspecting this process

    def inspect(self, comm) -> None:
        waiting = comm.waiting()
        if waiting is None:
            self.reported.pop(comm.stall_key, None)
            return
        since, op = waiting
        waited = time.monotonic() - since
        last = self.reported.get(comm.stall_key)
        aborting = self.abort is not None and waited >= self.abort
        due = self.timeout and waited >= self.timeout and (last is None or time.monotonic() - last >= self.timeout)
        if not (due or aborting):
            return
        self.reported[comm.stall_key] = time.monotonic()
        text = self.report(comm, waited, op)
        if aborting:
            text += f"\n[rank {self.rank}] {ABORT_VARIABLE}={self.abort:g}: aborting the job after {waited:.1f} s of stall"
        sys.stdout.flush()
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
        if aborting:
            self.world.abort(1)

    def report(self, comm, waited: float, op) -> str:
        """Ask the other ranks of `comm` where they are; the report, one line per rank."""
        states = self.ask(comm)
        mine = comm.entered if op is None else op.number
        prefix = f"[rank {self.rank}]"
        lines = [f"{prefix} stall: waited {waited:.1f} s in collective #{mine} on {comm.label}: {op!r}"]
        missing, arrived = [], []
        for rank, world_rank in enumerate(comm.world_ranks):
            if rank == comm.rank:
                continue
            state = states.get(world_rank)
            if state is None:
                missing.append(f"rank {rank} did not answer (busy in code that holds the GIL, or gone)")
            elif state["entered"] < mine:
                missing.append(f"rank {rank}: last entered #{state['entered']}: {state['last']}; " + _doing(state))
            else:
                arrived.append(f"rank {rank} ({_doing(state)})")
        if missing:
            lines += [f"{prefix}   not arrived: {text}" for text in missing]
        else:
            lines.append(f"{prefix}   every rank has arrived; a collective advances only while every rank "
                         "calls into MPI")
        if arrived:
            lines.append(f"{prefix}   arrived: {'; '.join(arrived)}")
        lines.append(f"{prefix}   (a report every {TIMEOUT_VARIABLE}={self.timeout:g} s while it lasts; "
                     f"{ABORT_VARIABLE}=S ends the job after S s)")
        return "\n".join(lines)

    def ask(self, comm) -> dict:
        """world rank -> its state on `comm` (absent: it did not answer in time)."""
        self.round += 1
        others = [r for r in comm.world_ranks if r != self.rank]
        for rank in others:
            self.side.send((self.round, comm.stall_key), dest=rank, tag=_QUERY)
        states, deadline = {}, time.monotonic() + max(1.0, 4 * self.interval)
        status = self.MPI.Status()
        while len(states) < len(others) and time.monotonic() < deadline:
            self.answer()  # another stalled rank may be asking us at the same time
            if self.side.Iprobe(source=self.MPI.ANY_SOURCE, tag=_REPLY, status=status):
                round_id, rank, state = self.side.recv(source=status.Get_source(), tag=_REPLY)
                if round_id == self.round and state is not None:
                    states[rank] = state
            else:
                time.sleep(0.005)
        return states


def _doing(state: dict) -> str:
    waiting = state["waiting"]
    if waiting is None:
        return "running, not waiting in a collective"
    return f"waiting {waiting[0]:.1f} s in {waiting[1]}"

