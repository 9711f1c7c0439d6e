"""Feedback records: captured cheaply on the caller's thread, validated on the flush thread.

The caller's thread only builds a plain tuple (``Captured``) of the objects it was given, freezing a
list ``value`` into a tuple so that later mutation by the application changes nothing. Everything
that costs time (type checks, timestamps, JSON) happens in :func:`to_payload` on the flush thread,
before a record may join a batch.
"""

from __future__ import annotations

import json
import math
import numbers
import reprlib
import sys
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Optional

from .exceptions import FeedbackValidationError

#: (data_id, type, value, user, created_at, unset, timestamp of the log call)
Captured = tuple[Any, Any, Any, Any, Any, Any, float]

DATA_ID, TYPE, VALUE, USER, CREATED_AT, UNSET, TIMESTAMP = range(7)
FIELD_NAMES = ("data_id", "type", "value", "user", "created_at", "unset")

#: The largest integer a double holds (``sys.float_info.max``, exactly); beyond it JSON has no number.
_MAX_DOUBLE = int(sys.float_info.max)

#: One encoder for every record: ``json.dumps`` with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

#: A record larger than this, as JSON, is refused rather than sent (it would swell every batch).
MAX_RECORD_BYTES = 1 << 20

_repr = reprlib.Repr()
_repr.maxstring = 120
_repr.maxother = 120
_repr.maxlevel = 3


def safe_repr(value: object) -> str:
    """A short repr that never raises, whatever ``__repr__`` does."""
    try:
        return _repr.repr(value)
    except Exception as exc:  # a hostile object: say what it is, not what it contains
        return f"<{type(value).__name__} object; repr failed: {type(exc).__name__}>"


@dataclass(frozen=True)
class Unreadable:
    """Stands in for a value that raised while being captured on the caller's thread."""

    description: str


def freeze(value: Any) -> Any:
    """Copy a list value at the call; anything else is immutable or will be refused anyway.

    Never raises: a value that fights back (a raising ``__class__`` or ``__iter__``) becomes an
    ``Unreadable`` that validation refuses and reports like any other bad value.
    """
    try:
        if type(value) is list or isinstance(value, list):
            return tuple(value)
    except Exception as exc:
        return Unreadable(f"{type(value).__name__} that raised {type(exc).__name__} when read")
    return value


def unreadable(error: BaseException, timestamp: float) -> Captured:
    """The record to count and report when capturing one failed on the caller's thread."""
    return (
        None,
        None,
        Unreadable(f"capture raised {type(error).__name__}"),
        None,
        None,
        None,
        timestamp,
    )


def described(item: Captured) -> dict[str, str]:
    """A loggable view of a captured record: every present field as a safe repr."""
    return {name: safe_repr(field) for name, field in zip(FIELD_NAMES, item) if field is not None}


