"""The engine: the queue, the threads' lifetime, flush and close; shared by handler and processor.

A coordinator of parts with one job each:

- ``_ledger.Ledger``: every count, changed only there;
- ``_memory.Memory`` or ``_spooling.Spooled``: where records wait, and the flush thread's round;
- ``_sending.Sending``: validating and delivering a batch (``_delivery`` decides the requests);
- ``_workers``: the threads, and which thread is ours;
- ``_giving_up``: what a close gives up on, and what a full queue drops, counted and said;
- ``_lifecycle``: drains every engine however the process ends.

The flush thread runs only while there is work: it is started by the first record, ends when a
close has drained the queue, and is started again by the next record, as ``FileHandler`` reopens
its file. So a shipper closed by someone else (``dictConfig()`` closes every handler it replaces)
keeps delivering what is logged to it afterwards, and a forked child starts a thread only if it
logs feedback.

One rule makes the lock-free caller safe: the caller appends, then reads ``idle``; a thread that
stops publishes ``idle``, then looks at the queue again. So a record is always either seen by the
thread that stops or seen to need a thread of its own.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional, Union

from . import _batching as batching
from . import _lifecycle, _workers
from ._config import Settings
from ._flow import Turns
from ._giving_up import GivingUp
from ._ledger import FeedbackStats, Ledger
from ._memory import GRACE, Memory, data_ids
from ._record import Captured
from ._report import ErrorCallback, Reporter
from ._screening import screen_for
from ._sending import NO_DISK, Sending
from ._spool_sender import UPKEEP_EVERY
from ._spooling import Spooled
from ._workers import HELP, own

if TYPE_CHECKING:
    from ._spool import Spool
    from .shipper import Transport

__all__ = ["Engine"]

Pipeline = Union[Memory, Spooled]


class Engine:
    """The queue and the threads' lifetime; ``Books`` for sending (counts and deadline)."""

    def __init__(
        self, settings: Settings, transport: Transport, on_error: Optional[ErrorCallback]
    ) -> None:
        self.settings = settings
        self.transport = transport
        self._on_error = on_error
        # While more than a batch waits, a request takes up to this many (docs/delivery.md).
        self.max_batch = settings.batch_size * batching.BACKLOG_BATCHES
        self._max_queue_size = settings.max_queue_size  # read on the caller's path
        #: Stands for this engine where the engine itself must not be kept alive: on the events
        #: its processors shipped (see ``_bridge``), and on its own threads (see ``own``).
        self.token = object()
        self._spool: Optional[Spool] = None
        if settings.spool_path is not None and settings.enabled:  # disabled: nothing to keep
            from ._spool import Spool  # noqa: PLC0415 (only a process with a spool loads sqlite3)

            self._spool = Spool(settings.spool_path, max_bytes=settings.max_spool_bytes)
        self._reset()
        # Decided once: the caller's path is a single call either way. Disabled, a record is
        # validated and counted on the caller's thread, so that no thread starts.
        on_this_thread = settings.blocking or not settings.enabled
        self.submit: Callable[[Captured], None] = (
            self._submit_blocking if on_this_thread else self._submit_queued
        )

    def _reset(self) -> None:
        """Fresh state: at construction and in a forked child."""
        self.reporter = Reporter(self._on_error)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.queue: collections.deque[Captured] = collections.deque()
        self.books = Ledger()  # every count: changed there only, with the lock held
        self._here = threading.local()  # ``reports``: under way on this thread (see finish)
        self.turns = Turns(self.cond)
        self.sending = Sending(
            transport=self.transport,
            books=self,
            reporter=self.reporter,
            default_user=self.settings.default_user,
            max_in_flight=self.settings.max_in_flight,
            turns=self.turns,
            lock=self.cond,
        )
        self.sending.screen = screen_for(self.settings.before_send, self.finish, self.reporter)
        self.sending.withhold = not self.settings.enabled
        self.broken_spool = self._spool is None
        self.pipeline: Pipeline = Memory(self)
        if self._spool is not None:
            self.pipeline = Spooled(self, self._spool)
            self.sending.disk = self.pipeline.sender
            self.sending.heartbeat_every = UPKEEP_EVERY
        #: The queue's length at which the caller's path wakes the flush thread.
        self.notify_at = self.pipeline.first_kick
        self.closing = False
        self.deadline = math.inf  # monotonic; brought forward by close()
        #: True while no flush thread runs; read without the lock on the caller's path.
        self.idle = True
        self.generation = 0  # of the flush thread: an older one that outlived a close ends
        self._thread: Optional[threading.Thread] = None
        self.giving_up = GivingUp(
            self.books,
            self.reporter,
            self.cond,
            self.settings.default_user,
            self.settings.max_queue_size,
        )

    def exit_timeout(self) -> float:
        return self.settings.exit_timeout

    @property
    def thread(self) -> Optional[threading.Thread]:
        """The flush thread, the running one or else the last; None before the first record."""
        return self._thread

    # -- the caller's path ---------------------------------------------------------------------

    def _submit_queued(self, item: Captured) -> None:
        # No lock on the common path: deque.append is atomic, and what was appended is counted
        # as taken + len(queue) under the lock by stats(). The size check may let one record per
        # concurrently logging thread past max_queue_size; the rare paths take the lock.
        queue = self.queue
        if len(queue) >= self._max_queue_size:
            with self.lock:
                self.books.drop()
            return
        queue.append(item)
        # Appended first, then idle read (see the module's docstring).
        if self.idle:
            self._wake()
        elif len(queue) == self.notify_at:
            with self.cond:
                self.pipeline.kick_locked()

    def _submit_blocking(self, item: Captured) -> None:
        with self.lock:
            epoch = self.books.take(1)
            turn = self.turns.register(data_ids([item]))
        self.sending.process([item], epoch, turn)

    def _wake(self) -> None:
        """Start the flush thread for what was just queued; at exit, send it on this thread.

        If no thread can be started, the records wait in the queue: the next record tries
        again, and a close (the exit's too) sends them. The caller never sends them itself but
        at exit, within what is left of ``exit_timeout``.
        """
        failure: Optional[RuntimeError] = None
        with self.cond:
            if not self.idle or not self.queue:
                return
            exiting = _lifecycle.exiting()
            if not exiting:
                self.closing = False
                self.deadline = math.inf
                failure = self._start_locked()
            elif self.deadline == math.inf:  # logged at exit, before the exit hook ran
                self.deadline = time.monotonic() + self.settings.exit_timeout
        if failure is not None:
            self.reporter.log(
                f"could not start the flush thread ({failure}): feedback waits in the queue "
                "until a later log call can start one, or close() or the exit sends it",
                kind="thread",
            )
        elif exiting:
            self._send_here()
        elif not self.pipeline.durable:  # with a spool, what is queued is on disk at once
            _lifecycle.warn_if_sigterm_will_lose_feedback()

    def _start_locked(self) -> Optional[RuntimeError]:
        """Start the pipeline's threads, all or none; the error if one cannot start."""
        self.generation += 1
        try:
            threads = _workers.start(self, self.pipeline.kinds, self.generation)
        except RuntimeError as error:  # "can't start new thread", or at interpreter shutdown
            self.generation += 1  # one that did start ends at its first round
            return error
        self.idle = False
        self._thread = threads[0]
        if isinstance(self.pipeline, Spooled):
            self.pipeline.started(threads)
        return None

    def start_helper(self, generation: int) -> bool:
        """One more flush thread for a backlog (``Memory``); False if it cannot start."""
        try:
            _workers.start(self, (HELP,), generation)
        except RuntimeError:  # at interpreter shutdown: the first thread carries on alone
            return False
        return True

    def round(self, kind: str, generation: int) -> bool:
        """One round of a thread of ``kind``; False when it should end."""
        return self.pipeline.round(kind, generation)

    def _send_here(self) -> None:
        """Send what is queued on the calling thread, within the deadline (at exit, or a close
        whose thread could not start)."""
        while True:
            with self.cond:
                take = min(len(self.queue), self.settings.batch_size)
                if not take:
                    return
                batch = [self.queue.popleft() for _ in range(take)]
                epoch = self.books.take(take)
                turn = self.turns.register(data_ids(batch))
            self.sending.process(batch, epoch, turn)

    def spool_broke(self) -> None:
        """The spool failed: from now on records wait in memory."""
        with self.cond:
            self.broken_spool = True
            self.pipeline = Memory(self)
            self.notify_at = self.settings.batch_size
            self.sending.disk = NO_DISK
            self.sending.heartbeat_every = math.inf
            self.cond.notify_all()

    # -- Books, for sending --------------------------------------------------------------------

    def finish(
        self,
        epoch: int,
        *,
        sent: int = 0,
        rejected: int = 0,
        failed: int = 0,
        filtered: int = 0,
        withheld: int = 0,
        out_of_time: bool = False,
        from_disk: int = 0,
        then: Optional[Callable[[], None]] = None,
    ) -> bool:
        """Count an outcome; False if close() already wrote these records off (and reported them).

        ``out_of_time``: the failure was a transient one that a close's deadline ended.
        ``from_disk``: of these records, how many were rows of the spool.
        ``then``: says the outcome (``on_error``, the log), if it was counted here; called outside
        the lock, and a flush() that waits for these records returns only after it.
        """
        count = sent + rejected + failed + filtered + withheld
        with self.cond:
            counted = self.books.finish(
                epoch,
                sent=sent,
                rejected=rejected,
                failed=failed,
                filtered=filtered,
                withheld=withheld,
                out_of_time=out_of_time and self.deadline < math.inf,
                from_disk=from_disk,
            )
            if not counted:
                return False
            self.cond.notify_all()
            if then is None:
                return True
            self.books.saying(count)
        here = self._here
        here.reports = getattr(here, "reports", 0) + 1  # (a report may log feedback: nested)
        try:
            then()
        finally:
            here.reports -= 1
            with self.cond:
                self.books.said(count)
                self.cond.notify_all()
        return True

    def retried(self) -> None:
        with self.lock:
            self.books.retry()

    def deadline_for(self, epoch: int) -> float:
        """The deadline of a send of ``epoch``: long past once close() has written it off.

        Its records are then counted failed and reported as given up on, so it must make no
        further attempt, not even after the close has returned and lifted the deadline: a
        retry would deliver what was reported lost, and twice if the cut-off attempt landed.
        """
        return self.deadline if epoch == self.books.epoch else -math.inf

    def current(self, epoch: int) -> bool:
        return epoch == self.books.epoch

    # -- what is given up on, and said ----------------------------------------------------------

    def write_off_locked(self, left: list[Captured], reason: str) -> None:
        self.giving_up.write_off_locked(left, reason)

    def housekeeping(self) -> None:
        """Say what was given up on or dropped, from the queue or the spool, once each."""
        self.giving_up.report()
        if isinstance(self.pipeline, Spooled):
            self.pipeline.housekeeping()

    # -- flush, close, stats, fork --------------------------------------------------------------

    def start_now(self) -> None:
        """With a spool, open it and start at once: an earlier process may have left records to
        send, and a burst right after start-up must not wait for the file to be opened."""
        pipeline = self.pipeline
        if not isinstance(pipeline, Spooled) or not pipeline.start_now():
            return
        with self.cond:
            failure = self._start_locked() if self.idle else None
        if failure is not None:
            self.reporter.log(f"could not start the flush thread ({failure})", kind="thread")

    def release_spool(self) -> None:
        """Hand the rows left in the spool to the next process now (``spool drain``)."""
        if isinstance(self.pipeline, Spooled):
            self.pipeline.release()

    def flush(self, timeout: float) -> bool:
        if own.token is self.token:
            return False  # called from on_error on the flush thread: waiting would deadlock
        end = time.monotonic() + timeout
        with self.cond:
            books = self.books
            target = books.taken + len(self.queue)
            if target > books.flush_target:
                books.flush_target = target
                self.cond.notify_all()
                self.pipeline.hurry_locked()
            # A report on this thread (on_error calling flush() with blocking=True) cannot be
            # waited for; any other is.
            reporting_here = getattr(self._here, "reports", 0) > 0
            while (books.finished if reporting_here else books.done) < target:
                remaining = end - time.monotonic()
                if remaining <= 0 or (self.idle and not self.settings.blocking):
                    # No thread runs (closed, or exited): what is left waits in the spool for
                    # the next process, and waiting would only pass the time.
                    return False
                self.cond.wait(remaining)
            return True

    def begin_close(self, timeout: float) -> None:
        """Send everything queued now, and stop by ``timeout`` from now (the earlier one wins)."""
        with self.cond:
            deadline = time.monotonic() + timeout
            if not self.closing or deadline < self.deadline:
                self.deadline = deadline
            self.closing = True
            self.cond.notify_all()
            self.pipeline.hurry_locked()
        self.sending.cut_naps()  # a backoff wait is cut short ...
        self.sending.window.wake()  # ... and so is a wait for room in the window ...
        _hook(self.transport, "cut_off_at", self.deadline)  # ... and a request already running

    def wait_closed(self) -> bool:
        """Wait for the close begun by ``begin_close``; False if time ran out on some records."""
        written_off = self.books.written_off
        late: Optional[Callable[[], None]] = None
        with self.cond:
            thread, deadline = self._thread, self.deadline
            stranded = self.idle and bool(self.queue)
        if deadline == math.inf:
            # Another close ended this one's work already, and any thread running now was
            # started by a later record: it is not this close's to wait for, or to write off.
            self.giving_up.report()
            self.reporter.release_held()
            return True
        if stranded:  # no thread could be started for these: this close sends them
            self._send_here()
        current = threading.current_thread()
        if thread is not None and thread is not current:
            # (It may wait for its helpers until GRACE past the deadline.)
            thread.join(max(0.0, deadline - time.monotonic()) + 2 * GRACE)
        with self.cond:
            if thread is not None and thread is not current and thread.is_alive():
                if thread is self._thread and not self.idle:
                    # Stuck in a send that overran the deadline: the pipeline gives what is
                    # queued up (memory) or puts it on disk (spool), and the thread ends when
                    # the send returns.
                    self.generation += 1
                    self.idle = True
                    left = [self.queue.popleft() for _ in range(len(self.queue))]
                    late = self.pipeline.late_locked(left)
            elif self.idle:
                # Blocking mode, or sends on the caller's thread at exit: wait for those in flight
                # (records in the spool are not in flight: they wait on disk).
                end = deadline + GRACE
                while self.books.unfinished > 0 and self.idle:
                    remaining = end - time.monotonic()
                    if remaining <= 0:
                        self.write_off_locked([], "the close deadline passed")
                        break
                    self.cond.wait(remaining)
            if self.idle and not _lifecycle.exiting():
                # Closed: the next record starts afresh. At exit the deadline stays, so that
                # everything together keeps within exit_timeout.
                self.closing = False
                self.deadline = math.inf
        if late is not None:
            late()
        self.giving_up.report()
        self.transport.close()
        self.reporter.release_held()
        return self.books.written_off == written_off

    def stats(self) -> FeedbackStats:
        with self.lock:
            return self.books.stats(len(self.queue))

    def stats_reader(self) -> Callable[[], FeedbackStats]:
        """Reads the counts without holding the engine, so that they can still be read once it is
        garbage collected (see ``_census``). A fork makes new books: ask again after one."""
        books, queue = self.books, self.queue
        return lambda: books.stats(len(queue))

    def after_fork_in_child(self) -> None:
        """The child starts empty: the parent's queue is the parent's to send."""
        self._reset()
        _hook(self.transport, "reset_after_fork")


def _hook(transport: Transport, name: str, *args: float) -> None:
    """Call one of the transport's optional hooks (``cut_off_at``, ``reset_after_fork``; see
    ``Transport``), if it has it: a transport of the application's may do without."""
    hook: Optional[Callable[..., None]] = getattr(transport, name, None)
    if hook is not None:
        hook(*args)
