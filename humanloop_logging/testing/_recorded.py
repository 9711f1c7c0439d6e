"""What the stand-in records of each request, in the order the requests arrived."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in saw it, kept so tests can assert on what a client really sent."""

    method: str
    path: str
    #: The status answered; 0 when the connection was dropped instead (reset, hang, stop).
    status: int
    #: Feedback items in the body: 1 for an object, the length of an array, 0 if not parseable.
    item_count: int
    #: Read-only request headers with lower-cased names (repeated headers joined by ", ").
    headers: Mapping[str, str]
    body: bytes
    #: ``time.time()`` when the request had been read.
    time: float
    #: True if the body was a JSON array (the batched form of the API).
    batch: bool
    #: Which TCP connection carried it (counts from 1 per stand-in), to check keep-alive reuse.
    connection: int
    #: The body of the answer sent (empty when the connection was dropped instead).
    response: bytes = b""
    #: Seconds from the request having been read to its answer (or drop) being decided: what a
    #: latency, a hang or a held-back answer added; the answer is written right after.
    latency: float = 0.0

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError if it is not)."""
        return json.loads(self.body)


def _lenient_json(body: bytes) -> Any:
    """The body as JSON if it is JSON at all (to count its items), else None."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _insort_by_sequence(entries: list[Any], sequence: int, block: list[tuple[Any, ...]]) -> None:
    """Insert one request's entries (each starting with its arrival ``sequence``) in arrival
    order, all at once: with several requests answered out of order, inserting item by item
    would cost each item a walk past every item answered after it."""
    low, high = 0, len(entries)
    if high and entries[-1][0] < sequence:  # the common case: answered in arrival order
        entries.extend(block)
        return
    while low < high:
        middle = (low + high) // 2
        if entries[middle][0] < sequence:
            low = middle + 1
        else:
            high = middle
    entries[low:low] = block
