"""The library's own voice: the ``humanloop_logging`` logger, with repeats collapsed.

A failing backend or a stream of bad records must not flood the application's logs, so each kind
of message is logged at most once per window; the next one says how many were held back.

It must not go unheard either. In an application whose only handler is a ``FeedbackHandler`` (which
ignores the library's records), a warning would reach nobody, and logging's ``lastResort`` stays
silent because a handler was found. So when the records would reach no handler but feedback
handlers, they are also handed to ``logging.lastResort`` (stderr), as logging does for a program
with no handlers at all.

A delivery problem is said at its first failure (:meth:`Reporter.problem`), with where the
request went and what to check, not only when a batch is given up on after ``max_retry_time``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Optional

from .exceptions import DeliveryError, HumanloopLoggingError, add_clause

logger = logging.getLogger("humanloop_logging")

ErrorCallback = Callable[[HumanloopLoggingError], object]

#: The class attribute that marks a handler as a feedback handler: it never shows a person
#: anything, so it does not count as somewhere the library's warnings are heard.
FEEDBACK_HANDLER_MARK = "_humanloop_feedback_handler"


def _heard_elsewhere(source: logging.Logger) -> Optional[bool]:
    """Whether a record of ``source`` reaches a handler other than a feedback handler.

    None when it reaches no handler at all: logging then uses ``lastResort`` itself. The walk is
    ``Logger.callHandlers``': up the hierarchy until a logger that does not propagate. A handler
    set to a higher level than the record is the application's choice, and counts as heard.
    """
    found = False
    current: Optional[logging.Logger] = source
    while current is not None:
        for handler in current.handlers:
            found = True
            if not getattr(handler, FEEDBACK_HANDLER_MARK, False):
                return True
        if not current.propagate:
            break
        current = current.parent
    return False if found else None


def emit(level: int, message: str) -> None:
    """Log ``message`` on the library's logger, and on stderr if no person would see it."""
    if not logger.isEnabledFor(level):
        return
    record = logger.makeRecord(logger.name, level, __file__, 0, message, (), None)
    filtered: object = logger.filter(record)
    if not filtered:
        return
    if isinstance(filtered, logging.LogRecord):  # Python 3.12: a filter may replace the record
        record = filtered
    logger.callHandlers(record)
    if _heard_elsewhere(logger) is False:
        last = logging.lastResort
        if last is not None and level >= last.level:
            last.handle(record)


def retry_notice(error: DeliveryError) -> str:
    """What a person is told at the first failure of a problem: what, where, what to check."""
    seconds = error.retry_for
    if error.retryable and seconds is not None:
        return add_clause(
            error.message, f"retrying for up to {seconds:g}s; records are kept meanwhile"
        )
    return error.message


class Reporter:
    """Logs and calls ``on_error``; identical kinds within ``window`` seconds are collapsed."""

    def __init__(self, on_error: Optional[ErrorCallback], window: float = 10.0) -> None:
        self._on_error = on_error
        self._window = window
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._latest: dict[str, tuple[int, str]] = {}
        self._problems: set[str] = set()

    def report(
        self,
        error: HumanloopLoggingError,
        *,
        kind: str,
        level: int = logging.WARNING,
    ) -> None:
        """Tell the application about ``error``: the callback always, the log once per window."""
        if self._on_error is not None:
            try:
                self._on_error(error)
            except Exception as exc:
                self.log(
                    f"on_error callback raised {type(exc).__name__}; it must not raise",
                    kind="on_error",
                    level=logging.ERROR,
                )
        self.log(str(error), kind=kind, level=level)

    def problem(self, error: DeliveryError) -> None:
        """A send failed and may be retried: say so at once, once per category until recovered.

        The warning names where the request went and what to check (``error.message``) and, for a
        retry, for how long records are kept. Further failures of the same category are not said
        again until :meth:`recovered`; a problem that comes back within the window is collapsed.
        """
        category = error.category
        with self._lock:
            if category in self._problems:
                return
            self._problems.add(category)
        self.log(retry_notice(error), kind=f"problem:{category}")

    def recovered(self) -> None:
        """A request succeeded: the problems said so far are over, and may be said again."""
        with self._lock:
            if not self._problems:
                return
            self._problems.clear()
        self.log("feedback is reaching Humanloop again", kind="recovered", level=logging.INFO)

    def log(self, message: str, *, kind: str, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._window:
                self._held[kind] = self._held.get(kind, 0) + 1
                self._latest[kind] = (level, message)
                return
            self._last[kind] = now
            held = self._held.pop(kind, 0)
        if held:
            message = (
                f"{message} [{held} similar message(s) held back in the last {self._window:g}s]"
            )
        emit(level, message)

    def release_held(self) -> None:
        """Say how many messages were held back and not yet mentioned (at close)."""
        with self._lock:
            held = [(count, self._latest[kind]) for kind, count in self._held.items()]
            self._held.clear()
        for count, (level, message) in held:
            emit(level, f"{message} [{count} similar message(s) held back, this the last]")
