"""Control messages: every collective first tells the others what it is, so ranks that disagree fail together.

Before the data of a collective moves, each rank contributes a small fixed-size record (its kind,
element count, dtype, root or reduction, who calls it and why) to one all-gather. Every rank then
holds every rank's record and settles the exchange the same way (`settle`): when the records agree
the data moves; when they do not, every rank raises the same `CollectiveMismatchError` instead of
exchanging wrong data or hanging in mismatched calls. Two records are special: JOINED (a rank in
`distributed.join()`, which shadows whatever the others do) and EXIT (a rank whose script ended).
"""

from __future__ import annotations

import enum
import functools
import struct
import zlib
from dataclasses import dataclass

import numpy as np


class Kind(enum.IntEnum):
    """What a collective does."""

    ALLREDUCE = 1
    REDUCE_SCATTER = 2
    ALLGATHER = 3          # in place, equal slices
    ALLGATHER_ROWS = 4     # along the first axis, any number of rows per rank
    BROADCAST = 5
    BROADCAST_OBJECT = 6
    ALLGATHER_OBJECT = 7
    ALLREDUCE_MAX = 8
    BARRIER = 9
    ANNOUNCE = 10          # no data: tells joined ranks what the others are about to do
    JOINED = 11
    EXIT = 12


_VERB = {Kind.ALLREDUCE: "allreduce", Kind.REDUCE_SCATTER: "reduce_scatter", Kind.ALLGATHER: "allgather",
         Kind.ALLGATHER_ROWS: "allgather", Kind.BROADCAST: "broadcast", Kind.BROADCAST_OBJECT: "broadcast_object",
         Kind.ALLGATHER_OBJECT: "allgather_object", Kind.ALLREDUCE_MAX: "allreduce (max)", Kind.BARRIER: "barrier",
         Kind.ANNOUNCE: "", Kind.JOINED: "join()", Kind.EXIT: "the end of its script (exiting)"}

# Kinds a joined rank shadows without knowing who calls them: it contributes zeros / nothing.
SHADOWED = frozenset({Kind.ALLREDUCE, Kind.ALLREDUCE_MAX, Kind.ALLGATHER_ROWS, Kind.BARRIER})
# What a shadowing rank's call must share with the call it shadows.
SHADOW_MATCHED = ("kind", "count", "dtype", "owner")


@dataclass(frozen=True)
class Call:
    """Who makes a collective and why: shown in mismatch errors and stall reports, matched across ranks.

    Attributes:
        name: what the call is for ("gradients", "clip_grad_norm_", a user's allreduce name, ...).
        step: the optimizer step it belongs to (informational; -1: none).
        bucket: the gradient bucket (informational; -1: none).
        owner: the id of the joinable object (a DistributedOptimizer, a SyncBatchNorm) that makes it on
            this communicator (`joining.register`); -1: none.
        args: up to two numbers a joined rank needs to shadow the call.
        shadow: the owner shadows this call itself on a joined rank (it keeps its own state in step
            with the others'), instead of contributing zeros or refusing.
    """

    name: str = ""
    step: int = -1
    bucket: int = -1
    owner: int = -1
    args: tuple = ()
    shadow: bool = False


RECORD = np.dtype([("kind", "<i8"), ("count", "<i8"), ("dtype", "<i8"), ("extra", "<i8"), ("owner", "<i8"),
                   ("name_hash", "<i8"), ("name", "S40"), ("step", "<i8"), ("index", "<i8"),
                   ("arg0", "<f8"), ("arg1", "<f8"), ("shadow", "<i8")])
MATCHED = ("kind", "count", "dtype", "extra", "owner", "name_hash")  # what must agree; the rest informs
_MATCHED_BYTES = 8 * len(MATCHED)  # they lead the record
_JOINED = int(Kind.JOINED)
_KIND = struct.Struct("<q")
assert RECORD.names[:len(MATCHED)] == MATCHED and RECORD.fields["name"][1] == _MATCHED_BYTES


