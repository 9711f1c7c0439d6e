"""Records waiting in memory: the flush thread takes them in batches, helpers take a backlog.

The in-memory pipeline of an engine (``_engine``). What to take and how long to wait are the
plain functions of ``_batching``; here they are applied to the engine's queue, under its lock.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Optional

from . import _batching as batching
from . import _lifecycle
from ._flow import Turn
from ._record import DATA_ID, TIMESTAMP, Captured
from ._workers import FLUSH, HELP

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["GRACE", "Memory", "Taken", "data_ids"]

#: A batch to send: its records, the epoch they were taken in, and their turn (None: none).
Taken = tuple[list[Captured], int, Optional[Turn]]

#: How long past its deadline a close waits for a send that was cut off to return.
GRACE = 0.05


def data_ids(batch: list[Captured]) -> frozenset[str]:
    """The data_ids of a batch that may be sent (any other kind is refused before sending)."""
    return frozenset({key for item in batch if type(key := item[DATA_ID]) is str})


class Memory:
    """The queue is the only place records wait; a close writes off what it cannot send."""

    durable = False
    kinds = (FLUSH,)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._waiting = False  # the flush thread waits for a batch to fill
        self._helpers = 0  # flush threads beside the first, each sending a batch of a backlog

    @property
    def first_kick(self) -> int:
        """At how many queued records the caller's path first wakes the flush thread."""
        return self.engine.settings.batch_size

    def round(self, kind: str, generation: int) -> bool:
        if kind == FLUSH:
            return self._flush_round(generation)
        if kind == HELP:
            return self._help_round(generation)
        return False

    # -- the caller's path and flush()/close() hurry it ----------------------------------------

    def kick_locked(self) -> None:
        """The queue reached ``notify_at``: a batch is full, so wake the flush thread; or, if it
        is busy sending, a full request's worth waits, so start a helper."""
        if self._waiting:
            self.engine.cond.notify()
        else:
            self.hurry_locked()

    def hurry_locked(self) -> None:
        """A backlog waits while the flush thread is busy sending: a helper takes it."""
        if not self.engine.idle and not self._waiting and self._backlog_locked():
            self._help_locked(self.engine.generation)

    def late_locked(self, left: list[Captured]) -> Optional[Callable[[], None]]:
        """The flush thread is stuck past the close deadline: what is queued is written off."""
        self.engine.write_off_locked(left, "the close deadline passed")
        return None

    # -- the flush thread ------------------------------------------------------------------------

    def _flush_round(self, generation: int) -> bool:
        engine = self.engine
        taken = self._next_batch(generation)
        if taken is None:
            engine.housekeeping()
            return False
        batch, epoch, turn = taken
        if batch:
            # Drops are said before the batch is answered: a flush() that returns has seen them.
            engine.housekeeping()
            engine.sending.process(batch, epoch, turn)
        engine.housekeeping()
        return True

    def _next_batch(self, generation: int) -> Optional[Taken]:
        """Wait for something to send: the batch (empty after an idle wait), its epoch and turn.

        None when the thread should end: a close has drained the queue and every helper is done,
        or its deadline passed (what is left then is written off here, in the same step), or a
        newer thread took over.
        """
        engine = self.engine
        with engine.cond:
            if generation != engine.generation:
                return None
            queue = engine.queue
            now = time.monotonic()
            late = now >= engine.deadline
            if late or (engine.closing and not queue):
                if self._helpers and now < engine.deadline + GRACE:
                    # Their batches are still being sent; at the deadline their requests are cut
                    # off, and each reports its own records, as this thread does.
                    engine.cond.wait(engine.deadline + GRACE - now)
                    return [], engine.books.epoch, None
                # Idle is published first, and the queue looked at again after: the caller
                # appends without the lock and then reads idle, so a record appended from here
                # on is either seen below or sees idle and starts a thread of its own.
                engine.idle = True
                if late:
                    left = [queue.popleft() for _ in range(len(queue))]
                    engine.write_off_locked(left, "the close deadline passed")
                elif queue:  # appended after the look above: this thread sends it too
                    engine.idle = False
                    return self._take_locked(generation)
                engine.cond.notify_all()
                return None
            if not queue:
                self._nap_locked(engine.settings.flush_interval)
                return [], engine.books.epoch, None
            if not self._due_locked():
                interval = engine.settings.flush_interval
                remaining = batching.wait_to_fill(queue[0][TIMESTAMP], time.time(), interval)
                if remaining > 0:
                    self._nap_locked(remaining)
                    return [], engine.books.epoch, None
            return self._take_locked(generation)

    def _nap_locked(self, seconds: float) -> None:
        """The flush thread waits for a batch to fill; a full one wakes it (``kick_locked``).

        Meanwhile the caller's path kicks at a full batch; while a thread sends (from
        ``_take_locked`` on), at a full request's worth, which calls for a helper.
        """
        self._waiting = True
        self.engine.notify_at = self._full_locked()
        try:
            self.engine.cond.wait(seconds)
        finally:
            self._waiting = False

    def _take_locked(self, generation: int) -> Taken:
        """The next batch off the queue, in line for its data_ids; another thread helps with
        what is left if it is a backlog."""
        engine = self.engine
        queue = engine.queue
        take = batching.take(len(queue), engine.settings.batch_size, engine.max_batch)
        batch = [queue.popleft() for _ in range(take)]
        epoch = engine.books.take(take)
        turn = engine.turns.register(data_ids(batch))
        if self._backlog_locked():
            self._help_locked(generation)
        engine.notify_at = engine.max_batch  # from now on a kick means a backlog
        return batch, epoch, turn

    def _due_locked(self) -> bool:
        """Whether a batch should go now rather than wait to fill."""
        return batching.due(len(self.engine.queue), self._full_locked(), hurry=self._hurry())

    def _full_locked(self) -> int:
        engine = self.engine
        settings = engine.settings
        return batching.full(
            settings.batch_size,
            engine.max_batch,
            settings.max_in_flight,
            engine.sending.window.size,
        )

    def _hurry(self) -> bool:
        """A close or a flush() waits for what is queued: no batch waits to fill."""
        return self.engine.closing or self.engine.books.flushing

    def _backlog_locked(self) -> bool:
        return batching.backlog(len(self.engine.queue), self.engine.max_batch, hurry=self._hurry())

    # -- helpers ---------------------------------------------------------------------------------

    def _help_locked(self, generation: int) -> None:
        """Start one more flush thread if a backlog waits and the window has room for it."""
        engine = self.engine
        room = min(engine.settings.max_in_flight, engine.sending.window.size)
        if self._helpers + 1 >= room:
            return
        if _lifecycle.exiting():  # no thread starts at exit: the first one drains alone
            return
        if engine.start_helper(generation):
            self._helpers += 1

    def _help_round(self, generation: int) -> bool:
        """A helper's round: a batch of the backlog; False, and the helper ends, once none
        waits."""
        engine = self.engine
        with engine.cond:
            if (
                generation == engine.generation
                and self._backlog_locked()
                and time.monotonic() < engine.deadline
            ):
                taken: Optional[Taken] = self._take_locked(generation)
            else:
                taken = None
                self._helpers -= 1
                engine.cond.notify_all()
        if taken is None:
            return False
        engine.sending.process(*taken)
        return True
