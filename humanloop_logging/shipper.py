"""The shipper: a bounded queue, one flush thread, batching, 422 handling, exit and fork.

It knows nothing of logging: adapters hand it captured tuples through ``submit`` and it hands JSON
arrays to a transport. The public ``FeedbackShipper`` is a thin front for an ``_Engine`` that the
flush thread holds; when the front is garbage collected without ``close()``, the engine drains and
its thread ends, so a forgotten handler never leaves a thread behind.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import random
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence, Sized
from functools import partial
from typing import TYPE_CHECKING, Any, Optional, Protocol

from . import _batching as batching
from . import _details, _lifecycle
from ._config import NAMES, Settings, SettingsArgs, refuse_unknown, resolve, takes_settings
from ._delivery import (
    Answer,
    GiveUp,
    Outcome,
    Send,
    Step,
    deliver,
    drive,
    halves,
    split_422,
    suspect,
)
from ._flow import Turn, Turns, Window
from ._ledger import FeedbackStats, Ledger
from ._record import (
    DATA_ID,
    TIMESTAMP,
    VALUE,
    Captured,
    encode_array,
    safe_repr,
    to_payload,
    to_payloads,
    unreadable,
)
from ._report import ErrorCallback, Reporter
from .exceptions import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    DeliveryError,
    FeedbackValidationError,
    QueueFullError,
    SpoolError,
    UnprocessableEntityError,
)
from .signals import start_without_signals
from .transport import HTTPTransport, SendControl

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._spool import Spool

__all__ = ["FeedbackShipper", "FeedbackStats", "Transport"]

#: A validated record: its JSON object text, as it goes into a request's array. The object itself
#: is only read back (``json.loads``) to report a record the service refused or that was given up.
Payload = str


class Transport(Protocol):
    """What the shipper needs from a transport; ``HTTPTransport`` is the one that ships."""

    def send(self, body: bytes, records: Sequence[Any], control: SendControl) -> None: ...

    def reset_after_fork(self) -> None: ...

    def cut_off_at(self, deadline: float) -> None:
        """End the request in flight, if any, by ``deadline`` (monotonic): close() was called."""

    def close(self) -> None: ...


class _OwnThread(threading.local):
    """Which engine the running thread works for; set by the engine's thread loops themselves.

    Feedback logged on one of them (by an ``on_error`` callback) is the engine's own, and must not
    be sent (it could loop), nor may ``flush()`` wait there for the thread itself. A thread-local
    rather than a set of thread idents: an ident is reused once its thread ends, so an
    application thread started after a close could pass for one of ours.
    """

    token: Optional[object] = None  # an engine's ``token``; None on every other thread


#: ``own.token is engine.token`` on the engine's flush and send threads, and nowhere else.
own = _OwnThread()


class _Engine:
    """The queue, the counters and the flush thread's loop; shared by handler and processor.

    The flush thread runs only while there is work: it is started by the first record, ends when
    a close has drained the queue, and is started again by the next record, as ``FileHandler``
    reopens its file. So a shipper closed by someone else (``dictConfig()`` closes every handler
    it replaces) keeps delivering what is logged to it afterwards, and a forked child starts a
    thread only if it logs feedback.
    """

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        on_error: Optional[ErrorCallback],
    ) -> None:
        self.settings = settings
        self.transport = transport
        self._on_error = on_error
        self._batch_size = settings.batch_size
        # While more than a batch waits, a request takes up to this many (README: Delivery).
        self._max_batch = settings.batch_size * batching.BACKLOG_BATCHES
        self._max_in_flight = settings.max_in_flight
        self._max_queue_size = settings.max_queue_size
        self._flush_interval = settings.flush_interval
        self._default_user = settings.default_user
        #: Stands for this engine where the engine itself must not be kept alive: on the events
        #: its processors shipped (see ``_bridge``), and on its own threads (see ``own``).
        self.token = object()
        self._blocking = settings.blocking
        self._spool: Optional[Spool] = None
        if settings.spool_path is not None:
            from ._spool import Spool  # noqa: PLC0415 (only a process with a spool loads sqlite3)

            self._spool = Spool(settings.spool_path, max_bytes=settings.max_spool_bytes)
        # With a spool, the first record of a burst wakes the thread, to be on disk promptly.
        self._notify_at = 1 if self._spool is not None else settings.batch_size
        self._reset()
        # Decided once: the caller's path is a single call either way.
        self.submit: Callable[[Captured], None] = (
            self._submit_blocking if settings.blocking else self._submit_queued
        )

    def _reset(self) -> None:
        """Fresh state: at construction and in a forked child."""
        self.reporter = Reporter(self._on_error)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._send_wake = threading.Condition(self._lock)  # the sender's, with a spool
        self._send_lock = threading.Lock()  # the spool's sends, one at a time
        self._window = Window(self._max_in_flight)
        self._turns = Turns(self._cond)
        self._helpers = 0  # flush threads beside the first, each sending a batch of a backlog
        self._waiting = False  # the first flush thread waits for a batch to fill
        self._nap = threading.Condition(threading.Lock())  # backoff waits; close() cuts them short
        self._naps_cut = 0
        self._queue: collections.deque[Captured] = collections.deque()
        self._books = Ledger()  # every count: changed there only, with the lock held
        self._dropped_reported = self._evicted_reported = 0  # what housekeeping has said
        self._evicting = False  # writes to the spool evict rows: a burst goes on
        self._evicted_at = 0.0  # monotonic: the last write that evicted rows
        self._spool_lock = threading.Lock()  # a spool change and its count change, together
        self._rows: dict[int, int] = {}  # id() of a payload in flight -> its row id
        #: Rows in flight that a write evicted: lost if their send gives them back to the disk.
        self._evicted_in_flight: set[int] = set()
        self._retry_at = 0.0  # monotonic: no send from the spool before (after an outage)
        self._retry_wait = 0.0
        self._last_send = 0.0
        self._next_upkeep = 0.0
        self._closing = False
        self._deadline = math.inf  # monotonic; brought forward by close()
        self._auth_failed = False
        self._outage = False  # the last isolation found everything failing; cleared by a success
        self._unreported: list[DeliveryError] = []  # written off, to be reported outside the lock
        #: True while no flush thread runs; read without the lock on the caller's path.
        self._idle = True
        self._generation = 0  # of the flush thread: an older one that outlived a close ends
        self._thread: Optional[threading.Thread] = None
        self._sender: Optional[threading.Thread] = None

    def exit_timeout(self) -> float:
        return self.settings.exit_timeout

    # -- the caller's path ----------------------------------------------------------------------

    def _submit_queued(self, item: Captured) -> None:
        # No lock on the common path: deque.append is atomic, and what was appended is counted
        # as taken + len(queue) under the lock by stats(). The size check may let one record per
        # concurrently logging thread past max_queue_size; the rare paths take the lock.
        queue = self._queue
        if len(queue) >= self._max_queue_size:
            self._drop()
            return
        queue.append(item)
        # Appended first, then _idle read: a thread that ends sets _idle under the lock in the
        # same step as it sees the queue empty, so one of the two always sees the other.
        if self._idle:
            self._wake()
        elif len(queue) == self._notify_at:
            self._kick()

    def _submit_blocking(self, item: Captured) -> None:
        with self._lock:
            epoch = self._books.take(1)
            turn = self._turns.register(_data_ids([item]))
        self.process([item], epoch, turn)

    def _kick(self) -> None:
        """The queue reached ``_notify_at``: a batch is full, so wake the flush thread; or, if it
        is busy sending, a full request's worth waits, so start a helper."""
        with self._cond:
            if self._waiting or self._spool is not None:
                self._cond.notify()
            else:
                self._help_busy_locked()

    def _help_busy_locked(self) -> None:
        """A backlog waits while the flush thread is busy sending: a helper takes it."""
        if not self._idle and not self._waiting and self._spool is None and self._backlog_locked():
            self._help_locked(self._generation)

    def _backlog_locked(self) -> bool:
        """Whether another thread should send beside the first: more waits than one request
        takes, or a flush() or close waits for what is queued.

        Not merely a full batch: against a fast service the first thread is back within a
        millisecond, and a thread per batch would only share the GIL with the application.
        """
        return batching.backlog(len(self._queue), self._max_batch, hurry=self._hurry_locked())

    def _hurry_locked(self) -> bool:
        """A close or a flush() waits for what is queued: no batch waits to fill."""
        return self._closing or self._books.flushing

    def _drop(self) -> None:
        with self._lock:
            self._books.drop()

    def _wake(self) -> None:
        """Start the flush thread for what was just queued; at exit, send it on this thread.

        If no thread can be started, the records wait in the queue: the next record tries
        again, and a close (the exit's too) sends them. The caller never sends them itself but
        at exit, within what is left of ``exit_timeout``.
        """
        failure: Optional[RuntimeError] = None
        with self._cond:
            if not self._idle or not self._queue:
                return
            if not _lifecycle.exiting():
                self._closing = False
                self._deadline = math.inf
                failure = self._start_locked()
            elif self._deadline == math.inf:  # logged at exit, before the exit hook ran
                self._deadline = time.monotonic() + self.settings.exit_timeout
        if failure is not None:
            self.reporter.log(
                f"could not start the flush thread ({failure}): feedback waits in the queue "
                "until a later log call can start one, or close() or the exit sends it",
                kind="thread",
            )
        elif _lifecycle.exiting():
            self._send_here()

    def _start_locked(self) -> Optional[RuntimeError]:
        """Start the flush thread (and, with a spool, the sender); the error if either cannot
        start, and then neither runs on (one that did start ends at its first look)."""
        self._generation += 1
        loops = [(_worker, "humanloop-feedback-flush")]
        if self._spool is not None:
            # Sending has a thread of its own, so that a slow service never holds up the writes
            # to disk: a burst goes to disk at the speed of validation, not of round trips.
            loops.append((_sender, "humanloop-feedback-send"))
        threads = [
            threading.Thread(
                target=loop,
                args=(weakref.ref(self), self._generation, self.token),
                name=name,
                daemon=True,
            )
            for loop, name in loops
        ]
        try:
            for thread in threads:
                start_without_signals(thread)
        except RuntimeError as error:  # "can't start new thread", or at interpreter shutdown
            self._generation += 1
            return error
        self._idle = False
        self._thread = threads[0]
        self._sender = threads[1] if len(threads) > 1 else None
        return None

    def _help_locked(self, generation: int) -> None:
        """Start one more flush thread if a backlog waits and the window has room for it."""
        if self._helpers + 1 >= min(self._max_in_flight, self._window.size):
            return
        if _lifecycle.exiting():  # no thread starts at exit: the first one drains alone
            return
        thread = threading.Thread(
            target=_helper,
            args=(weakref.ref(self), generation, self.token),
            name="humanloop-feedback-flush",
            daemon=True,
        )
        try:
            start_without_signals(thread)
        except RuntimeError:  # at interpreter shutdown: the first thread carries on alone
            return
        self._helpers += 1

    def _due_locked(self) -> bool:
        """Whether a batch should go now rather than wait to fill (``batching.due``)."""
        return batching.due(len(self._queue), self._full_locked(), hurry=self._hurry_locked())

    def _full_locked(self) -> int:
        return batching.full(
            self._batch_size, self._max_batch, self._max_in_flight, self._window.size
        )

    def _take_locked(self, generation: int) -> tuple[list[Captured], int, Turn]:
        """The next batch off the queue, in line for its data_ids; another thread helps with
        what is left if it is a backlog."""
        queue = self._queue
        take = batching.take(len(queue), self._batch_size, self._max_batch)
        batch = [queue.popleft() for _ in range(take)]
        epoch = self._books.take(take)
        turn = self._turns.register(_data_ids(batch))
        if self._backlog_locked():
            self._help_locked(generation)
        self._notify_at = self._max_batch  # from now on a kick means a backlog (see _kick)
        return batch, epoch, turn

    def _send_here(self) -> None:
        """Send what is queued on the calling thread, within the deadline (at exit)."""
        while True:
            with self._cond:
                queue = self._queue
                take = min(len(queue), self._batch_size)
                if not take:
                    return
                batch = [queue.popleft() for _ in range(take)]
                epoch = self._books.take(take)
                turn = self._turns.register(_data_ids(batch))
            self.process(batch, epoch, turn)

    # -- the flush thread -----------------------------------------------------------------------

    def next_batch(self, generation: int) -> Optional[tuple[list[Captured], int, Optional[Turn]]]:
        """Wait for something to send: the batch (empty after an idle wait), its epoch and turn.

        None when the thread should end: a close has drained the queue and every helper is done,
        or its deadline passed (what is left then is written off here, in the same step), or a
        newer thread took over.
        """
        with self._cond:
            if generation != self._generation:
                return None
            queue = self._queue
            now = time.monotonic()
            late = now >= self._deadline
            if late or (self._closing and not queue):
                if self._helpers and now < self._deadline + _GRACE:
                    # Their batches are still being sent; at the deadline their requests are cut
                    # off, and each reports its own records, as this thread does.
                    self._cond.wait(self._deadline + _GRACE - now)
                    return [], self._books.epoch, None
                # Idle is published first, and the queue looked at again after: the caller
                # appends without the lock and then reads _idle, so a record appended from here
                # on is either seen below or sees _idle and starts a thread of its own.
                self._idle = True
                if late:
                    left = [queue.popleft() for _ in range(len(queue))]
                    self._write_off_locked(left, "the close deadline passed")
                elif queue:  # appended after the look above: this thread sends it too
                    self._idle = False
                    return self._take_locked(generation)
                self._cond.notify_all()
                return None
            if not queue:
                self._nap_locked(self._flush_interval)
                return [], self._books.epoch, None
            if not self._due_locked():
                remaining = batching.wait_to_fill(
                    queue[0][TIMESTAMP], time.time(), self._flush_interval
                )
                if remaining > 0:
                    self._nap_locked(remaining)
                    return [], self._books.epoch, None
            return self._take_locked(generation)

    def _nap_locked(self, seconds: float) -> None:
        """The flush thread waits for a batch to fill; a full one wakes it (``_kick``).

        Meanwhile the caller's path kicks at a full batch; while a thread sends (from
        ``_take_locked`` on), at a full request's worth, which calls for a helper.
        """
        self._waiting = True
        self._notify_at = self._full_locked()
        try:
            self._cond.wait(seconds)
        finally:
            self._waiting = False

    def help_batch(self, generation: int) -> Optional[tuple[list[Captured], int, Turn]]:
        """A helper's next batch; None, and the helper ends, once no backlog waits."""
        with self._cond:
            if (
                generation == self._generation
                and self._backlog_locked()
                and time.monotonic() < self._deadline
            ):
                return self._take_locked(generation)
            self._helpers -= 1
            self._cond.notify_all()
            return None

    @property
    def closing(self) -> bool:
        return self._closing

    def housekeeping(self) -> None:
        """Say once per burst that records were dropped, from the queue or the spool."""
        dropped = self._books.dropped
        if dropped > self._dropped_reported:
            self.reporter.report(
                QueueFullError(dropped - self._dropped_reported, self._max_queue_size), kind="drop"
            )
            self._dropped_reported = dropped
        evicted = self._books.evicted
        if evicted > self._evicted_reported and not self._evicting:  # the burst is over
            self.reporter.report(
                SpoolError(
                    self.settings.spool_path or "",
                    f"dropped the {evicted - self._evicted_reported} oldest record(s): the spool "
                    f"is over max_spool_bytes={self.settings.max_spool_bytes}",
                ),
                kind="evict",
            )
            self._evicted_reported = evicted

    def _write_off_locked(self, left: list[Captured], reason: str) -> None:
        """Count as failed what is unfinished, queued (``left``) or in flight; report it later.

        A send still in flight is written off: when it ends, its outcome is no longer counted
        (its epoch has passed), so every record stays in exactly one bucket. The report waits
        for ``report_written_off``, outside the lock.
        """
        unfinished = self._books.write_off(len(left))
        if not unfinished:
            return
        self._cond.notify_all()
        in_flight = unfinished - len(left)
        detail = f"; {in_flight} were in a request that did not end" if in_flight else ""
        self._unreported.append(
            DeliveryError(
                f"gave up on feedback: {reason}{detail}",
                count=unfinished,
                read_records=partial(self._bodies_of, left),
            )
        )

    def report_written_off(self) -> None:
        with self._lock:
            errors, self._unreported = self._unreported, []
        for error in errors:
            self.reporter.report(error, kind="abandon", level=logging.ERROR)

    def _bodies_of(self, items: list[Captured]) -> list[Mapping[str, Any]]:
        """What would have been sent, for reports, then what could be read of the invalid ones.

        At exit this may be the whole queue: validated as one batch and read back in one
        ``json`` call, it costs about a second less for 100,000 records than one by one, and
        still a third of a second, so a write-off reads it only when its ``records`` are asked
        for (after the deadline, and only if someone asks).
        """
        try:
            texts, errors = to_payloads(items, self._default_user)
        except Exception:  # never lose the report over it
            return [{"data_id": safe_repr(item[DATA_ID])} for item in items]
        bodies: list[Mapping[str, Any]] = json.loads(f"[{','.join(texts)}]")
        return bodies + [error.record for error in errors]

    # -- one batch, on the flush thread or (blocking mode) the caller's ------------------------

    def _finish(
        self,
        epoch: int,
        *,
        sent: int = 0,
        rejected: int = 0,
        failed: int = 0,
        out_of_time: bool = False,
        from_disk: int = 0,
    ) -> bool:
        """Count an outcome; False if close() already wrote these records off (and reported them).

        ``out_of_time``: the failure was a transient one that a close's deadline ended.
        ``from_disk``: of these records, how many were rows of the spool.
        """
        with self._cond:
            counted = self._books.finish(
                epoch,
                sent=sent,
                rejected=rejected,
                failed=failed,
                out_of_time=out_of_time and self._deadline < math.inf,
                from_disk=from_disk,
            )
            if counted:
                self._cond.notify_all()
            return counted

    def process(self, batch: list[Captured], epoch: int, turn: Optional[Turn] = None) -> None:
        """Validate each record, then deliver the valid ones; every record ends in one bucket.

        With a ``turn``, the batch waits for earlier batches about its data_ids to be answered.
        """
        try:
            self._validate_and_deliver(batch, epoch, turn)
        finally:
            if turn is not None:
                with self._cond:
                    self._turns.done(turn)

    def _validate_and_deliver(
        self, batch: list[Captured], epoch: int, turn: Optional[Turn]
    ) -> None:
        try:
            valid, errors = to_payloads(batch, self._default_user)
        except Exception:  # to_payloads promises not to, but never lose the count: one by one
            valid, errors = self._one_by_one(batch, epoch)
        if errors:
            self._refuse(errors, epoch)
        if not valid:
            return
        if turn is None or self._turns.wait(turn, until=lambda: epoch != self._books.epoch):
            self._deliver(valid, epoch)

    def _one_by_one(
        self, batch: list[Captured], epoch: int
    ) -> tuple[list[Payload], list[FeedbackValidationError]]:
        valid: list[Payload] = []
        errors: list[FeedbackValidationError] = []
        for item in batch:
            try:
                valid.append(to_payload(item, self._default_user)[1].decode("utf-8"))
            except FeedbackValidationError as error:
                errors.append(error)
            except Exception as error:
                self._finish(epoch, rejected=1)
                self.reporter.log(
                    f"could not read a feedback record: {safe_repr(error)}", kind="bug"
                )
        return valid, errors

    # SendControl, for the transport (through _Send, one per request).
    @property
    def naps_cut(self) -> int:
        return self._naps_cut

    def sleep(self, seconds: float, seen: int) -> int:
        """A backoff wait of a send that has seen ``seen`` closes begin; one begun since then
        cuts it short (or skips it), so that the send looks at its deadline again. Returns the
        count now, for the same send's next wait."""
        spool = self._spool
        # With a spool, a long wait (Retry-After) must not let the spool's lease lapse: others
        # would take the rows of this live process, and send them a second time.
        step = seconds if spool is None else _UPKEEP_EVERY
        end = time.monotonic() + seconds
        while True:
            remaining = end - time.monotonic()
            with self._nap:
                if self._naps_cut != seen or remaining <= 0:
                    return self._naps_cut
                self._nap.wait(min(remaining, step))
            if spool is not None:
                with contextlib.suppress(SpoolError):
                    spool.heartbeat()

    def _cut_naps(self) -> None:
        with self._nap:
            self._naps_cut += 1
            self._nap.notify_all()

    def retrying(self, error: DeliveryError, _wait: float) -> None:
        with self._lock:
            self._books.retry()
        self.reporter.problem(error)

    def deadline_for(self, epoch: int) -> float:
        """The deadline of a send of ``epoch``: long past once close() has written it off.

        Its records are then counted failed and reported as given up on, so it must make no
        further attempt, not even after the close has returned and lifted the deadline: a
        retry would deliver what was reported lost, and twice if the cut-off attempt landed.
        """
        return self._deadline if epoch == self._books.epoch else -math.inf

    def _send(self, chunk: list[Payload], suspect_after: int, epoch: int) -> None:
        """One POST of ``chunk`` with retries, within the window of requests in flight;
        ``suspect_after`` attempts of a suspect answer end it early (0: never)."""
        body = encode_array(chunk)
        window = self._window
        deadline = partial(self.deadline_for, epoch)
        control = _Send(self, deadline, suspect_after or _NEVER, window.acquire(deadline))
        try:
            self.transport.send(body, chunk, control)
        except DeliveryError as error:
            if error.retryable:
                control.congested()
            raise
        else:
            window.succeeded()
        finally:
            window.release()

    def _deliver(self, items: list[Payload], epoch: int) -> None:
        """Send ``items`` as the delivery policy (``_delivery``) decides; whatever the service
        refuses costs only the records it is about."""

        def answer(step: Step) -> Optional[Answer]:
            if isinstance(step, Send):
                return self._try(step.chunk, step.suspect_after, epoch)
            if isinstance(step, GiveUp):
                self._give_up(step.chunk, _poisoned(), epoch)
            else:
                self._outage = True
            return None

        drive(deliver(items, lambda: self._outage), answer)

    def _try(self, chunk: list[Payload], suspect_after: int, epoch: int) -> Answer:
        """Send ``chunk`` and count what became of it; the parts left to send come back.

        The outcome is the policy's (``_delivery.Outcome``): accepted, rejected by a 422 (the
        named records), suspect ``suspect_after`` times in a row (nothing counted yet), or failed
        (given up on, or split after a 413).
        """
        try:
            self._send(chunk, suspect_after, epoch)
        except UnprocessableEntityError as error:
            return Outcome.REJECTED, self._split_422(chunk, error, epoch)
        except APIError as error:
            if error.status == 413 and len(chunk) > 1:
                return Outcome.FAILED, halves(chunk)
            if suspect_after and suspect(error.status):
                return Outcome.SUSPECT, []
            self._give_up(chunk, error, epoch)
        except DeliveryError as error:
            self._give_up(chunk, error, epoch)
        except Exception as error:  # a bug, not the network: still account for the records
            self._give_up(chunk, DeliveryError(f"unexpected error: {safe_repr(error)}"), epoch)
        else:
            self._auth_failed = self._outage = False
            self._retry_wait = 0.0
            self._finish(epoch, sent=len(chunk), from_disk=self._settle(chunk))
            self.reporter.recovered()
            return Outcome.OK, []
        return Outcome.FAILED, []

    def _split_422(
        self, chunk: list[Payload], error: UnprocessableEntityError, epoch: int
    ) -> list[list[Payload]]:
        """Reject the items a 422 names; return what is left to send (bisected if none named)."""
        named = _details.item_errors(error.details, len(chunk))
        indices, rest = split_422(chunk, named)
        if not indices:
            return rest
        if not named:
            reasons = _details.body_errors(error.details, 1) or [error.message]
            named = {0: [("", reason) for reason in reasons]}
        rejected = [(json.loads(chunk[index]), named[index]) for index in indices]
        from_disk = self._settle([chunk[index] for index in indices])
        counted = self._finish(epoch, rejected=len(rejected), from_disk=from_disk)
        for record, fields in rejected if counted else []:
            reasons = [f"{field}: {message}" if field else message for field, message in fields]
            self.reporter.report(
                UnprocessableEntityError(
                    f"Humanloop rejected feedback for data_id={record.get('data_id')!r}: "
                    + _details.describe(fields),
                    error.details,
                    [(record, reasons)],
                ),
                kind="422",
            )
        return rest

    def _give_up(self, chunk: list[Payload], error: DeliveryError, epoch: int) -> None:
        if error.retryable and self._keep_spooled(chunk):
            return  # kept on disk, to be tried again later: nothing is given up for time alone
        from_disk = self._settle(chunk)
        if not self._finish(
            epoch, failed=len(chunk), out_of_time=error.retryable, from_disk=from_disk
        ):
            return  # written off and reported by close() already
        error.records = [json.loads(payload) for payload in chunk]
        if isinstance(error, AuthenticationError):
            if self._auth_failed:
                return  # said once already; the counters still show every failed record
            self._auth_failed = True
            self.reporter.report(error, kind="auth", level=logging.ERROR)
            return
        self.reporter.report(error, kind=f"failed:{type(error).__name__}", level=logging.ERROR)

    # -- the spool: persist, then send ----------------------------------------------------------

    def step(self, generation: int) -> bool:
        """One round of the flush thread; False when it should end."""
        if self._spool is not None:
            return self._spool_step(generation)
        taken = self.next_batch(generation)
        if taken is None:
            self.report_written_off()
            self.housekeeping()
            return False
        batch, epoch, turn = taken
        if batch:
            self.process(batch, epoch, turn)
        self.housekeeping()
        return True

    def _spool_step(self, generation: int) -> bool:
        """The writer's round: move what is queued to disk at once, and keep the spool.

        A record is on disk within a moment of the call (the first of a burst wakes the thread).
        When closing, the queue goes to disk, then the writer waits for the sender to finish
        within the deadline; what is left stays on disk.
        """
        with self._cond:
            if generation != self._generation:
                return False
            queue = self._queue
            now = time.monotonic()
            late = now >= self._deadline
            stop = late or (self._closing and not queue)
            if not queue and not stop and now < self._next_upkeep:
                quiet = now - self._evicted_at
                if not self._evicting or quiet < _EVICTIONS_QUIET:
                    # (A burst of evictions is over, and said, once none came for a moment.)
                    wake = self._next_upkeep - now
                    if self._evicting:
                        wake = min(wake, _EVICTIONS_QUIET - quiet)
                    self._cond.wait(wake)
                    return True
                self._evicting = False
            if stop:
                # Published first, then the queue looked at again (as in next_batch): a record
                # appended from here on, while this thread waits for the sender, sees _idle and
                # starts a writer and a sender of its own.
                self._idle = True
                if queue and not late:  # appended after the look above: to disk with the rest
                    self._idle = False
                    stop = False
            take = len(queue) if (late or self._closing) else min(len(queue), _SPOOL_CHUNK)
            items = [queue.popleft() for _ in range(take)]
            epoch = self._books.take(take)
            # This writer's sender and deadline: once idle is out, a record may start new ones.
            sender, deadline = self._sender, self._deadline
        if items:
            self._to_spool(items, epoch)
            with self._cond:
                self._send_wake.notify()  # rows to send
        if stop:
            if sender is not None and sender is not threading.current_thread():
                sender.join(max(0.0, deadline - time.monotonic()) + _GRACE)
            with self._cond:
                self._cond.notify_all()
            self._leave_on_disk()
            self._evicting = False
            self.housekeeping()
            return False
        self._upkeep()
        self.housekeeping()
        return True

    def send_step(self, generation: int) -> bool:
        """The sender's round: send the oldest batch of own rows when one is due."""
        with self._cond:
            if generation != self._generation or self._spool is None:
                return False
            now = time.monotonic()
            if now >= self._deadline:
                return False
            if not self._send_due_locked(now):
                if self._closing or self._idle:  # nothing more to send before stopping
                    return False
                self._send_wake.wait(self._spool_wait_locked(now))
                return True
            epoch = self._books.epoch
        self._send_spooled(epoch)
        return True

    def _send_due_locked(self, now: float) -> bool:
        books = self._books
        if self._spool is None or books.spooled <= len(self._rows) or now < self._retry_at:
            return False
        return (
            self._closing
            or books.spooled >= self._batch_size
            or books.flush_target > books.finished
            or now - self._last_send >= self._flush_interval
        )

    def _spool_wait_locked(self, now: float) -> float:
        """The sender's wait: until a batch is due by age or after an outage (the writer and
        flush() wake it sooner)."""
        wake = now + _UPKEEP_EVERY
        if self._books.spooled > len(self._rows):
            wake = max(self._retry_at, self._last_send + self._flush_interval)
        return max(wake - now, 0.001)

    def _to_spool(self, items: list[Captured], epoch: int) -> None:
        """Write records to disk in one transaction; on a spool fault, send them instead.

        Records are written as captured, their fields as a JSON array: the whole batch is one
        ``json`` call and one SQL statement, so a burst reaches the disk faster than the
        application can log it (the queue must not overflow) and the flush thread hardly ever
        waits to win the GIL back from it. A record is validated when it is sent (see
        ``_unspool``). If some field is not plain JSON (a ``datetime``, an object, NaN), each
        record is looked at on its own: the plain ones are written as captured, the others are
        validated now and written as their request bodies.
        """
        spool = self._spool
        rows: list[tuple[str, bytes, float]] = []
        try:
            packed = _CAPTURED.encode(items)
        except (TypeError, ValueError):
            rows = self._rows_one_by_one(items, epoch)
        else:
            if spool is not None and self._write(
                spool, partial(spool.append_packed, packed), items
            ):
                return
            rows = [(str(item[DATA_ID]), _CAPTURED.encode(item).encode(), 0.0) for item in items]
        spool = self._spool
        if not rows:
            return
        if spool is not None and self._write(spool, partial(spool.append, rows), rows):
            return
        # No spool (any more): straight to the service.
        payloads: list[Payload] = []
        errors: list[FeedbackValidationError] = []
        for _, body, _ in rows:
            try:
                payloads.append(self._unspool(body))
            except FeedbackValidationError as error:
                errors.append(error)
        self._refuse(errors, epoch)
        if payloads:
            with self._send_lock:
                self._deliver(payloads, epoch)

    def _write(self, spool: Spool, write: Callable[[], int], records: Sized) -> bool:
        """One write of ``records`` to the spool, counted with it; False if the spool failed."""
        try:
            with self._spool_lock:
                evicted = write()
                # A row in flight that the write evicted is settled by its answer, not lost: it
                # stays counted as spooled until then (claims register under this lock too).
                in_flight = set(self._rows.values())
                own_evicted = spool.evicted_own_ids
                self._evicted_in_flight.update(row for row in own_evicted if row in in_flight)
                lost = len(own_evicted) - len(in_flight.intersection(own_evicted))
                with self._lock:
                    self._books.to_disk(len(records), lost)
                    if lost:
                        self._cond.notify_all()
        except SpoolError as error:
            self._spool_broken(error)
            return False
        if evicted > 0:
            self._evicting = True
            self._evicted_at = time.monotonic()
        return True

    def _rows_one_by_one(self, items: list[Captured], epoch: int) -> list[tuple[str, bytes, float]]:
        """Rows for records of which some are not plain JSON; those are validated now."""
        rows: list[tuple[str, bytes, float]] = []
        encode = _CAPTURED.encode
        for item in items:
            try:
                data = encode(item).encode("utf-8")
                data_id = item[DATA_ID]
                rows.append((data_id if type(data_id) is str else "", data, item[TIMESTAMP]))
                continue
            except (TypeError, ValueError):  # not plain JSON: validate it now
                pass
            try:
                payload, data = to_payload(item, self._default_user)
            except FeedbackValidationError as error:
                self._finish(epoch, rejected=1)
                self.reporter.report(error, kind=f"invalid:{error.field}")
                continue
            rows.append((payload["data_id"], data, item[TIMESTAMP]))
        return rows

    def _unspool(self, body: bytes) -> Payload:
        """A row's record as it is sent; raises FeedbackValidationError if it is refused."""
        if body[:1] != b"[":  # a request body, validated when it was written
            return body.decode("utf-8")
        fields = json.loads(body)
        if type(fields[VALUE]) is list:
            fields[VALUE] = tuple(fields[VALUE])  # as captured: a list value is frozen
        return to_payload(tuple(fields), self._default_user)[1].decode("utf-8")

    def _refuse(
        self, errors: list[FeedbackValidationError], epoch: int, from_disk: int = 0
    ) -> None:
        self._finish(epoch, rejected=len(errors), from_disk=from_disk)
        for error in errors:
            self.reporter.report(error, kind=f"invalid:{error.field}")

    def _upkeep(self) -> None:
        """Every few seconds: the heartbeat, rows of dead processes, rows past their age."""
        spool = self._spool
        now = time.monotonic()
        if spool is None or now < self._next_upkeep:
            return
        self._next_upkeep = now + _UPKEEP_EVERY
        try:
            with self._spool_lock:
                # Rows in flight are settled by their answer, whatever happened to them on disk.
                in_flight = set(self._rows.values())
                adopted = spool.adopt()
                expired = spool.expire(self.settings.spool_max_age, keep=in_flight)
                own = spool.count(leave_out=in_flight)
                with self._lock:
                    self._books.upkeep(adopted, len(expired), own + len(in_flight))
                    self._cond.notify_all()
        except SpoolError as error:
            self._spool_broken(error)
            return
        if now - self._evicted_at >= _EVICTIONS_QUIET:
            self._evicting = False
        for notice in spool.take_notices():
            self.reporter.report(notice, kind="spool-notice")
        if expired:
            self.reporter.report(
                DeliveryError(
                    f"gave up on feedback older than spool_max_age "
                    f"({self.settings.spool_max_age:g}s) in the spool at {spool.path}",
                    [json.loads(row.body) for row in expired[:100]],
                    count=len(expired),
                ),
                kind="expired",
                level=logging.ERROR,
            )

    def _send_spooled(self, epoch: int) -> None:
        """Send the oldest batch of this process's rows; each row is deleted once answered."""
        spool = self._spool
        if spool is None:
            return
        payloads: list[Payload] = []
        refused: list[int] = []
        errors: list[FeedbackValidationError] = []
        try:
            # Claimed and registered as in flight in one step for the writer, whose eviction
            # counts as lost only the rows not in flight.
            with self._spool_lock:
                rows = spool.claim(self._batch_size, exclude=set(self._rows.values()))
                for row in rows:
                    try:
                        unspooled = self._unspool(row.body)
                    except FeedbackValidationError as error:
                        refused.append(row.id)
                        errors.append(error)
                        continue
                    self._rows[id(unspooled)] = row.id
                    payloads.append(unspooled)
        except SpoolError as error:
            self._spool_broken(error)
            return
        self._last_send = time.monotonic()
        if not rows:
            return
        if refused:
            try:
                with self._spool_lock:
                    spool.delete(refused)
            except SpoolError as error:
                self._spool_broken(error)
            self._refuse(errors, epoch, from_disk=len(refused))
        try:
            with self._send_lock:
                self._deliver(payloads, epoch)
        finally:
            # Only this send's rows: a sender started since (after a close) has its own here.
            for payload in payloads:
                self._rows.pop(id(payload), None)

    def _settle(self, chunk: list[Payload]) -> int:
        """The service answered for these records: their rows leave the spool. Returns how many
        came from it, for the count of the answer (``_finish``'s ``from_disk``)."""
        rows = self._rows
        if not rows:  # not from the spool (always so without one)
            return 0
        ids = [row for row in (rows.pop(id(p), None) for p in chunk) if row is not None]
        spool = self._spool
        if not ids or spool is None:
            return 0
        self._evicted_in_flight.difference_update(ids)  # settled by this answer, not lost
        try:
            with self._spool_lock:
                spool.delete(ids)
        except SpoolError as error:  # they may be sent again by whoever reads the file next
            self._spool_broken(error)
        return len(ids)

    def _keep_spooled(self, chunk: list[Payload]) -> bool:
        """Time ran out on records that are on disk: keep them, and wait before trying again.

        The wait doubles from one second to a minute, with jitter, so that processes sharing an
        outage do not come back in step.
        """
        if self._spool is None or any(id(p) not in self._rows for p in chunk):
            return False
        rows = [self._rows.pop(id(payload)) for payload in chunk]
        gone = self._evicted_in_flight.intersection(rows)
        if gone:  # evicted while in flight, and not delivered: lost after all
            self._evicted_in_flight -= gone
            with self._spool_lock, self._lock:
                self._books.lost_from_disk(len(gone))
                self._cond.notify_all()
        self._retry_wait = min(max(1.0, self._retry_wait * 2), _SPOOL_RETRY_CAP)
        self._retry_at = time.monotonic() + self._retry_wait * random.uniform(0.8, 1.2)
        return True

    def _spool_broken(self, error: SpoolError) -> None:
        """Say once that the spool failed, and keep feedback in memory from now on."""
        self._spool = None
        self._rows.clear()
        self._evicted_in_flight.clear()
        spooled = self._books.spooled
        stay = f", and {spooled} record(s) stay in the file" if spooled else ""
        self.reporter.report(
            SpoolError(error.path, f"{error.reason}; feedback is kept in memory from now on{stay}"),
            kind="spool",
            level=logging.ERROR,
        )

    def _leave_on_disk(self, *, done: bool = False) -> None:
        """The flush thread stops: at exit (or when ``done``), hand the rows left to the next
        process, and say so."""
        spool = self._spool
        if spool is None or not (done or _lifecycle.exiting()):
            return
        try:
            left = spool.release()
        except SpoolError as error:
            self._spool_broken(error)
            return
        if left:
            self.reporter.log(
                f"{left} feedback record(s) stay in the spool at {spool.path}: the next process "
                f"that uses it sends them, or run: humanloop-logging spool drain {spool.path}",
                kind="left",
            )

    def start_now(self) -> None:
        """With a spool, open it and start at once: an earlier process may have left records to
        send, and a burst right after start-up must not wait for the file to be opened."""
        spool = self._spool
        if spool is None:
            return
        try:
            self._upkeep()  # opens the file, takes over what dead processes left
        except SpoolError as error:
            self._spool_broken(error)
            return
        with self._cond:
            failure = self._start_locked() if self._idle else None
        if failure is not None:
            self.reporter.log(f"could not start the flush thread ({failure})", kind="thread")

    # -- flush, close, stats --------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        if own.token is self.token:
            return False  # called from on_error on the flush thread: waiting would deadlock
        end = time.monotonic() + timeout
        with self._cond:
            books = self._books
            target = books.taken + len(self._queue)
            if target > books.flush_target:
                books.flush_target = target
                self._cond.notify_all()
                self._send_wake.notify_all()
                self._help_busy_locked()
            while books.finished < target:
                remaining = end - time.monotonic()
                if remaining <= 0 or (self._idle and not self._blocking):
                    # No thread runs (closed, or exited): what is left waits in the spool for
                    # the next process, and waiting would only pass the time.
                    return False
                self._cond.wait(remaining)
            return True

    def begin_close(self, timeout: float) -> None:
        """Send everything queued now, and stop by ``timeout`` from now (the earlier one wins)."""
        with self._cond:
            deadline = time.monotonic() + timeout
            if not self._closing or deadline < self._deadline:
                self._deadline = deadline
            self._closing = True
            self._cond.notify_all()
            self._send_wake.notify_all()
            self._help_busy_locked()
        self._cut_naps()  # a backoff wait is cut short ...
        self._window.wake()  # ... and so is a wait for room in the window ...
        self.transport.cut_off_at(self._deadline)  # ... and a request already running

    def wait_closed(self) -> bool:
        """Wait for the close begun by ``begin_close``; False if time ran out on some records."""
        written_off = self._books.written_off
        late_to_disk: Optional[tuple[list[Captured], int]] = None
        with self._cond:
            thread, deadline = self._thread, self._deadline
        if deadline == math.inf:
            # Another close ended this one's work already, and any thread running now was
            # started by a later record: it is not this close's to wait for, or to write off.
            self.report_written_off()
            self.reporter.release_held()
            return True
        with self._cond:
            stranded = self._idle and bool(self._queue)
        if stranded:  # no thread could be started for these: this close sends them
            self._send_here()
        current = threading.current_thread()
        if thread is not None and thread is not current:
            # (It may wait for its helpers until _GRACE past the deadline.)
            thread.join(max(0.0, deadline - time.monotonic()) + 2 * _GRACE)
        with self._cond:
            if thread is not None and thread is not current and thread.is_alive():
                if thread is self._thread and not self._idle:
                    # Stuck in a send that overran the deadline: write it off, and let the
                    # thread end when the send returns. With a spool, nothing is written off:
                    # the rows stay on disk, and what is queued goes there too.
                    self._generation += 1
                    self._idle = True
                    left = [self._queue.popleft() for _ in range(len(self._queue))]
                    if self._spool is None:
                        self._write_off_locked(left, "the close deadline passed")
                    else:
                        late_to_disk = (left, self._books.take(len(left)))
            elif self._idle:
                # Blocking mode, or sends on the caller's thread at exit: wait for those in flight
                # (records in the spool are not in flight: they wait on disk).
                end = deadline + _GRACE
                while self._books.unfinished > 0 and self._idle:
                    remaining = end - time.monotonic()
                    if remaining <= 0:
                        self._write_off_locked([], "the close deadline passed")
                        break
                    self._cond.wait(remaining)
            if self._idle and not _lifecycle.exiting():
                # Closed: the next record starts afresh. At exit the deadline stays, so that
                # everything together keeps within exit_timeout.
                self._closing = False
                self._deadline = math.inf
        if late_to_disk is not None:
            self._to_spool(*late_to_disk)
            self._leave_on_disk()
        self.report_written_off()
        self.transport.close()
        self.reporter.release_held()
        return self._books.written_off == written_off

    def stats(self) -> FeedbackStats:
        with self._lock:
            return self._books.stats(len(self._queue))

    def after_fork_in_child(self) -> None:
        """The child starts empty: the parent's queue is the parent's to send."""
        self._reset()
        self.transport.reset_after_fork()


