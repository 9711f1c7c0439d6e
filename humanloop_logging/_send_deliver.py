"""Delivering chunks for ``humanloop-logging send``: hand one to the shipper, wait until every
record in it is settled, and only then move the checkpoint past its last line.

So a ``kill -9`` at any moment loses no line and sends at most the one chunk in flight twice. A
chunk the service cannot take (given up after ``max_retry_time``) stops the run before its
checkpoint: a rerun sends it. The next chunk is read while one is in flight; it is handed over
(and counted) only once the one before is settled.

With a spool configured (``spool_path``), a record is settled once it is on disk there: the
spool survives a ``kill -9`` and is sent from by the shipper, the next process that opens the
file, or ``humanloop-logging spool drain``, so the checkpoint may move past it without sending it
twice. The spool is bounded, though (``max_spool_bytes`` evicts its oldest rows), and a row
evicted after its line was checkpointed would be lost: so at most ``SPOOL_AHEAD`` batches wait
there ahead of the service, and a service that answers for none of them for ``max_retry_time``
ends the run ("backlog", exit 3) with them left in the spool.

A rejected or invalid record is traced back to its line through the chunk: the engine's report
(``on_error``) carries the record, and the chunk knows which of its lines holds a record with that
``data_id`` and ``type`` (or, for an invalid one, those field reprs); the engine is not changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, Literal, Optional

from ._checkpoints import Checkpoints
from ._record import DATA_ID, TYPE, described
from ._send_read import Chunk, Reader, hand_over
from ._send_view import Report, Tally
from .exceptions import (
    DeliveryError,
    FeedbackValidationError,
    HumanloopLoggingError,
    UnprocessableEntityError,
)

__all__ = ["STOP_TIMEOUT", "Errors", "account", "deliver"]

#: Longest a stopped run spends settling the chunk in flight.
STOP_TIMEOUT = 3.0

#: With a spool, how many batches may wait in it for the service before ``send`` waits too.
SPOOL_AHEAD = 40

#: How a delivery ended: every chunk settled, one undeliverable, a stop before one settled, or a
#: spool holding ``SPOOL_AHEAD`` batches that the service took none of for ``max_retry_time``.
Outcome = Literal["done", "undeliverable", "stopped", "backlog"]


class Errors:
    """The engine's reports (``on_error``), gathered from the flush thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._errors: list[HumanloopLoggingError] = []
        self._covered = 0

    def __call__(self, error: HumanloopLoggingError) -> None:
        with self._cond:
            self._errors.append(error)
            if isinstance(error, UnprocessableEntityError):
                self._covered += max(len(error.rejected), 1)
            elif isinstance(error, DeliveryError):
                self._covered += error.count
            else:
                self._covered += 1
            self._cond.notify_all()

    def take(self, records: int, timeout: float) -> list[HumanloopLoggingError]:
        """The reports about at least ``records`` records (the engine counts, then reports)."""
        with self._cond:
            self._cond.wait_for(lambda: self._covered >= records, timeout)
            errors, self._errors, self._covered = self._errors, [], 0
            return errors


def deliver(
    reader: Reader,
    shipper: Any,
    errors: Errors,
    checkpoints: Checkpoints,
    *,
    report: Report,
    follow: bool,
    poll: float,
    stop: threading.Event,
) -> Outcome:
    settings = shipper.settings
    ahead = SPOOL_AHEAD * settings.batch_size if settings.spool_path else None
    chunks = reader.chunks(follow, poll, stop)
    current = next(chunks, None)
    tally = reader.tally
    while current is not None:
        before = shipper.stats()
        hand_over(current, tally, report)
        submit = shipper.submit
        for item in current.items:
            submit(item)
        upcoming = None if stop.is_set() else next(chunks, None)  # read while it is sent
        after = settle(shipper, stop, ahead, settings.max_retry_time) if current.items else before
        if after is None:
            return "stopped"  # no checkpoint: it is sent again next time
        sent = after.sent - before.sent
        rejected = after.rejected - before.rejected
        failed = after.failed - before.failed + after.dropped - before.dropped
        tally.sent += sent + (after.withheld - before.withheld)
        account(current, errors.take(rejected + failed, 2.0) if rejected + failed else [],
                tally, report)  # fmt: skip
        if failed:
            tally.undeliverable += failed
            return "undeliverable"
        if current.ends:
            for key, position in current.ends.items():
                checkpoints.set(key, position)
            checkpoints.save()
        reader.progress.update(0, reader.done_bytes, tally, force=True)
        if ahead is not None and after.spooled > ahead:
            return "backlog"
        if stop.is_set():
            break  # the chunk read ahead is not handed over: a rerun starts with it
        current = upcoming
    return "done"


