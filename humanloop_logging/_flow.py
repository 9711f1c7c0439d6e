"""How many requests one shipper has in flight: a window that grows on success and halves on
congestion (AIMD, as TCP does), and the order in which batches about one ``data_id`` may go.

The window starts at ``max_in_flight``. Each accepted request widens it by ``1 / window`` (about one
more request per window of successes); a 429, a 503 or any other transient failure halves it, at
least to one. A failure only halves it once per round: requests that were already in flight when
it was halved report the same congestion again, and are not counted twice. So a fleet of processes
behind one rate limit each back off on their own, without any of them knowing of the others, and
during an outage no new request starts beside the one that is retrying.

:class:`Turns` keeps feedback about one ``data_id`` in the order it was logged: a batch that holds
a ``data_id`` of an earlier batch still being sent waits for it, so an ``unset`` never overtakes
the rating it unsets. Batches about other records go on meanwhile.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class Window:
    """Permits for requests in flight; the number is adjusted by AIMD between 1 and ``maximum``."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._size = float(maximum)
        self._active = 0
        self._round = 0  # bumped by each halving
        self._resume_at = 0.0  # monotonic: no new request before (the service said when)
        self._cond = threading.Condition(threading.Lock())

    @property
    def size(self) -> int:
        """Requests allowed in flight now."""
        return max(1, int(self._size))

    @property
    def active(self) -> int:
        return self._active

    def acquire(self, deadline: Callable[[], float]) -> int:
        """Wait for a permit; returns the round it was taken in, for :meth:`congested`.

        Never waits past ``deadline()`` (asked afresh, since a close brings it forward): then the
        permit is taken anyway, and the request that follows finds no time left and says so.
        """
        with self._cond:
            while True:
                now = time.monotonic()
                remaining = deadline() - now
                if remaining <= 0:
                    break
                if now < self._resume_at:
                    self._cond.wait(min(remaining, self._resume_at - now))
                elif self._active >= self.size:
                    self._cond.wait(None if math.isinf(remaining) else remaining)
                else:
                    break
            self._active += 1
            return self._round

    def release(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify()

    def succeeded(self) -> None:
        """A request was accepted: widen by about one request per window of successes."""
        with self._cond:
            if self._size < self.maximum:
                before = self.size
                self._size = min(float(self.maximum), self._size + 1.0 / self._size)
                if self.size > before:
                    self._cond.notify()

    def congested(self, seen: int) -> int:
        """A request that last saw round ``seen`` met congestion: halve, once per round.

        Returns the round now, for the same request's next failure: a request that keeps failing
        halves the window again only if nobody else did meanwhile.
        """
        with self._cond:
            if seen == self._round:
                self._round += 1
                self._size = max(1.0, self._size / 2)
            return self._round

    def pause(self, seconds: float) -> None:
        """The service asked for a pause (a 429 or 503 with ``Retry-After``): no new request
        starts before it ends, as the one that was told waits too."""
        with self._cond:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def wake(self) -> None:
        """Let waiters look at their deadline again (a close brought it forward)."""
        with self._cond:
            self._cond.notify_all()


class Turns:
    """Which batch may send now, so that records about one ``data_id`` keep their order.

    Each batch is registered when it is taken off the queue (under the engine's lock, so
    registration order is queue order) with the set of ``data_id`` values it holds, and learns
    which earlier batches still open share one of them; it may send once those are done. The
    check is a C-level set comparison with each open batch (at most a few: one per flush
    thread), and nothing is waited for unless two open batches share a ``data_id``. All methods
    but :meth:`wait` are called under the engine's lock, which ``wait`` waits on.
    """

    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        self._open: dict[int, frozenset[str]] = {}  # the open batches' data_ids, by number
        self._next = 0
        self._waiting = 0

    def register(self, data_ids: frozenset[str]) -> Turn:
        """A new batch's turn: its number and the open batches it must wait for."""
        turn = self._next
        self._next += 1
        opened = self._open
        after = frozenset(
            number for number, others in opened.items() if not data_ids.isdisjoint(others)
        )
        opened[turn] = data_ids
        return turn, after

    def mine(self, turn: Turn) -> bool:
        opened = self._open
        return not any(number in opened for number in turn[1])

    def wait(self, turn: Turn, until: Callable[[], bool]) -> bool:
        """Wait until every earlier batch about the same data_ids is done; False if ``until()``
        says to stop first (a close wrote the batch off). Called without the engine's lock."""
        if not turn[1]:
            return True
        with self._cond:
            self._waiting += 1
            try:
                while not self.mine(turn):
                    if until():
                        return False
                    self._cond.wait()
            finally:
                self._waiting -= 1
            return True

    def done(self, turn: Turn) -> None:
        """The batch is answered (or given up on): those waiting for it may go."""
        self._open.pop(turn[0], None)
        if self._waiting:
            self._cond.notify_all()


#: A batch's place in line: its number, and the earlier batches it waits for.
Turn = tuple[int, frozenset[int]]
