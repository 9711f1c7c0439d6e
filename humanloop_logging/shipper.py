"""The shipper: the public front of the engine that queues feedback and sends it.

It knows nothing of logging: adapters hand it captured tuples through ``submit`` and it hands JSON
arrays to a transport. ``FeedbackShipper`` is a thin front for an ``_engine.Engine`` that the
flush thread holds; when the front is garbage collected without ``close()``, the engine drains and
its thread ends, so a forgotten handler never leaves a thread behind.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional, Protocol

from . import _lifecycle, _report
from ._config import ENV, NAMES, SettingsArgs, refuse_unknown, resolve, takes_settings
from ._engine import Engine
from ._ledger import FeedbackStats
from ._record import Captured, unreadable
from .exceptions import ConfigurationError
from .transport import HTTPTransport, SendControl

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["FeedbackShipper", "FeedbackStats", "Transport"]


class Transport(Protocol):
    """What the shipper needs from a transport (``transport=``); ``HTTPTransport`` is the one that
    ships.

    ``send`` and ``close`` are required. Two hooks are optional, called only when the transport
    has them; one that holds connections should have both:

    - ``cut_off_at(deadline: float) -> None``: ``close()`` (or the exit hook) was called: end the
      request in flight, if any, by ``deadline`` (on ``time.monotonic``).
    - ``reset_after_fork() -> None``: in a forked child, before it sends: take new connections,
      never the parent's.
    """

    def send(self, body: bytes, records: Sequence[Any], control: SendControl) -> None:
        """POST ``body`` (the JSON array of ``records``) within ``control.deadline()``, retrying
        as it sees fit; return when accepted, raise a ``DeliveryError`` when not."""

    def close(self) -> None:
        """Release connections: the shipper stopped (it may start again and send more)."""


class _Withheld:
    """The transport of a disabled shipper: nothing reaches it (records are counted withheld)."""

    def send(self, body: bytes, records: Sequence[Any], control: SendControl) -> None:
        raise RuntimeError("a disabled feedback shipper sends nothing")

    def close(self) -> None:
        return None


class FeedbackShipper:
    """Queues feedback records and sends them to ``POST {base_url}/feedback`` in batches.

    Handler and processor given one shipper share its queue and its thread. Every argument left
    as None is read from its environment variable, then from the default (see docs/settings.md).
    """

    @takes_settings
    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        transport: Optional[Transport] = None,
        **given: Unpack[SettingsArgs],
    ) -> None:
        refuse_unknown(type(self), given)
        settings = resolve(api_key, base_url, **given)
        if settings.blocking and settings.spool_path is not None:
            raise ConfigurationError(
                "spool_path does not go with blocking=True: a blocking call already waits "
                "for Humanloop's answer"
            )
        if not settings.enabled:
            transport = _Withheld()
            _report.emit(
                logging.INFO,
                f"feedback shipper {settings.name!r} is disabled (enabled=False or "
                f"{ENV['enabled']}=0): records are validated and counted, not sent",
            )
        elif transport is None:
            transport = HTTPTransport(
                api_key=settings.api_key,
                url=settings.feedback_url,
                timeout=settings.timeout,
                max_retry_time=settings.max_retry_time,
                connections=settings.max_in_flight,
            )
        engine = Engine(settings, transport, settings.on_error)
        self._engine = engine
        self.settings = settings
        _lifecycle.register(engine)
        engine.start_now()
        # Dropped without close(): the engine drains within exit_timeout and its thread ends.
        finalizer = weakref.finalize(self, engine.begin_close, settings.exit_timeout)
        finalizer.atexit = False  # the exit hook drains every engine itself

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"FeedbackShipper(name={s.name!r}, base_url={s.base_url!r}, "
            f"batch_size={s.batch_size}, blocking={s.blocking}, enabled={s.enabled})"
        )

    @property
    def name(self) -> str:
        """The ``name`` setting: this shipper in metrics."""
        return self.settings.name

    @property
    def submit(self) -> Callable[[Captured], None]:
        """The caller's path: a captured record in, nothing out, never raises or blocks."""
        return self._engine.submit

    def flush(self, timeout: float = 5.0) -> bool:
        """True once everything queued before the call is sent or given up on (and what was given
        up on or rejected is reported: ``on_error`` has returned)."""
        return self._engine.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> bool:
        """Send everything queued within ``timeout`` (default ``exit_timeout``), then stop.

        Returns False if this close had to give up on records because time ran out. Closing does
        not end the shipper for good: a record submitted afterwards starts it again, as
        ``logging.FileHandler`` reopens its file, so a close by someone else (``dictConfig()``)
        loses nothing. Safe to call twice, and from several threads.
        """
        engine = self._engine
        engine.begin_close(self.settings.exit_timeout if timeout is None else timeout)
        return engine.wait_closed()

    def stats(self) -> FeedbackStats:
        """A consistent snapshot of the counters (see ``FeedbackStats``): every record handed
        over is in exactly one of sent, rejected, dropped, failed, filtered, withheld, pending."""
        return self._engine.stats()

    def _report_internal(self, error: BaseException, timestamp: float) -> None:
        """For adapters: capturing a record raised. It is still counted, refused and reported."""
        try:
            self._engine.submit(unreadable(error, timestamp))
        except Exception:  # never into the caller's logging call
            self._engine.reporter.log("could not capture a feedback record", kind="capture")


#: The settings handler and processor accept besides ``shipper``, as declared in ``_config``.
SETTING_NAMES = NAMES


def attach(
    owner: type,
    shipper: Optional[FeedbackShipper],
    api_key: Optional[str],
    base_url: Optional[str],
    settings: SettingsArgs,
) -> tuple[FeedbackShipper, bool]:
    """The shipper an adapter (of class ``owner``) should use, and whether it owns and so closes it.

    Settings and a shared shipper are exclusive, so that a setting is never silently ignored.
    """
    refuse_unknown(owner, settings)
    if shipper is None:
        return FeedbackShipper(api_key, base_url, **settings), True
    given = {"api_key": api_key, "base_url": base_url, **settings}
    passed = sorted(name for name, value in given.items() if value is not None)
    if passed:
        raise ConfigurationError(f"pass either shipper= or settings, not both (got {passed})")
    return shipper, False
