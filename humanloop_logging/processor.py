"""``FeedbackProcessor``: a structlog processor that turns tagged events into feedback.

An event dict carrying ``data_id`` and ``type`` is captured and handed to the shipper; the event
itself continues down the chain unchanged (or is dropped, with ``drop=True``), but for a mark
when its logger is a stdlib one: an equal string in place of its ``data_id``, by which a
``FeedbackHandler`` knows the event is already shipped (see ``_bridge``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Optional

from structlog import DropEvent

from . import _bridge
from ._config import SettingsArgs, takes_settings
from ._fields import resolve_fields
from ._record import freeze
from .shipper import FeedbackShipper, FeedbackStats, attach

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["FeedbackProcessor"]


class FeedbackProcessor:
    """``structlog.configure(processors=[..., FeedbackProcessor(shipper=handler.shipper), ...])``.

    Takes the same settings as ``FeedbackHandler`` or a ``shipper`` to share. ``drop=True`` ends
    feedback events here instead of passing them on to the renderer.
    """

    @takes_settings
    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        shipper: Optional[FeedbackShipper] = None,
        fields: Optional[Mapping[str, str]] = None,
        drop: bool = False,
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
        self._drop = drop
        self._engine = shipper._engine
        self._submit = shipper.submit

    def __repr__(self) -> str:
        return f"FeedbackProcessor({self.shipper!r}, drop={self._drop})"

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self._data_id not in event_dict or self._type not in event_dict:
            return event_dict
        now = time.time()
        try:
            get = event_dict.get
            self._submit(
                (
                    event_dict[self._data_id],
                    event_dict[self._type],
                    freeze(get(self._value)),
                    get(self._user),
                    get(self._created_at),
                    get(self._unset),
                    now,
                )
            )
            if not self._drop and isinstance(logger, logging.Logger):
                # Maybe on its way to stdlib logging, where a FeedbackHandler may meet it again.
                _bridge.mark(event_dict, (self._data_id, self._type), self._engine.token)
        except Exception as exc:
            self.shipper._report_internal(exc, now)
        if self._drop:
            raise DropEvent
        return event_dict

    def flush(self, timeout: float = 5.0) -> bool:
        """True once everything queued before the call is sent or given up on."""
        return self.shipper.flush(timeout)

    def close(self) -> None:
        """Drain and stop, if this processor owns its shipper."""
        if self._owns_shipper:
            self.shipper.close()

    def stats(self) -> FeedbackStats:
        """The shipper's counters (``FeedbackStats``): what was sent, rejected, dropped, failed
        and is pending, for every adapter that shares it."""
        return self.shipper.stats()