def settle(shipper: Any, stop: threading.Event, ahead: Optional[int], patience: float) -> Any:
    """Stats once everything submitted is sent, rejected, given up on or safe in the spool (with
    at most ``ahead`` records waiting there, or none answered for ``patience`` seconds); None
    when a stop came and the grace ran out first."""
    grace: Optional[float] = None
    answered, moved = -1, time.monotonic()
    wait = 0.25 if ahead is None else 0.02  # a spooled record is settled without an answer
    while True:
        if shipper.flush(wait):
            return shipper.stats()
        stats = shipper.stats()
        now = time.monotonic()
        if stats.pending == stats.spooled:
            if ahead is None or stats.spooled <= ahead or stop.is_set():
                return stats
            done = stats.sent + stats.rejected + stats.failed + stats.dropped
            if done != answered:
                answered, moved = done, now
            elif now - moved >= patience:
                return stats
        if stop.is_set():
            grace = grace or now + STOP_TIMEOUT
            if now >= grace:
                return None


def account(chunk: Chunk, reports: list[HumanloopLoggingError], tally: Tally,
            report: Report) -> None:  # fmt: skip
    """Count and report each record the engine reported, by the line it came from."""
    for error in reports:
        for spot, data_id in _where_of(chunk, error):
            source, line = spot if spot is not None else ("?", None)
            if isinstance(error, FeedbackValidationError):
                tally.invalid += 1
                report.write(source, line, "invalid", f"{error.field} {error.reason}",
                             data_id=data_id)  # fmt: skip
            elif isinstance(error, UnprocessableEntityError):
                tally.rejected += 1
                detail = [m for r, messages in error.rejected for m in messages
                          if r.get("data_id") == data_id] or [error.message]  # fmt: skip
                report.write(
                    source, line, "rejected", error.message, detail=detail, data_id=data_id
                )
            else:
                report.write(source, line, "undeliverable", str(error), data_id=data_id)


def _where_of(chunk: Chunk, error: HumanloopLoggingError) -> list[tuple[Optional[tuple[str, int]],
                                                                         Any]]:  # fmt: skip
    """The lines of ``chunk`` an engine report is about, each with its record's data_id."""
    if isinstance(error, FeedbackValidationError):
        for index, item in enumerate(chunk.items):
            if described(item) == error.record:
                spot = _claim(chunk, index)
                if spot is not None:
                    return [(spot, item[DATA_ID])]
        return [(None, error.record.get("data_id"))]
    records: list[Mapping[str, Any]] = []
    if isinstance(error, UnprocessableEntityError):
        records = [record for record, _ in error.rejected]
    elif isinstance(error, DeliveryError):
        records = error.records
    found: list[tuple[Optional[tuple[str, int]], Any]] = []
    for record in records:
        spot = None
        for index, item in enumerate(chunk.items):
            if item[DATA_ID] == record.get("data_id") and item[TYPE] == record.get("type"):
                spot = _claim(chunk, index)
                if spot is not None:
                    break
        found.append((spot, record.get("data_id")))
    return found


def _claim(chunk: Chunk, index: int) -> Optional[tuple[str, int]]:
    """Each line answers for one report: a line claimed once is not named again."""
    spot = chunk.where[index]
    if spot[1] < 0:
        return None
    chunk.where[index] = (spot[0], -1)
    return spot
