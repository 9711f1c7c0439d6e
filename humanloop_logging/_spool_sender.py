"""The spool's sending side: claims the oldest own rows, sends them, and settles each by its
answer.

Its rows in flight are its own: the writer (``_spooling``) asks which they are before it counts
what an eviction or an expiry took, so that a row in flight is settled by its answer alone; if
the send gives it back to a disk that no longer has it, the loss is counted then. It is the
``Disk`` of ``_sending.Sending``.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, Optional

from ._delivery import Payload
from ._record import VALUE, to_payload
from .exceptions import FeedbackValidationError, SpoolError

if TYPE_CHECKING:
    from ._engine import Engine
    from ._spool import Spool

__all__ = ["UPKEEP_EVERY", "SpoolSender", "outage_wait", "unspool"]

#: Seconds between the spool's heartbeats (its lease is 30 s) and its other upkeep.
UPKEEP_EVERY = 5.0
#: The longest wait before records kept on disk through an outage are tried again.
_RETRY_CAP = 60.0


def outage_wait(previous: float) -> float:
    """Seconds before rows kept on disk through an outage are tried again, after a wait of
    ``previous`` (0: the first): one second, doubling to a minute. (The sender spreads it by a
    fifth either way, so that processes sharing an outage do not come back in step.)"""
    return min(max(1.0, previous * 2), _RETRY_CAP)


def unspool(body: bytes, default_user: Optional[str]) -> Payload:
    """A row's record as it is sent; raises FeedbackValidationError if it is refused."""
    if body[:1] != b"[":  # a request body, validated when it was written
        return body.decode("utf-8")
    fields = json.loads(body)
    if type(fields[VALUE]) is list:
        fields[VALUE] = tuple(fields[VALUE])  # as captured: a list value is frozen
    return to_payload(tuple(fields), default_user)[1].decode("utf-8")