def dtype_code(dtype) -> int:
    """A dtype as a number (its one-letter code), 0 for none."""
    return 0 if dtype is None else ord(np.dtype(dtype).char)


def dtype_of(code: int):
    """The dtype `dtype_code` gave `code` (None for 0)."""
    return np.dtype(chr(int(code))) if int(code) else None


def extra_code(*values) -> int:
    """A stable code for the parameters that must agree (root, op, scale factors, shapes)."""
    return _extra_code(values) if values else 0


@functools.lru_cache(maxsize=1024)
def _extra_code(values: tuple) -> int:
    return zlib.crc32(repr(values).encode())


@functools.lru_cache(maxsize=1024)
def _name(name: str) -> tuple:
    """(the name as stored, its hash): the same names come back every step."""
    encoded = name.encode("utf-8", "replace")
    return encoded[:40], zlib.crc32(encoded)


_PACKED = struct.Struct("<6q40s2q2dq")  # RECORD, packed by hand: a few times faster than a structured array
assert _PACKED.size == RECORD.itemsize


def record(kind: Kind, call: Call | None, count: int = -1, dtype=None, extra: int = 0, index: int = -1) -> bytes:
    """This rank's control record (RECORD's bytes)."""
    call = call or Call()
    name, name_hash = _name(call.name)
    args = tuple(call.args) + (0.0, 0.0)
    return _PACKED.pack(int(kind), int(count), dtype_code(dtype), int(extra), call.owner, name_hash, name, call.step,
                        call.bucket if index == -1 else index, float(args[0]), float(args[1]), int(call.shadow))


def decode(data) -> np.ndarray:
    """Records (bytes of one or more) as a structured array."""
    return np.frombuffer(data, RECORD)


def call_of(rec) -> Call:
    """The Call a record was made from (what a joined rank needs to shadow it)."""
    return Call(rec["name"].decode("utf-8", "replace"), int(rec["step"]), int(rec["index"]), int(rec["owner"]),
                (float(rec["arg0"]), float(rec["arg1"])), bool(rec["shadow"]))


def describe(rec) -> str:
    """A record in words: "allreduce of 10 float32 ('gradients', step 3, bucket 0)"."""
    kind = Kind(int(rec["kind"]))
    name = rec["name"].decode("utf-8", "replace")
    if kind is Kind.ANNOUNCE:
        text = f"DistributedOptimizer.{name}"
    else:
        text = _VERB[kind]
        if int(rec["count"]) >= 0 and kind not in (Kind.BARRIER, Kind.JOINED, Kind.EXIT):
            unit = dtype_of(rec["dtype"]).name if int(rec["dtype"]) else "elements"
            text += f" of {int(rec['count'])} {unit}" + (" per row" if kind is Kind.ALLGATHER_ROWS else "")
    notes = [repr(name)] if name and kind not in (Kind.ANNOUNCE, Kind.EXIT, Kind.JOINED) else []
    if int(rec["step"]) >= 0:
        notes.append(f"step {int(rec['step'])}")
    if int(rec["index"]) >= 0 and kind not in (Kind.JOINED, Kind.ALLGATHER_ROWS):
        notes.append(f"bucket {int(rec['index'])}")
    return text + (f" ({', '.join(notes)})" if notes else "")


class CollectiveMismatchError(RuntimeError):
    """Ranks called different collectives at the same point (raised on every rank alike)."""


class JoinedError(RuntimeError):
    """A collective that ranks in `distributed.join()` cannot shadow (raised on the ranks not joined)."""


