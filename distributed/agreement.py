"""Ranks agreeing on a layout (parameter names, shapes, dtypes, options): the same error on every rank if not."""

from __future__ import annotations

import hashlib

from .control import Call


class LayoutMismatchError(RuntimeError):
    """Ranks disagree on the parameters (names, shapes, dtypes, order) or on the wrapper's options."""


def check_same_layout(comm, layout: list) -> None:
    """Raise the same LayoutMismatchError on every rank unless all ranks passed an equal `layout`.

    One small collective (a digest per rank) when they agree; a second one to explain when they don't.
    """
    digest = hashlib.sha256(repr(layout).encode()).hexdigest()
    digests = comm.allgather_object(digest, call=Call("layout check"))
    if len(set(digests)) == 1:
        return
    layouts = comm.allgather_object(layout, call=Call("layout check"))
    raise LayoutMismatchError(describe_difference(layouts))


def describe_difference(layouts: list) -> str:
    """Name the first entry where ranks' layouts differ, and which ranks hold which value."""
    longest = max(len(layout) for layout in layouts)
    for position in range(longest):
        values = {}
        for rank, layout in enumerate(layouts):
            entry = layout[position] if position < len(layout) else ("<none>",)
            values.setdefault(repr(entry), []).append(rank)
        if len(values) > 1:
            held = "; ".join(f"{entry} on ranks {ranks}" for entry, ranks in values.items())
            if position == 0:
                return f"ranks disagree on the DistributedOptimizer options: {held}"
            counts = sorted({len(layout) - 1 for layout in layouts})
            count_note = f" (ranks have {counts} parameters)" if len(counts) > 1 else ""
            return (f"ranks disagree on parameter {position - 1} (name, shape, dtype) in bucket order"
                    f"{count_note}: {held}")
    return "ranks disagree on the parameter layout"
