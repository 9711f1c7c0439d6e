"""An ``on_error`` callback for tests, which keeps the errors a handler reports."""

from __future__ import annotations

import threading
from typing import TypeVar

from humanloop_logging.exceptions import HumanloopLoggingError

_E = TypeVar("_E", bound=HumanloopLoggingError)


class ErrorLog:
    """An ``on_error`` callback for tests: keeps every error and lets a test wait for them.

    ``FeedbackHandler(..., on_error=errors)``, then ``errors.wait_for(UnprocessableEntityError)``
    and ``errors.of(FeedbackValidationError)``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.errors: list[HumanloopLoggingError] = []

    def __call__(self, error: HumanloopLoggingError) -> None:
        with self._cond:
            self.errors.append(error)
            self._cond.notify_all()

    def of(self, kind: type[_E]) -> list[_E]:
        """The errors of one kind, in the order they were reported."""
        with self._cond:
            return [error for error in self.errors if isinstance(error, kind)]

    def wait_for(
        self,
        kind: type[HumanloopLoggingError] = HumanloopLoggingError,
        count: int = 1,
        timeout: float = 5.0,
    ) -> bool:
        """Block until ``count`` errors of ``kind`` were reported; False if ``timeout`` ran out."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.of(kind)) >= count, timeout)