#: Writes a captured record's fields as a JSON array; strict, since SQLite reads it back.
_CAPTURED = json.JSONEncoder(allow_nan=False)

#: Most records moved from the queue to the spool in one transaction.
_SPOOL_CHUNK = 50_000
#: Evictions from the spool are one burst, said once, until none came for this long.
_EVICTIONS_QUIET = 1.0
#: Seconds between the spool's heartbeats (its lease is 30 s) and its other upkeep.
_UPKEEP_EVERY = 5.0
#: The longest wait before records kept on disk through an outage are tried again.
_SPOOL_RETRY_CAP = 60.0


#: How long past its deadline a close waits for a send that was cut off to return.
_GRACE = 0.05

#: Never: more attempts than any send makes.
_NEVER = 1 << 30


def _data_ids(batch: list[Captured]) -> frozenset[str]:
    """The data_ids of a batch that may be sent (any other kind is refused before sending)."""
    return frozenset({key for item in batch if type(key := item[DATA_ID]) is str})


def _poisoned() -> DeliveryError:
    return DeliveryError(
        "Humanloop fails on this record alone, twice, while other records of its batch were "
        "accepted: given up on it so that it costs only itself"
    )


def _worker(ref: weakref.ReferenceType[_Engine], generation: int, token: object) -> None:
    """The flush thread's loop. It holds the engine only while working on it, or closing it.

    A shipper dropped without close() is closed by its finalizer; from then on the thread keeps
    the engine alive until everything is sent or given up on, so nothing vanishes with it.
    """
    own.token = token
    first = ref()
    if first is not None and first._spool is None:  # with a spool, what is queued is on disk
        _lifecycle.warn_if_sigterm_will_lose_feedback()
    del first
    keep: Optional[_Engine] = None
    while True:
        engine = ref()
        if engine is None:
            return
        try:
            if not engine.step(generation):
                return
        except Exception as exc:  # never let the flush thread die silently
            engine.reporter.log(
                f"flush thread error: {safe_repr(exc)}", kind="bug", level=logging.ERROR
            )
        keep = engine if engine.closing else keep
        del engine


