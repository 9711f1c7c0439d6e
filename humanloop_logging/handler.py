"""``FeedbackHandler``: a ``logging.Handler`` that turns tagged records into feedback.

It overrides ``handle`` rather than ``emit`` so that an untagged record, the common case on a root
logger, costs one dict lookup and no lock. A tagged record is captured into a tuple and handed to
the shipper; validation and everything slow happen on the flush thread. The library's own records
(logger ``humanloop_logging``, urllib3's lines on the flush thread) are never tagged, so they take
the untagged path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

from ._bridge import Shipped, shipped
from ._config import SettingsArgs, takes_settings
from ._fields import LOG_RECORD_ATTRIBUTES, resolve_fields
from ._record import freeze
from ._workers import own
from .shipper import FeedbackShipper, FeedbackStats, attach

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["FeedbackHandler"]


def _holds_logging_lock() -> bool:
    """Whether this thread holds logging's module lock (an RLock on every supported Python)."""
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    return bool(is_owned()) if callable(is_owned) else False


class FeedbackHandler(logging.Handler):
    """Sends records carrying ``data_id`` and ``type`` (via ``extra=``) to Humanloop as feedback.

    Every other record passes through untouched. Give it a ``shipper`` to share one queue and
    thread with a ``FeedbackProcessor``; otherwise it builds (and owns) its own from the settings.
    ``fields`` renames the attributes read, e.g. ``{"type": "feedback_type"}``.
    """

    #: Marks feedback handlers for the library's own reporter: a warning that reaches only these
    #: reaches no person, so it goes to stderr instead.
    _humanloop_feedback_handler = True

    @takes_settings
    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        shipper: Optional[FeedbackShipper] = None,
        fields: Optional[Mapping[str, str]] = None,
        level: int = logging.NOTSET,
        **settings: Unpack[SettingsArgs],
    ) -> None:
        """Every setting left as None is read from its ``HUMANLOOP_*`` variable, then from its
        default (the settings table of docs/settings.md); ``shipper=`` shares one and excludes settings.

        Raises ``ConfigurationError`` for a bad setting, naming it and never repeating the key.
        ``level`` is logging's own handler level.
        """
        # Settings first: a ConfigurationError must not leave a half-built handler registered
        # with logging (Handler.__init__ adds it to logging's list for shutdown()), nor a shipper.
        names = resolve_fields(fields, reserved=LOG_RECORD_ATTRIBUTES)
        shipper, owns_shipper = attach(type(self), shipper, api_key, base_url, settings)
        super().__init__(level)
        self._owns_shipper = owns_shipper
        self.shipper = shipper
        (self._data_id, self._type, self._value, self._user, self._created_at, self._unset) = names
        self._token = shipper._engine.token
        self._submit = shipper.submit

    def __repr__(self) -> str:
        return f"<FeedbackHandler ({logging.getLevelName(self.level)}) {self.shipper!r}>"

    def handle(self, record: logging.LogRecord) -> bool:
        """The whole caller-side cost: recognise, capture, submit. Never raises, never blocks.

        Overridden instead of ``emit`` so that no handler lock is taken: the shipper's queue is
        thread-safe, and an untagged record then costs one dict lookup.
        """
        attrs = record.__dict__
        data_id_name = self._data_id
        if data_id_name in attrs:
            source: Mapping[str, Any] = attrs
        else:
            msg = attrs.get("msg")
            if msg.__class__ is not dict or data_id_name not in msg:
                return False
            source = msg  # structlog's ProcessorFormatter.wrap_for_formatter
        if self._type not in source or (self.filters and not self.filter(record)):
            return False
        try:
            data_id = source[self._data_id]
            type_ = source[self._type]
            # The shipper's own threads' records (an on_error callback logging feedback) would loop.
            token = self._token
            if own.token is token or (
                (data_id.__class__ is Shipped or type_.__class__ is Shipped)
                and shipped(data_id, type_, token)
            ):  # (a structlog event its FeedbackProcessor already shipped)
                return False
            get = source.get
            value = get(self._value)
            if type(value) is not str:  # strings, the common case, need no copy
                value = freeze(value)
            self._submit(
                (
                    data_id,
                    type_,
                    value,
                    get(self._user),
                    get(self._created_at),
                    get(self._unset),
                    record.created,
                )
            )
        except Exception as exc:
            self.shipper._report_internal(exc, record.created)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """For callers that bypass ``handle``: same path."""
        self.handle(record)

    def flush(self, timeout: float = 5.0) -> bool:  # type: ignore[override]
        """True once everything queued before the call is sent or given up on.

        Called by logging itself with its module lock held (``dictConfig()``), it does not wait:
        the flush thread may need that lock to log, so waiting could only time out.
        """
        if _holds_logging_lock():
            timeout = 0.0
        return self.shipper.flush(timeout)

    def close(self) -> None:
        """Send what is queued within ``exit_timeout`` and stop the thread, if this handler owns
        the shipper; feedback handled afterwards starts it again.

        ``dictConfig()`` and ``fileConfig()`` close every existing handler while holding logging's
        module lock, even handlers they leave in place. Such a close does not wait: the shipper
        keeps sending in the background and the exit hook drains it, so nothing is lost and
        the configuration call returns at once.
        """
        try:
            if self._owns_shipper and not _holds_logging_lock():
                self.shipper.close()
        finally:
            super().close()

    def stats(self) -> FeedbackStats:
        """The shipper's counters (``FeedbackStats``): what was sent, rejected, dropped, failed
        and is pending, for every adapter that shares it."""
        return self.shipper.stats()