class SpoolSender:
    """The sender thread's rounds, and the rows it has in flight."""

    def __init__(
        self,
        engine: Engine,
        spool: Spool,
        spool_lock: threading.Lock,
        broken: Callable[[SpoolError], None],
    ) -> None:
        self.engine = engine
        self.spool = spool
        self._spool_lock = spool_lock  # the writer's: a claim and an eviction never interleave
        self._broken = broken
        self._send_lock = threading.Lock()  # the spool's sends, one at a time
        self._send_wake = threading.Condition(engine.lock)  # the sender waits here
        self._rows: dict[int, int] = {}  # id() of a payload in flight -> its row id
        #: Rows in flight that a write evicted: lost if their send gives them back to the disk.
        self._evicted_in_flight: set[int] = set()
        self._retry_at = 0.0  # monotonic: no send from the spool before (after an outage)
        self._retry_wait = 0.0
        self._last_send = 0.0

    # -- for the writer ------------------------------------------------------------------------

    def wake_locked(self, *, everyone: bool = False) -> None:
        """Rows to send, or a flush() or close waits (the engine's lock held)."""
        if everyone:
            self._send_wake.notify_all()
        else:
            self._send_wake.notify()

    def in_flight(self) -> set[int]:
        """The ids of the rows in flight (the spool lock held)."""
        return set(self._rows.values())

    def evicted(self, own: Sequence[int]) -> int:
        """A write evicted these own rows (the spool lock held): how many were lost, that is,
        not in flight; those in flight are settled by their answer."""
        in_flight = self.in_flight()
        self._evicted_in_flight.update(row for row in own if row in in_flight)
        return len(own) - len(in_flight.intersection(own))

    def forget(self) -> None:
        """The spool failed: no row is in flight any more."""
        self._rows.clear()
        self._evicted_in_flight.clear()

    def deliver(self, payloads: list[Payload], epoch: int) -> None:
        with self._send_lock:
            self.engine.sending.deliver(payloads, epoch)

    # -- the sender thread ---------------------------------------------------------------------

    def round(self, generation: int) -> bool:
        """Send the oldest batch of own rows when one is due."""
        engine = self.engine
        with engine.cond:
            if generation != engine.generation or engine.broken_spool:
                return False
            now = time.monotonic()
            if now >= engine.deadline:
                return False
            if not self._send_due_locked(now):
                if engine.closing or engine.idle:  # nothing more to send before stopping
                    return False
                self._send_wake.wait(self._send_wait_locked(now))
                return True
            epoch = engine.books.epoch
        self._send_spooled(epoch)
        return True

    def _send_due_locked(self, now: float) -> bool:
        engine = self.engine
        books = engine.books
        if books.spooled <= len(self._rows) or now < self._retry_at:
            return False
        return (
            engine.closing
            or books.spooled >= engine.settings.batch_size
            or books.flush_target > books.finished
            or now - self._last_send >= engine.settings.flush_interval
        )

    def _send_wait_locked(self, now: float) -> float:
        """The sender's wait: until a batch is due by age or after an outage (the writer and
        flush() wake it sooner)."""
        wake = now + UPKEEP_EVERY
        if self.engine.books.spooled > len(self._rows):
            wake = max(self._retry_at, self._last_send + self.engine.settings.flush_interval)
        return max(wake - now, 0.001)

    def _send_spooled(self, epoch: int) -> None:
        """Send the oldest batch of this process's rows; each row is deleted once answered."""
        spool = self.spool
        payloads: list[Payload] = []
        refused: list[int] = []
        errors: list[FeedbackValidationError] = []
        try:
            # Claimed and registered as in flight in one step for the writer, whose eviction
            # counts as lost only the rows not in flight.
            with self._spool_lock:
                rows = spool.claim(
                    self.engine.settings.batch_size, exclude=set(self._rows.values())
                )
                for row in rows:
                    try:
                        unspooled = unspool(row.body, self.engine.settings.default_user)
                    except FeedbackValidationError as error:
                        refused.append(row.id)
                        errors.append(error)
                        continue
                    self._rows[id(unspooled)] = row.id
                    payloads.append(unspooled)
        except SpoolError as error:
            self._broken(error)
            return
        self._last_send = time.monotonic()
        if not rows:
            return
        sending = self.engine.sending
        if refused:
            try:
                with self._spool_lock:
                    spool.delete(refused)
            except SpoolError as error:
                self._broken(error)
            sending.refuse(errors, epoch, from_disk=len(refused))
        try:
            self.deliver(payloads, epoch)
        finally:
            # Only this send's rows: a sender started since (after a close) has its own here.
            for payload in payloads:
                self._rows.pop(id(payload), None)

    # -- sending.Disk: what the answers do to the rows ---------------------------------------

    def settle(self, chunk: list[Payload]) -> int:
        """The service answered for these records: their rows leave the spool. Returns how many
        came from it, for the count of the answer (``Books.finish``'s ``from_disk``)."""
        rows = self._rows
        if not rows:
            return 0
        ids = [row for row in (rows.pop(id(p), None) for p in chunk) if row is not None]
        if not ids:
            return 0
        self._evicted_in_flight.difference_update(ids)  # settled by this answer, not lost
        try:
            with self._spool_lock:
                self.spool.delete(ids)
        except SpoolError as error:  # they may be sent again by whoever reads the file next
            self._broken(error)
        return len(ids)

    def keep(self, chunk: list[Payload]) -> bool:
        """Time ran out on records that are on disk: keep them, and wait before trying again.

        The wait doubles from one second to a minute, with jitter, so that processes sharing an
        outage do not come back in step.
        """
        if any(id(p) not in self._rows for p in chunk):
            return False
        rows = [self._rows.pop(id(payload)) for payload in chunk]
        gone = self._evicted_in_flight.intersection(rows)
        engine = self.engine
        if gone:  # evicted while in flight, and not delivered: lost after all
            self._evicted_in_flight -= gone
            with self._spool_lock, engine.cond:
                engine.books.lost_from_disk(len(gone))
                engine.cond.notify_all()
        self._retry_wait = outage_wait(self._retry_wait)
        self._retry_at = time.monotonic() + self._retry_wait * random.uniform(0.8, 1.2)
        return True

    def succeeded(self) -> None:
        self._retry_wait = 0.0

    def heartbeat(self) -> None:
        with contextlib.suppress(SpoolError):
            self.spool.heartbeat()