@dataclass
class Outcome:
    """How one exchange settled, the same on every rank.

    Attributes:
        data: every rank's record (RECORD's bytes), in rank order; `records` decodes them.
        joined: ranks whose record is JOINED.
        agreed_rank: a rank holding the record the others not joined agree on (None when all joined or
            they disagree); `agreed` is that record.
        error: what the ranks not joined raise (None: the data moves).
        fatal: the ranks disagree; the communicator cannot go on.
    """

    data: bytes
    joined: tuple
    agreed_rank: int | None = None
    error: Exception | None = None
    fatal: bool = False

    @property
    def records(self) -> np.ndarray:
        return decode(self.data)

    @property
    def agreed(self):
        return None if self.agreed_rank is None else self.records[self.agreed_rank]

    @property
    def size(self) -> int:
        return len(self.data) // RECORD.itemsize

    @property
    def contributors(self) -> int:
        """Ranks that contribute data (not joined): Average divides by this."""
        return self.size - len(self.joined)

    @property
    def all_joined(self) -> bool:
        return len(self.joined) == self.size

    def rows(self) -> list:
        """Rows each rank contributes to an ALLGATHER_ROWS (0 for joined ranks)."""
        return [0 if r in self.joined else int(rec["index"]) for r, rec in enumerate(self.records)]


def settle(data: bytes, what: str = "") -> Outcome:
    """Decide an exchange from every rank's record, RECORD's bytes in rank order (a pure function: every
    rank decides alike)."""
    data, size = bytes(data), RECORD.itemsize
    first = data[:_MATCHED_BYTES]
    if _KIND.unpack_from(data)[0] != _JOINED and all(data[r:r + _MATCHED_BYTES] == first
                                                     for r in range(size, len(data), size)):
        return Outcome(data, (), 0)  # the usual case, quickly: every rank agrees
    records = decode(data)
    joined = tuple(int(r) for r in np.flatnonzero(records["kind"] == Kind.JOINED))
    active = [r for r in range(len(records)) if r not in joined]
    outcome = Outcome(data, joined)
    if not active:
        return outcome
    first = records[active[0]]
    if any(any(records[r][f] != first[f] for f in MATCHED) for r in active[1:]):
        outcome.error, outcome.fatal = CollectiveMismatchError(mismatch_message(records, what)), True
        return outcome
    outcome.agreed_rank = active[0]
    kind = Kind(int(first["kind"]))
    if joined and kind is Kind.EXIT:
        outcome.error, outcome.fatal = CollectiveMismatchError(mismatch_message(records, what)), True
    elif joined and not shadowable(first):
        outcome.error = JoinedError(
            f"{describe(first)} cannot run while ranks {list(joined)} have joined: joined ranks shadow "
            "all-reduces, all-gathers, barriers and DistributedOptimizer steps only; call it before "
            "join() or after every rank has joined")
    return outcome


def owner_shadows(rec) -> bool:
    """Whether the joinable that makes this call shadows it on a joined rank (else: zeros, if shadowable)."""
    return int(rec["owner"]) >= 0 and bool(rec["shadow"])


def shadowable(rec) -> bool:
    """Whether a joined rank can take part in this collective."""
    return owner_shadows(rec) or Kind(int(rec["kind"])) in SHADOWED


def mismatch_message(records: np.ndarray, what: str = "") -> str:
    """Which ranks call what, grouped: the same text on every rank."""
    groups = {}
    for rank, rec in enumerate(records):
        groups.setdefault(tuple(rec[f].item() for f in MATCHED), (rec, []))[1].append(rank)
    texts = [describe(rec) for rec, _ in groups.values()]
    held = []
    for text, (rec, ranks) in zip(texts, groups.values()):
        if texts.count(text) > 1:  # the same words for different calls: say whose
            text += f" [DistributedOptimizer #{int(rec['owner'])}]" if int(rec["owner"]) >= 0 else " [no owner]"
        verb = "reached" if int(rec["kind"]) == Kind.EXIT else ("call" if len(ranks) > 1 else "calls")
        held.append(f"{_ranks(ranks)} {verb} {text}")
    where = f" on {what}" if what else ""
    return (f"collective mismatch{where}: {'; '.join(held)}. Every rank must make the same collective calls in "
            "the same order; this communicator cannot be used any more")


def _ranks(ranks: list) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {ranks}"