def _helper(ref: weakref.ReferenceType[_Engine], generation: int, token: object) -> None:
    """A flush thread beside the first: sends batches of a backlog until none is due."""
    own.token = token
    while True:
        engine = ref()
        if engine is None:
            return
        taken = engine.help_batch(generation)
        if taken is None:
            return
        try:
            engine.process(*taken)
        except Exception as exc:  # never let the thread die silently
            engine.reporter.log(
                f"flush thread error: {safe_repr(exc)}", kind="bug", level=logging.ERROR
            )
        del engine, taken


class _Send:
    """The SendControl of one request: the engine's deadline and waits, and what is this
    request's own (when to suspect the batch, the window round it saw)."""

    __slots__ = ("_engine", "_naps_cut", "_round", "_suspect_after", "deadline")

    def __init__(
        self, engine: _Engine, deadline: Callable[[], float], suspect_after: int, round_: int
    ) -> None:
        self._engine = engine
        self.deadline = deadline  # the engine's, until close() writes this send off
        self._suspect_after = suspect_after
        self._round = round_
        self._naps_cut = engine.naps_cut  # a close begun from now on cuts this send's wait

    def sleep(self, seconds: float) -> None:
        self._naps_cut = self._engine.sleep(seconds, self._naps_cut)

    def retrying(self, error: DeliveryError, wait: float) -> None:
        if error.retryable:
            self.congested()
            if error.retry_after is not None:  # the service said when: the others wait too
                self._engine._window.pause(wait)
        self._engine.retrying(error, wait)

    def congested(self) -> None:
        """A 429, a 503 or another transient failure: fewer requests in flight (AIMD)."""
        self._round = self._engine._window.congested(self._round)

    def give_up_early(self, error: DeliveryError, attempts: int) -> bool:
        """Stop retrying a part that may hold a record the service fails on.

        The whole batch gets one retry before it is suspected, a part sent while isolating
        none, and a lone record one (so a flaky answer does not cost a good record).
        """
        return (
            isinstance(error, APIError)
            and suspect(error.status)
            and attempts >= self._suspect_after
        )


