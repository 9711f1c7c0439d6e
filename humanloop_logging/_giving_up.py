"""What is given up on, and said: a close's write-off, and the drops of a full queue.

A write-off is counted at once, under the engine's lock, and reported later, outside it; the
records it is about are written out only if the report's ``records`` is read.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from functools import partial
from typing import Any, Optional

from ._ledger import Ledger
from ._record import DATA_ID, Captured, safe_repr, to_payloads
from ._report import Reporter
from .exceptions import DeliveryError, QueueFullError

__all__ = ["GivingUp"]


class GivingUp:
    """The write-offs waiting to be reported, and how many drops were said."""

    def __init__(
        self,
        books: Ledger,
        reporter: Reporter,
        lock: threading.Condition,
        default_user: Optional[str],
        max_queue_size: int,
    ) -> None:
        self._books = books
        self._reporter = reporter
        self._lock = lock
        self._default_user = default_user
        self._max_queue_size = max_queue_size
        self._unreported: list[DeliveryError] = []
        self._dropped_reported = 0

    def write_off_locked(self, left: list[Captured], reason: str) -> None:
        """Count as failed what is unfinished, queued (``left``) or in flight; report it later.

        A send still in flight is written off: when it ends, its outcome is no longer counted
        (its epoch has passed), so every record stays in exactly one bucket. The report waits
        for :meth:`report`, outside the lock.
        """
        unfinished = self._books.write_off(len(left))
        if not unfinished:
            return
        self._lock.notify_all()
        in_flight = unfinished - len(left)
        detail = f"; {in_flight} were in a request that did not end" if in_flight else ""
        self._unreported.append(
            DeliveryError(
                f"gave up on feedback: {reason}{detail}",
                count=unfinished,
                read_records=partial(self._bodies_of, left),
            )
        )

    def report(self) -> None:
        """Say what was written off since the last call, and what the full queue dropped."""
        with self._lock:
            errors, self._unreported = self._unreported, []
            dropped = self._books.dropped
        for error in errors:
            self._reporter.report(error, kind="abandon", level=logging.ERROR)
        if dropped > self._dropped_reported:  # once per burst
            self._reporter.report(
                QueueFullError(dropped - self._dropped_reported, self._max_queue_size),
                kind="drop",
            )
            self._dropped_reported = dropped

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
