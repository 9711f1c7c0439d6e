"""``before_send``: the application's last word on each record, before it is validated or kept.

The hook runs on the thread that takes a batch off the queue (the flush thread; the caller's own
thread with ``blocking=True`` or ``enabled=False``), before validation and before the spool, so a
record it redacts is never written anywhere unredacted. Each record leaves here in one of three
ways, counted at once: changed or as it was (on to validation), dropped by the hook (``filtered``),
or given up on because the hook failed (``failed``: a redaction that did not run must not send the
record unredacted). A failing hook is said once per kind of exception, on the library's channel
and to ``on_error``; later failures of the same kind are counted only.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Callable, Optional

from ._config import BeforeSend
from ._fields import FEEDBACK_FIELDS
from ._record import DATA_ID, TIMESTAMP, Captured, Unreadable, freeze, safe_repr
from ._report import Reporter
from .exceptions import BeforeSendError

__all__ = ["Screen", "screen_for"]

#: Counts an outcome of records taken in an epoch (``Engine.finish``).
Finish = Callable[..., bool]


def _fields(item: Captured) -> dict[str, Any]:
    """The record as the hook sees it: the fields that are set, a list value as a list."""
    record = {name: field for name, field in zip(FEEDBACK_FIELDS, item) if field is not None}
    value = record.get("value")
    if type(value) is tuple:
        record["value"] = list(value)
    return record


def _captured(changed: Mapping[str, Any], timestamp: float) -> Captured:
    unknown = sorted(set(changed) - set(FEEDBACK_FIELDS), key=str)
    if unknown:
        raise ValueError(f"it returned fields a feedback record does not have: {unknown}")
    get = changed.get
    return (
        get("data_id"),
        get("type"),
        freeze(get("value")),
        get("user"),
        get("created_at"),
        get("unset"),
        timestamp,
    )


class Screen:
    """Applies ``before_send`` to batches; shared by every thread that takes records."""

    def __init__(self, hook: BeforeSend, finish: Finish, reporter: Reporter) -> None:
        self._hook = hook
        self._finish = finish
        self._reporter = reporter
        self._lock = threading.Lock()
        self._said: set[str] = set()

    def __call__(self, batch: list[Captured], epoch: int) -> list[Captured]:
        """What is left of ``batch`` to validate and send; the rest is counted here."""
        kept: list[Captured] = []
        filtered = failed = 0
        for item in batch:
            if type(item[2]) is Unreadable:  # nothing to show the hook; validation reports it
                kept.append(item)
                continue
            try:
                changed = self._hook(_fields(item))
                if changed is None:
                    filtered += 1
                    continue
                if not isinstance(changed, Mapping):
                    raise TypeError(
                        f"it must return the record (a dict) or None, not {type(changed).__name__}"
                    )
                kept.append(_captured(changed, item[TIMESTAMP]))
            except Exception as exc:
                failed += 1
                self._failed(exc, item)
        if filtered or failed:
            self._finish(epoch, filtered=filtered, failed=failed)
        return kept

    def _failed(self, exc: Exception, item: Captured) -> None:
        kind = type(exc).__name__
        with self._lock:
            if kind in self._said:
                return
            self._said.add(kind)
        error = BeforeSendError(
            f"before_send failed on the feedback record for data_id={safe_repr(item[DATA_ID])}: "
            f"{safe_repr(exc)}; the record is not sent (counted failed). Later "
            f"{kind} errors of the hook are counted, not said again"
        )
        error.__cause__ = exc
        self._reporter.report(error, kind=f"before_send:{kind}")


def screen_for(hook: Optional[BeforeSend], finish: Finish, reporter: Reporter) -> Optional[Screen]:
    """The screen, or None without a hook: then batches go on untouched, at no cost."""
    return None if hook is None else Screen(hook, finish, reporter)
