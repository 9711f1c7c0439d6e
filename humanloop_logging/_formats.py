"""Where feedback lives in a JSON log line, for ``humanloop-logging send``.

A preset says where the feedback fields sit in a line of one logging library's JSON output, and
which field holds the time the line was logged:

- structlog's ``JSONRenderer``: the event's keys at the top level, ``timestamp`` from
  ``TimeStamper`` (ISO-8601 text or epoch seconds);
- python-json-logger: ``extra`` at the top level, ``asctime`` (logging's local
  ``2024-05-01 12:00:00,123``) or ``timestamp`` (ISO-8601, with ``timestamp=True``);
- loguru with ``serialize=True``: ``{"text": ..., "record": {"extra": {...}, "time": {"repr":
  ..., "timestamp": <epoch>}}}``;
- ``auto``: loguru's shape when the line has it, else the top level with any of those times.

A line is feedback when it has both a ``data_id`` and a ``type`` there; it becomes the library's
captured tuple, so the engine validates it as it does a log call's. The line's time becomes
``created_at`` unless the line names one itself: backfilled feedback keeps the time it happened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Optional, Union

from ._record import FIELD_NAMES, Captured, freeze

__all__ = ["PRESETS", "Layout", "Recognised", "layout_for"]

Path = tuple[str, ...]

#: What recognising a line gives: the captured record, or why the line is not one.
Recognised = Union[Captured, str]

NOT_JSON = "not JSON"
NOT_OBJECT = "not a JSON object"

_LOGURU_TIME: Path = ("record", "time", "timestamp")
_TOP_TIMES: tuple[Path, ...] = (("timestamp",), ("asctime",), ("@timestamp",), ("time",))


@dataclass(frozen=True)
class Layout:
    """Where the feedback fields of one format are: a path to the object that holds them, each
    field's (dotted) key in it, and the candidate paths, from the line's root, of its time."""

    name: str
    path: Path = ()
    keys: Mapping[str, Path] = field(default_factory=lambda: {n: (n,) for n in FIELD_NAMES})
    times: tuple[Path, ...] = _TOP_TIMES

    @cached_property
    def flat(self) -> Optional[tuple[str, ...]]:
        """The fields' keys, when each is one key deep (no dotted mapping)."""
        if all(len(self.keys[name]) == 1 for name in FIELD_NAMES):
            return tuple(self.keys[name][0] for name in FIELD_NAMES)
        return None

    @cached_property
    def needle(self) -> bytes:
        """Bytes every feedback line of this layout contains: the data_id key, quoted. Lines
        without them are skipped unparsed, which is most of a log."""
        return json.dumps(self.keys["data_id"][-1]).encode("utf-8")

    def recognise(self, line: bytes, now: float) -> Recognised:
        """The line's captured record, or the reason it is not feedback."""
        try:
            event = json.loads(line)
        except ValueError:
            return NOT_JSON
        if not isinstance(event, dict):
            return NOT_OBJECT
        if self.name == "auto":
            return _auto(event, self, now)
        return _capture(event, self, self.path, self.times, now)


PRESETS: dict[str, Layout] = {
    "structlog": Layout("structlog", times=(("timestamp",),)),
    "python-json-logger": Layout(
        "python-json-logger", times=(("asctime",), ("timestamp",), ("created",))
    ),
    "loguru": Layout("loguru", path=("record", "extra"), times=(_LOGURU_TIME,)),
    "auto": Layout("auto"),
}


def dotted(text: str, what: str) -> Path:
    """``a.b`` as a path; a clear error for an empty part."""
    parts = tuple(text.split(".")) if text else ()
    if any(not part for part in parts):
        raise ValueError(f"{what} {text!r} has an empty part; write keys separated by dots")
    return parts


def layout_for(
    preset: str,
    *,
    path: Optional[str] = None,
    fields: Sequence[str] = (),
    time_field: Optional[str] = None,
) -> Layout:
    """The preset, moved to ``path`` (dotted), with ``fields`` (``name=dotted.key``) renamed and
    the time read from ``time_field``. ValueError names what to fix."""
    if preset not in PRESETS:
        raise ValueError(f"unknown format {preset!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[preset]
    keys = dict(base.keys)
    for mapping in fields:
        name, sep, key = mapping.partition("=")
        name = name.strip()
        if not sep or name not in FIELD_NAMES:
            raise ValueError(
                f"--field {mapping!r}: write FIELD=KEY with FIELD one of {', '.join(FIELD_NAMES)}"
            )
        keys[name] = dotted(key.strip(), f"--field {name}=")
        if not keys[name]:
            raise ValueError(f"--field {mapping!r}: the key is empty")
    name = base.name
    where = base.path
    if path is not None:
        where = dotted(path, "--path")
        name = "custom" if name == "auto" else name
    times = base.times if time_field is None else (dotted(time_field, "--time-field"),)
    if name == "auto" and (path is not None or time_field is not None):
        name = "custom"
    return Layout(name, where, keys, times)


def _at(event: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(event, dict):
            return None
        event = event.get(key)
    return event


def _auto(event: dict[str, Any], layout: Layout, now: float) -> Recognised:
    record = event.get("record")
    if isinstance(record, dict) and isinstance(record.get("extra"), dict):
        return _capture(event, layout, ("record", "extra"), (_LOGURU_TIME,), now)
    return _capture(event, layout, (), _TOP_TIMES, now)


def _capture(
    event: dict[str, Any], layout: Layout, path: Path, times: tuple[Path, ...], now: float
) -> Recognised:
    where = _at(event, path) if path else event
    if not isinstance(where, dict):
        return f"no object at {'.'.join(path)}"
    names = layout.flat
    if names is not None:  # every key at one level: plain lookups, the common case
        data_id, kind, value, user, created_at, unset = (where.get(name) for name in names)
    else:
        keys = layout.keys
        data_id, kind, value, user, created_at, unset = (
            _at(where, keys[name]) for name in FIELD_NAMES
        )
    if data_id is None:
        return "no data_id"
    if kind is None:
        return "no feedback type"
    if created_at is None:
        for candidate in times:
            stamp = _at(event, candidate)
            if stamp is not None:
                created_at = _moment(stamp)
                break
    return (data_id, kind, freeze(value), user, created_at, unset, now)


def _moment(stamp: Any) -> Any:
    """A line's time as the engine reads ``created_at``: epoch seconds and ISO-8601 pass as they
    are (the engine refuses anything else, naming it); logging's ``asctime``, with its comma
    before the milliseconds, is read as local time, which is what it is."""
    if isinstance(stamp, str) and len(stamp) == 23 and stamp[19:20] == ",":
        try:
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        except ValueError:
            return stamp
    return stamp
