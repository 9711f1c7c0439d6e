"""Records waiting on disk: a writer moves the queue into the spool, a sender sends from it.

The spool pipeline of an engine (``_engine``), for a shipper with ``spool_path``; its sending side
is ``_spool_sender``. A record is on
disk within a moment of the logging call (the first of a burst wakes the writer), and leaves it
only when Humanloop has answered for it; through an outage it stays there, and the next process
takes over what a dead one left. Sending has a thread of its own, so that a slow service never
holds up the writes: a burst goes to disk at the speed of validation, not of round trips.

A row in flight is the sender's: an eviction or an expiry that takes it meanwhile does not count
it; its answer does (or, if the send gives it back, the loss is counted then).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sized
from functools import partial
from typing import TYPE_CHECKING, Callable, Optional

from . import _lifecycle
from ._delivery import Payload
from ._memory import GRACE
from ._record import DATA_ID, TIMESTAMP, Captured, to_payload
from ._spool_sender import UPKEEP_EVERY, SpoolSender, unspool
from ._workers import FLUSH, SEND
from .exceptions import DeliveryError, FeedbackValidationError, SpoolError

if TYPE_CHECKING:
    from ._engine import Engine
    from ._spool import Spool

__all__ = ["UPKEEP_EVERY", "Spooled"]

#: Writes a captured record's fields as a JSON array; strict, since SQLite reads it back.
_CAPTURED = json.JSONEncoder(allow_nan=False)

#: Most records moved from the queue to the spool in one transaction.
_CHUNK = 50_000
#: Evictions from the spool are one burst, said once, until none came for this long.
_EVICTIONS_QUIET = 1.0


class Spooled:
    """The writer's and the sender's rounds, and everything the spool's rows need."""

    durable = True
    kinds = (FLUSH, SEND)
    first_kick = 1

    def __init__(self, engine: Engine, spool: Spool) -> None:
        self.engine = engine
        self.spool = spool
        self._spool_lock = threading.Lock()  # a spool change and its count change, together
        #: The sending side: the rows in flight and when to send; ``Disk`` for ``Sending``.
        self.sender = SpoolSender(engine, spool, self._spool_lock, self._broken)
        self._evicting = False  # writes to the spool evict rows: a burst goes on
        self._evicted_at = 0.0  # monotonic: the last write that evicted rows
        self._evicted_reported = 0
        self._next_upkeep = 0.0
        self._sender: Optional[threading.Thread] = None

    def started(self, threads: list[threading.Thread]) -> None:
        self._sender = threads[1]

    def round(self, kind: str, generation: int) -> bool:
        return self._write_round(generation) if kind == FLUSH else self.sender.round(generation)

    # -- the caller's path and flush()/close() hurry it ----------------------------------------

    def kick_locked(self) -> None:
        self.engine.cond.notify()

    def hurry_locked(self) -> None:
        self.sender.wake_locked(everyone=True)

    def late_locked(self, left: list[Captured]) -> Optional[Callable[[], None]]:
        """The writer is stuck past the close deadline: nothing is written off, the rows stay on
        disk, and what is queued goes there too (the returned step, outside the lock)."""
        epoch = self.engine.books.take(len(left))

        def to_disk() -> None:
            self._to_spool(left, epoch)
            self._leave_on_disk()

        return to_disk

    # -- the writer --------------------------------------------------------------------------------

    def _write_round(self, generation: int) -> bool:
        """Move what is queued to disk at once, and keep the spool.

        When closing, the queue goes to disk, then the writer waits for the sender to finish
        within the deadline; what is left stays on disk.
        """
        engine = self.engine
        with engine.cond:
            if generation != engine.generation:
                return False
            queue = engine.queue
            now = time.monotonic()
            late = now >= engine.deadline
            stop = late or (engine.closing and not queue)
            if not queue and not stop and now < self._next_upkeep:
                quiet = now - self._evicted_at
                if not self._evicting or quiet < _EVICTIONS_QUIET:
                    # (A burst of evictions is over, and said, once none came for a moment.)
                    wake = self._next_upkeep - now
                    if self._evicting:
                        wake = min(wake, _EVICTIONS_QUIET - quiet)
                    engine.cond.wait(wake)
                    return True
                self._evicting = False
            if stop:
                # Published first, then the queue looked at again: a record appended from here
                # on, while this thread waits for the sender, sees idle and starts a writer and a
                # sender of its own.
                engine.idle = True
                if queue and not late:  # appended after the look above: to disk with the rest
                    engine.idle = False
                    stop = False
            take = len(queue) if (late or engine.closing) else min(len(queue), _CHUNK)
            items = [queue.popleft() for _ in range(take)]
            epoch = engine.books.take(take)
            # This writer's sender and deadline: once idle is out, a record may start new ones.
            sender, deadline = self._sender, engine.deadline
        if items:
            self._to_spool(items, epoch)
            with engine.cond:
                self.sender.wake_locked()  # rows to send
        if stop:
            if sender is not None and sender is not threading.current_thread():
                sender.join(max(0.0, deadline - time.monotonic()) + GRACE)
            with engine.cond:
                engine.cond.notify_all()
            self._leave_on_disk()
            self._evicting = False
            engine.housekeeping()
            return False
        self._upkeep()
        engine.housekeeping()
        return True

    def _to_spool(self, items: list[Captured], epoch: int) -> None:
        """Write records to disk in one transaction; on a spool fault, send them instead.

        Records are written as captured, their fields as a JSON array: the whole batch is one
        ``json`` call and one SQL statement, so a burst reaches the disk faster than the
        application can log it (the queue must not overflow) and the writer hardly ever waits to
        win the GIL back from it. A record is validated when it is sent (``_unspool``). If some
        field is not plain JSON (a ``datetime``, an object, NaN), each record is looked at on its
        own: the plain ones are written as captured, the others validated now and written as
        their request bodies.
        """
        screen = self.engine.sending.screen
        if screen is not None:
            items = screen(items, epoch)
            if not items:
                return
        spool = self.spool
        try:
            packed = _CAPTURED.encode(items)
        except (TypeError, ValueError):
            rows = self._rows_one_by_one(items, epoch)
        else:
            if self._write(spool, partial(spool.append_packed, packed), items):
                return
            rows = [(str(item[DATA_ID]), _CAPTURED.encode(item).encode(), 0.0) for item in items]
        if not rows:
            return
        if not self.engine.broken_spool and self._write(spool, partial(spool.append, rows), rows):
            return
        # No spool (any more): straight to the service.
        payloads: list[Payload] = []
        errors: list[FeedbackValidationError] = []
        default_user = self.engine.settings.default_user
        for _, body, _ in rows:
            try:
                payloads.append(unspool(body, default_user))
            except FeedbackValidationError as error:
                errors.append(error)
        self.engine.sending.refuse(errors, epoch)
        if payloads:
            self.sender.deliver(payloads, epoch)

    def _write(self, spool: Spool, write: Callable[[], int], records: Sized) -> bool:
        """One write of ``records`` to the spool, counted with it; False if the spool failed."""
        engine = self.engine
        if engine.broken_spool:
            return False
        try:
            with self._spool_lock:
                evicted = write()
                # A row in flight that the write evicted is settled by its answer, not lost: it
                # stays counted as spooled until then (claims register under this lock too).
                lost = self.sender.evicted(spool.evicted_own_ids)
                with engine.cond:
                    engine.books.to_disk(len(records), lost)
                    if lost:
                        engine.cond.notify_all()
        except SpoolError as error:
            self._broken(error)
            return False
        if evicted > 0:
            self._evicting = True
            self._evicted_at = time.monotonic()
        return True

    def _rows_one_by_one(self, items: list[Captured], epoch: int) -> list[tuple[str, bytes, float]]:
        """Rows for records of which some are not plain JSON; those are validated now."""
        rows: list[tuple[str, bytes, float]] = []
        encode = _CAPTURED.encode
        default_user = self.engine.settings.default_user
        for item in items:
            try:
                data = encode(item).encode("utf-8")
                data_id = item[DATA_ID]
                rows.append((data_id if type(data_id) is str else "", data, item[TIMESTAMP]))
                continue
            except (TypeError, ValueError):  # not plain JSON: validate it now
                pass
            try:
                payload, data = to_payload(item, default_user)
            except FeedbackValidationError as error:
                self.engine.sending.refuse([error], epoch)
                continue
            rows.append((payload["data_id"], data, item[TIMESTAMP]))
        return rows

    def _upkeep(self) -> None:
        """Every few seconds: the heartbeat, rows of dead processes, rows past their age."""
        engine = self.engine
        spool = self.spool
        now = time.monotonic()
        if engine.broken_spool or now < self._next_upkeep:
            return
        self._next_upkeep = now + UPKEEP_EVERY
        max_age = engine.settings.spool_max_age
        try:
            with self._spool_lock:
                # Rows in flight are settled by their answer, whatever happened to them on disk.
                in_flight = self.sender.in_flight()
                adopted = spool.adopt()
                expired = spool.expire(max_age, keep=in_flight)
                own = spool.count(leave_out=in_flight)
                with engine.cond:
                    engine.books.upkeep(adopted, len(expired), own + len(in_flight))
                    engine.cond.notify_all()
        except SpoolError as error:
            self._broken(error)
            return
        if now - self._evicted_at >= _EVICTIONS_QUIET:
            self._evicting = False
        for notice in spool.take_notices():
            engine.reporter.report(notice, kind="spool-notice")
        if expired:
            engine.reporter.report(
                DeliveryError(
                    f"gave up on feedback older than spool_max_age ({max_age:g}s) in the spool "
                    f"at {spool.path}",
                    [json.loads(row.body) for row in expired[:100]],
                    count=len(expired),
                ),
                kind="expired",
                level=logging.ERROR,
            )

    def housekeeping(self) -> None:
        """Say once per burst that the spool dropped its oldest records."""
        evicted = self.engine.books.evicted
        if evicted > self._evicted_reported and not self._evicting:  # the burst is over
            settings = self.engine.settings
            self.engine.reporter.report(
                SpoolError(
                    settings.spool_path or "",
                    f"dropped the {evicted - self._evicted_reported} oldest record(s): the spool "
                    f"is over max_spool_bytes={settings.max_spool_bytes}",
                ),
                kind="evict",
            )
            self._evicted_reported = evicted

    # -- the spool's life ------------------------------------------------------------------

    def start_now(self) -> bool:
        """Open the spool and take over what dead processes left; False if it failed."""
        try:
            self._upkeep()
        except SpoolError as error:
            self._broken(error)
            return False
        return not self.engine.broken_spool

    def release(self) -> None:
        """What is left on disk is for the next process (``spool drain`` is done)."""
        self._leave_on_disk(done=True)

    def _broken(self, error: SpoolError) -> None:
        """Say once that the spool failed, and keep feedback in memory from now on."""
        engine = self.engine
        if engine.broken_spool:
            return
        self.sender.forget()
        engine.spool_broke()
        spooled = engine.books.spooled
        stay = f", and {spooled} record(s) stay in the file" if spooled else ""
        engine.reporter.report(
            SpoolError(error.path, f"{error.reason}; feedback is kept in memory from now on{stay}"),
            kind="spool",
            level=logging.ERROR,
        )

    def _leave_on_disk(self, *, done: bool = False) -> None:
        """The writer stops: at exit (or when ``done``), hand the rows left to the next
        process, and say so."""
        if self.engine.broken_spool or not (done or _lifecycle.exiting()):
            return
        spool = self.spool
        try:
            left = spool.release()
        except SpoolError as error:
            self._broken(error)
            return
        if left:
            self.engine.reporter.log(
                f"{left} feedback record(s) stay in the spool at {spool.path}: the next process "
                f"that uses it sends them, or run: humanloop-logging spool drain {spool.path}",
                kind="left",
            )
