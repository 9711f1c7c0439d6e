"""``FeedbackSink``: a loguru sink that turns tagged messages into feedback.

loguru puts a call's keyword arguments and everything ``bind()`` gave the logger into
``record["extra"]``, so ``logger.info("rated", data_id=..., type="rating", value="good")`` and
``logger.bind(data_id=...).info("copied", type="action", value="copy")`` both arrive here with the
feedback fields in one dict. A message without ``data_id`` there costs one dict lookup. A tagged
one is captured into a tuple and handed to the shipper; validation and everything slow happen on
the flush thread, as for ``FeedbackHandler``.

The sink is a file-like object to loguru (it has ``write``), because that is the kind of sink
whose ``stop()`` loguru calls when it is removed (``logger.remove()``, and at exit); a plain
callable sink is never told. loguru then also calls ``flush()`` after every message, as it does a
file's, so ``flush()`` without a timeout returns at once. This module never imports loguru: a sink
is duck-typed, and ``import humanloop_logging`` must not load an optional library.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, NoReturn, Optional, overload

from ._config import SettingsArgs, takes_settings
from ._fields import resolve_fields
from ._record import freeze
from ._workers import THREAD_NAMES, own
from .shipper import FeedbackShipper, FeedbackStats, attach

if TYPE_CHECKING:
    from loguru import Message
    from typing_extensions import Unpack

__all__ = ["FeedbackSink"]


class FeedbackSink:
    """``logger.add(FeedbackSink(), level="INFO")``: sends messages whose ``extra`` carries
    ``data_id`` and ``type`` to Humanloop as feedback; every other message passes untouched.

    Takes the same settings as ``FeedbackHandler``, or a ``shipper`` to share one queue and thread
    with a handler or processor. ``fields`` renames the keys read, e.g. ``{"type": "kind"}``.
    Works with ``enqueue=True`` (it then runs on loguru's writer thread).
    """

    @takes_settings
    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        shipper: Optional[FeedbackShipper] = None,
        fields: Optional[Mapping[str, str]] = None,
        **settings: Unpack[SettingsArgs],
    ) -> None:
        """Every setting left as None is read from its ``HUMANLOOP_*`` variable, then from its
        default (the settings table of docs/settings.md); ``shipper=`` shares one and excludes settings.

        Raises ``ConfigurationError`` for a bad setting, naming it and never repeating the key.
        """
        names = resolve_fields(fields)  # before the shipper: a bad mapping leaves nothing behind
        shipper, self._owns_shipper = attach(type(self), shipper, api_key, base_url, settings)
        self.shipper = shipper
        (self._data_id, self._type, self._value, self._user, self._created_at, self._unset) = names
        self._token = shipper._engine.token
        self._submit = shipper.submit

    def __repr__(self) -> str:
        # loguru names the sink by its repr (``repr(logger)`` lists it): never the API key.
        return f"<FeedbackSink {self.shipper!r}>"

    def __copy__(self) -> FeedbackSink:
        return self

    def __deepcopy__(self, _memo: object) -> FeedbackSink:
        # copy.deepcopy(logger), loguru's way to independent loggers, keeps one shipper.
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a FeedbackSink cannot be sent to another process (its queue and thread live in this "
            "one): add it with logger.add(FeedbackSink(), enqueue=True), so that loguru pickles "
            "only the messages and this process sends them"
        )

    def write(self, message: Message) -> None:
        """The whole caller-side cost: recognise, capture, submit. Never raises, never blocks."""
        record = message.record
        extra = record["extra"]
        if self._data_id not in extra or self._type not in extra:
            return
        try:
            data_id = extra[self._data_id]
            type_ = extra[self._type]
            # The shipper's own threads' messages (an on_error callback logging feedback) would
            # loop: known by the thread's mark, or, when loguru's writer thread runs the sink
            # (enqueue=True), by the name of the thread the message was logged on.
            if own.token is self._token:
                return
            thread = record["thread"]
            if (
                thread.name in THREAD_NAMES
                and thread.id != threading.get_ident()
                and record["process"].id == os.getpid()
            ):
                return
            get = extra.get
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
                    record["time"].timestamp(),
                )
            )
        except Exception as exc:
            self.shipper._report_internal(exc, time.time())

    @overload
    def flush(self) -> None: ...

    @overload
    def flush(self, timeout: float) -> bool: ...

    def flush(self, timeout: Optional[float] = None) -> Optional[bool]:
        """``flush(timeout)``: True once everything queued before the call is sent or given up
        on, as ``FeedbackHandler.flush``.

        Without a timeout it returns None at once: that is loguru's call after every message, as
        to a file, and sending is the flush thread's job (waiting there would hold up every
        logging call, and hurrying would break the batches up).
        """
        if timeout is None:
            return None
        return self.shipper.flush(timeout)

    def stop(self) -> None:
        """loguru's hook at ``logger.remove()`` (and so at exit): close an owned shipper.

        The close sends everything queued within ``exit_timeout`` but is not waited for here:
        loguru calls this holding the sink's lock, which the flush thread takes too when it logs
        through loguru (an ``on_error`` that logs, the library's warnings routed into loguru), so
        waiting could only time out. The exit hook waits for it; ``close()`` waits itself.
        """
        if self._owns_shipper:
            shipper = self.shipper
            shipper._engine.begin_close(shipper.settings.exit_timeout)

    def close(self) -> None:
        """Send what is queued within ``exit_timeout`` and stop the thread, if this sink owns the
        shipper; feedback written afterwards starts it again."""
        if self._owns_shipper:
            self.shipper.close()

    def stats(self) -> FeedbackStats:
        """The shipper's counters (``FeedbackStats``): what was sent, rejected, dropped, failed
        and is pending, for every adapter that shares it."""
        return self.shipper.stats()
