"""What the structlog processor tells the stdlib handler, so one event is never sent twice.

When structlog routes an event on to stdlib logging (``render_to_log_kwargs`` or
``ProcessorFormatter.wrap_for_formatter``), the processor has already shipped it, and the record
that stdlib logging makes of it carries the very same ``data_id`` and ``type`` objects. The
processor notes those objects (with its engine and the time of the call); a handler of the same
engine that meets a record with the same objects, created within ``WINDOW`` seconds after that
call, skips it and uses the note up. The note is shared by all threads, because a
``QueueHandler`` may hand the record to a ``QueueListener`` thread. Identity rather than equality,
and the time window, keep an unrelated record with equal values from being skipped.
"""

from __future__ import annotations

import threading
from typing import Any

#: How long after the processor's call the stdlib record may have been created.
WINDOW = 1.0
#: Notes kept at most; the oldest go first (an event that never reached a handler).
MAX_NOTES = 4096


class _State:
    #: False until a processor first hands an event on to stdlib logging: until then the handler
    #: skips the look-up altogether.
    used = False

    def __init__(self) -> None:
        self.lock = threading.Lock()


state = _State()
# (id(data_id), id(type), id(engine)) -> [data_id, type, engine, time of the last call, count]
_notes: dict[tuple[int, int, int], list[Any]] = {}


def reset_after_fork() -> None:
    """A forked child's lock may have been held by a parent thread at fork time."""
    state.lock = threading.Lock()


def remember(data_id: Any, type_: Any, engine: object, when: float) -> None:
    key = (id(data_id), id(type_), id(engine))
    with state.lock:
        state.used = True
        note = _notes.pop(key, None)
        if note is None or note[0] is not data_id or note[1] is not type_:
            note = [data_id, type_, engine, when, 0]
        note[3] = when
        note[4] += 1
        _notes[key] = note  # re-inserted: the dict's order is the age of the last call
        while len(_notes) > MAX_NOTES:
            del _notes[next(iter(_notes))]


def already_shipped(data_id: Any, type_: Any, engine: object, created: float) -> bool:
    key = (id(data_id), id(type_), id(engine))
    with state.lock:
        note = _notes.get(key)
        if note is None or note[0] is not data_id or note[1] is not type_:
            return False
        if not -0.1 <= created - note[3] <= WINDOW:
            return False
        note[4] -= 1
        if note[4] <= 0:
            del _notes[key]
        return True
