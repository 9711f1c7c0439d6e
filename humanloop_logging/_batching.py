"""Batching decisions: what to take off the queue and how long to wait, as plain functions.

They read numbers, not threads or clocks: the engine passes in the queue's length, its settings
and the time, and does what they say under its lock. Tests call them with plain values.
"""

from __future__ import annotations

__all__ = ["BACKLOG_BATCHES", "backlog", "due", "full", "take", "wait_to_fill"]

#: While more than a batch waits, a request takes up to this many batches' worth of records.
BACKLOG_BATCHES = 5


def full(batch_size: int, max_batch: int, max_in_flight: int, window: int) -> int:
    """How many records make a batch due: ``batch_size``, times how far the service narrowed
    the window of requests in flight (``max_in_flight // window``), at most ``max_batch``.

    Behind a rate limit a process then sends fewer, bigger requests rather than as many as
    before, one at a time.
    """
    return min(batch_size * (max_in_flight // window), max_batch)


def due(queued: int, full_at: int, *, hurry: bool) -> bool:
    """Whether a batch should go now rather than wait to fill: it is full, or a close or a
    flush() waits for it (``hurry``)."""
    return queued >= full_at or hurry


def backlog(queued: int, max_batch: int, *, hurry: bool) -> bool:
    """Whether another thread should send beside the first: more waits than one request takes,
    or a flush() or close waits for whatever is queued.

    Not merely a full batch: against a fast service the first thread is back within a
    millisecond, and a thread per batch would only share the GIL with the application.
    """
    return queued >= max_batch or (queued > 0 and hurry)


def take(queued: int, batch_size: int, max_batch: int) -> int:
    """How many records the next request takes: a batch, or up to ``max_batch`` of a backlog."""
    return min(queued, max_batch if queued > batch_size else batch_size)


def wait_to_fill(oldest: float, now: float, flush_interval: float) -> float:
    """Seconds a batch that is not full may still wait for more records: until its oldest
    record (logged at ``oldest``, wall clock) is ``flush_interval`` old; never longer than
    ``flush_interval`` from now, whatever the wall clock did. 0 or less: send it now."""
    return min(flush_interval - (now - oldest), flush_interval)
