"""What the structlog processor tells the stdlib handler, so one event is never sent twice.

When structlog routes an event on to stdlib logging (``render_to_log_kwargs`` or
``ProcessorFormatter.wrap_for_formatter``), the processor has already shipped it. It leaves the
event's ``data_id`` and ``type`` objects, and its engine, in a thread-local slot; the handler, seeing
the very same objects on the same thread for the same engine, skips the record. Identity, not
equality, so an unrelated record with equal values is still sent.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

_slot = threading.local()


class _State:
    #: False until a processor first hands an event on to stdlib logging: until then the handler
    #: skips the thread-local look-up altogether.
    used = False


state = _State()


def remember(data_id: Any, type_: Any, engine: object) -> None:
    state.used = True
    _slot.last = (data_id, type_, engine)


def already_shipped(data_id: Any, type_: Any, engine: object) -> bool:
    last: Optional[tuple[Any, Any, object]] = _slot.__dict__.get("last")
    if last is not None and last[0] is data_id and last[1] is type_ and last[2] is engine:
        _slot.last = None
        return True
    return False