def _text(field: str, value: Any, item: Captured) -> str:
    if not isinstance(value, str):
        raise FeedbackValidationError(
            field,
            f"must be a string, got {type(value).__name__} {safe_repr(value)}",
            described(item),
        )
    text = str.__str__(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FeedbackValidationError(
            field,
            f"is not valid Unicode text (lone surrogate at index {exc.start})",
            described(item),
        ) from None
    return text


def _value(value: Any, item: Captured) -> Any:
    if type(value) is str:  # the common case first: no ABC checks
        return _text("value", value, item)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return _text("value", value, item)
    if isinstance(value, numbers.Integral):
        whole = int(value)
        if not -_MAX_DOUBLE <= whole <= _MAX_DOUBLE:
            # JSON parsers read numbers as doubles, and the service fails on the whole request.
            raise FeedbackValidationError(
                "value",
                f"is an integer of {whole.bit_length()} bits, larger than any JSON number "
                "(a double) can hold",
                described(item),
            )
        return whole
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise FeedbackValidationError(
                "value", f"must be a finite number, got {number}", described(item)
            )
        return number
    if isinstance(value, tuple):  # a list or tuple, frozen at the call
        out: list[str] = []
        for index, element in enumerate(value):
            if not isinstance(element, str):
                raise FeedbackValidationError(
                    "value",
                    f"list item {index} must be a string, got {type(element).__name__}",
                    described(item),
                )
            out.append(_text("value", element, item))
        return out
    if isinstance(value, Unreadable):
        raise FeedbackValidationError(
            "value", f"could not be read: {value.description}", described(item)
        )
    raise FeedbackValidationError(
        "value",
        "must be a string, number, boolean or list of strings, "
        f"got {type(value).__name__} {safe_repr(value)}",
        described(item),
    )


def _parse_iso(text: str) -> Optional[datetime]:
    candidate = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    # A bare date has no time of day; the API wants a date-time.
    return parsed if ("T" in candidate or " " in candidate or "t" in candidate) else None


def _utc(moment: datetime) -> str:
    """ISO-8601 in UTC: RFC 3339 has no offsets with seconds, which Python's zones may have.

    A naive datetime is local time, as ``datetime.astimezone()`` reads it.
    """
    return moment.astimezone(timezone.utc).isoformat()


def _created_at(value: Any, timestamp: float, item: Captured) -> str:
    try:
        if value is None:
            return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()
        if isinstance(value, datetime):
            return _utc(value)
        if isinstance(value, str):
            parsed = _parse_iso(value)
            if parsed is not None:
                return _utc(parsed)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, timezone.utc).isoformat()
    except (ValueError, OverflowError, OSError) as exc:
        raise FeedbackValidationError(
            "created_at", f"is out of range: {safe_repr(value)} ({exc})", described(item)
        ) from None
    kind = "a date without a time" if isinstance(value, date) else type(value).__name__
    raise FeedbackValidationError(
        "created_at",
        "must be a datetime, an ISO-8601 date-time string or epoch seconds, "
        f"got {kind} {safe_repr(value)}",
        described(item),
    )


def to_payload(item: Captured, default_user: str | None) -> tuple[dict[str, Any], bytes]:
    """Validate one captured record into its request object and that object's JSON bytes.

    Raises FeedbackValidationError naming the first bad field; never anything else.
    """
    try:
        for name, field in zip(FIELD_NAMES, item):
            if isinstance(field, Unreadable):
                raise FeedbackValidationError(
                    name, f"could not be read: {field.description}", described(item)
                )
        payload: dict[str, Any] = {"type": _text("type", item[TYPE], item)}
        if not payload["type"]:
            raise FeedbackValidationError("type", "must not be empty", described(item))
        unset = item[UNSET]
        if unset is not None and not isinstance(unset, bool):
            raise FeedbackValidationError(
                "unset", f"must be a boolean, got {type(unset).__name__}", described(item)
            )
        if item[VALUE] is not None:
            payload["value"] = _value(item[VALUE], item)
        elif unset is not True:
            raise FeedbackValidationError(
                "value", "is missing; it is required unless unset is True", described(item)
            )
        payload["data_id"] = _text("data_id", item[DATA_ID], item)
        if not payload["data_id"]:
            raise FeedbackValidationError("data_id", "must not be empty", described(item))
        user = item[USER] if item[USER] is not None else default_user
        if user is not None:
            payload["user"] = _text("user", user, item)
        payload["created_at"] = _created_at(item[CREATED_AT], item[TIMESTAMP], item)
        if unset is not None:
            payload["unset"] = unset
        body = _ENCODER.encode(payload)
        data = body.encode("utf-8")
    except FeedbackValidationError:
        raise
    except Exception as exc:  # a hostile object (e.g. a raising __eq__ or __index__): refuse it
        raise FeedbackValidationError(
            "record",
            f"could not be serialised: {type(exc).__name__}: {safe_repr(exc)}",
            described(item),
        ) from None
    if len(data) > MAX_RECORD_BYTES:
        raise FeedbackValidationError(
            "record",
            f"is {len(data)} bytes as JSON; the limit is {MAX_RECORD_BYTES} bytes",
            described(item),
        )
    return payload, data
