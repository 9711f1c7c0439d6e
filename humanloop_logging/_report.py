"""The library's own voice: the ``humanloop_logging`` logger, with repeats collapsed.

A failing backend or a stream of bad records must not flood the application's logs, so each kind
of message is logged at most once per window; the next one says how many were held back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Optional

from .exceptions import HumanloopLoggingError

logger = logging.getLogger("humanloop_logging")

ErrorCallback = Callable[[HumanloopLoggingError], object]


class Reporter:
    """Logs and calls ``on_error``; identical kinds within ``window`` seconds are collapsed."""

    def __init__(self, on_error: Optional[ErrorCallback], window: float = 10.0) -> None:
        self._on_error = on_error
        self._window = window
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._latest: dict[str, tuple[int, str]] = {}

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
        logger.log(level, message)

    def release_held(self) -> None:
        """Say how many messages were held back and not yet mentioned (at close)."""
        with self._lock:
            held = [(count, self._latest[kind]) for kind, count in self._held.items()]
            self._held.clear()
        for count, (level, message) in held:
            logger.log(level, "%s [%d similar message(s) held back, this the last]", message, count)