def _sender(ref: weakref.ReferenceType[_Engine], generation: int, token: object) -> None:
    """The sending thread's loop, with a spool: from disk to Humanloop."""
    own.token = token
    while True:
        engine = ref()
        if engine is None:
            return
        try:
            if not engine.send_step(generation):
                return
        except Exception as exc:  # never let the thread die silently
            engine.reporter.log(
                f"send thread error: {safe_repr(exc)}", kind="bug", level=logging.ERROR
            )
        del engine


class FeedbackShipper:
    """Queues feedback records and sends them to ``POST {base_url}/feedback`` in batches.

    Handler and processor given one shipper share its queue and its thread. Every argument left
    as None is read from its environment variable, then from the default (see the README).
    """

    @takes_settings
    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        transport: Optional[Transport] = None,
        **given: Unpack[SettingsArgs],
    ) -> None:
        refuse_unknown(type(self), given)
        settings = resolve(api_key, base_url, **given)
        if settings.blocking and settings.spool_path is not None:
            raise ConfigurationError(
                "spool_path does not go with blocking=True: a blocking call already waits "
                "for Humanloop's answer"
            )
        if transport is None:
            transport = HTTPTransport(
                api_key=settings.api_key,
                url=settings.feedback_url,
                timeout=settings.timeout,
                max_retry_time=settings.max_retry_time,
                connections=settings.max_in_flight,
            )
        engine = _Engine(settings, transport, settings.on_error)
        self._engine = engine
        self.settings = settings
        _lifecycle.register(engine)
        engine.start_now()
        # Dropped without close(): the engine drains within exit_timeout and its thread ends.
        finalizer = weakref.finalize(self, engine.begin_close, settings.exit_timeout)
        finalizer.atexit = False  # the exit hook drains every engine itself

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"FeedbackShipper(base_url={s.base_url!r}, batch_size={s.batch_size}, "
            f"blocking={s.blocking})"
        )

    @property
    def submit(self) -> Callable[[Captured], None]:
        """The caller's path: a captured record in, nothing out, never raises or blocks."""
        return self._engine.submit

    @property
    def thread_id(self) -> Optional[int]:
        """The ident of the flush thread, the running one or else the last; None before the first
        record. (Only to find the thread: once it has ended, a new thread may have its ident.)"""
        thread = self._engine._thread
        return None if thread is None else thread.ident

    def flush(self, timeout: float = 5.0) -> bool:
        """True once everything queued before the call is sent or given up on."""
        return self._engine.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> bool:
        """Send everything queued within ``timeout`` (default ``exit_timeout``), then stop.

        Returns False if this close had to give up on records because time ran out. Closing does
        not end the shipper for good: a record submitted afterwards starts it again, as
        ``logging.FileHandler`` reopens its file, so a close by someone else (``dictConfig()``)
        loses nothing. Safe to call twice, and from several threads.
        """
        engine = self._engine
        engine.begin_close(self.settings.exit_timeout if timeout is None else timeout)
        return engine.wait_closed()

    def stats(self) -> FeedbackStats:
        """A consistent snapshot of the counters."""
        return self._engine.stats()

    def report_internal(self, error: BaseException, timestamp: float) -> None:
        """For adapters: capturing a record raised. It is still counted, refused and reported."""
        try:
            self._engine.submit(unreadable(error, timestamp))
        except Exception:  # never into the caller's logging call
            self._engine.reporter.log("could not capture a feedback record", kind="capture")


#: The settings handler and processor accept besides ``shipper``, as declared in ``_config``.
SETTING_NAMES = NAMES


def attach(
    owner: type,
    shipper: Optional[FeedbackShipper],
    api_key: Optional[str],
    base_url: Optional[str],
    settings: SettingsArgs,
) -> tuple[FeedbackShipper, bool]:
    """The shipper an adapter (of class ``owner``) should use, and whether it owns and so closes it.

    Settings and a shared shipper are exclusive, so that a setting is never silently ignored.
    """
    refuse_unknown(owner, settings)
    if shipper is None:
        return FeedbackShipper(api_key, base_url, **settings), True
    given = {"api_key": api_key, "base_url": base_url, **settings}
    passed = sorted(name for name, value in given.items() if value is not None)
    if passed:
        raise ConfigurationError(f"pass either shipper= or settings, not both (got {passed})")
    return shipper, False
