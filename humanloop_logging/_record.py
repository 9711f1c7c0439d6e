"""Feedback records: captured cheaply on the caller's thread, validated on the flush thread.

The caller's thread only builds a plain tuple (``Captured``) of the objects it was given, freezing a
list ``value`` into a tuple so that later mutation by the application changes nothing. Everything
that costs time (type checks, timestamps, JSON) happens in :func:`to_payload` on the flush thread,
before a record may join a batch. The flush thread shares the GIL with the application, so it
validates whole batches with :func:`to_payloads`, which settles the common record (plain strings
and numbers, no ``created_at``, no ``unset``) with a few type checks and writes its JSON text
directly, leaves everything else to :func:`to_payload`, and sends the texts with
:func:`encode_array`.
"""

from __future__ import annotations

import json
import math
import numbers
import reprlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from json.encoder import encode_basestring
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
        if item[VALUE] is not None:  # none: left out, as the schema allows; the service judges
            payload["value"] = _value(item[VALUE], item)
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


#: Bytes a record takes as JSON beyond its strings' own: keys, quotes and commas (91 with every
#: optional key), plus the longest value that is not a string (an integer of 309 digits and a sign).
_RECORD_OVERHEAD = 91 + 310

#: Capture timestamps from here up are left to ``to_payload``, which refuses years past 9999.
_FAST_STAMP_END = 32503680000.0  # 3000-01-01T00:00:00Z

#: A string's JSON, quotes included, as ``_ENCODER`` writes it (``ensure_ascii=False``): json's
#: own function, in C when its accelerator is built.
_quoted = encode_basestring

#: Three digits per entry: microseconds are written as two lookups, cheaper than ``"%06d"``.
_DIGITS = tuple(f"{number:03d}" for number in range(1000))


def to_payloads(
    items: Sequence[Captured], default_user: Optional[str]
) -> tuple[list[str], list[FeedbackValidationError]]:
    """Validate a batch: each valid record's JSON object text, in order, and an error for each refused one.

    Each record gets exactly the outcome ``to_payload`` gives it, its JSON (as text) or the same
    error, for a fraction of the cost on the flush thread, which shares the GIL with the
    application: see ``_validate``. Texts rather than objects, because the request only needs the
    JSON; the rare path that needs a record's object reads its text back with ``json.loads``.
    """
    texts, errors, settled = _validate(items, default_user, careful=False)
    if not settled:  # a lone surrogate or long texts somewhere: check each record on its own
        texts, errors, _ = _validate(items, default_user, careful=True)
    return texts, errors


def encode_array(texts: Sequence[str]) -> bytes:
    """The request body: the records' JSON texts as one array.

    Byte for byte the records' own JSON from ``to_payload``, joined with commas in brackets, as
    ``json`` writes an array with these separators.
    """
    body = ",".join(texts)
    return f"[{body}]".encode()


def _validate(
    items: Sequence[Captured], default_user: Optional[str], *, careful: bool
) -> tuple[list[str], list[FeedbackValidationError], bool]:
    """The outcome of ``to_payloads``, and whether it is final (``careful`` always is).

    A record whose fields are all of the exact built-in types ``to_payload`` accepts unchanged
    (``str``, ``int``, ``float``, ``bool``, a tuple of ``str``), without ``created_at`` or
    ``unset``, has its JSON written here, piece by piece as ``to_payload``'s encoder writes it
    (strings by json's own ``encode_basestring``, numbers by their ``repr``): a dict per record
    and the generic encoder cost several times as much. Such a record can only be refused for a
    lone surrogate or for its size. Both are settled for the whole batch at once: its strings (a
    ``type`` or ``user`` once, however many records share it) are joined and encoded once, and no
    record's JSON is longer than 6 bytes a character (``\\u001f``) of that total plus
    ``_RECORD_OVERHEAD``. Only if either check fails is the batch done again with each record's
    own JSON encoded (``careful``), leaving the records that fail to ``to_payload``, which finds
    the exact size or the surrogate. Any other record goes to ``to_payload`` too, so odd input is
    handled as it always was.
    """
    texts: list[str] = []
    errors: list[FeedbackValidationError] = []
    append = texts.append
    strings: list[str] = []  # every string of the records written here, checked once at the end
    add = strings.append
    elements = 0  # of list values: 3 bytes each (quotes, comma) besides their characters
    quoted = _quoted
    digits = _DIGITS
    shown: Optional[str]  # the value's JSON; None: not a plain value, left to to_payload
    heads: dict[str, str] = {}  # type -> the JSON up to the value: '{"type":"...","value":'
    users: dict[str, str] = {}  # user -> ',"user":"..."'
    default_named: Optional[str] = None  # the same for records without one (None: not plain)
    if default_user is None:
        default_named = ""
    elif type(default_user) is str:
        default_named = f',"user":{quoted(default_user)}'
        add(default_user)
    moments: dict[float, str] = {}  # whole UTC second -> ',"created_at":"<its ISO form>'
    second = next_second = -1.0  # the whole second of the last stamp, and the next
    moment = ""
    for item in items:
        if type(item) is tuple and len(item) == 7:
            data_id, kind, value, user, created_at, unset, stamp = item
            if user is None:
                named = default_named
            elif type(user) is str:
                named = users.get(user)
                if named is None:
                    named = users[user] = f',"user":{quoted(user)}'
                    if not careful:
                        add(user)
            else:
                named = None
            if (
                named is not None
                and type(kind) is str
                and kind
                and type(data_id) is str
                and data_id
                and created_at is None
                and unset is None
                and type(stamp) is float
                and 0.0 <= stamp < _FAST_STAMP_END
            ):
                kind_of_value = type(value)
                if kind_of_value is str:
                    shown = quoted(value)
                elif kind_of_value is int:
                    # int.__repr__, as json writes it; beyond a double, to_payload refuses it.
                    shown = repr(value) if -_MAX_DOUBLE <= value <= _MAX_DOUBLE else None
                elif kind_of_value is float:
                    # float.__repr__, as json writes it; NaN and the infinities give NaN here.
                    shown = repr(value) if value - value == 0.0 else None
                elif kind_of_value is bool:
                    shown = "true" if value else "false"
                elif kind_of_value is tuple:
                    for element in value:
                        if type(element) is not str:
                            shown = None
                            break
                    else:
                        shown = f"[{','.join(map(quoted, value))}]"
                else:
                    shown = None
                if shown is not None:
                    head = heads.get(kind)
                    if head is None:
                        head = heads[kind] = f'{{"type":{quoted(kind)},"value":'
                        if not careful:
                            add(kind)
                    # datetime.fromtimestamp(stamp, timezone.utc).isoformat(), as CPython rounds
                    # it (half to even, on the fraction's microseconds), one datetime per second.
                    if not second <= stamp < next_second:
                        second = stamp - stamp % 1.0  # math.modf's, for a stamp >= 0
                        next_second = second + 1.0
                        moment = _moment(moments, second)
                    # stamp - second is the fraction, exactly: second is 0, or stamp < 2 * second
                    micros = round((stamp - second) * 1e6)
                    if micros == 1000000:  # rounded up into the next second
                        text = (
                            f'{head}{shown},"data_id":{quoted(data_id)}{named}'
                            f'{_moment(moments, next_second)}+00:00"}}'
                        )
                    elif micros:
                        text = (
                            f'{head}{shown},"data_id":{quoted(data_id)}{named}{moment}'
                            f'.{digits[micros // 1000]}{digits[micros % 1000]}+00:00"}}'
                        )
                    else:
                        text = f'{head}{shown},"data_id":{quoted(data_id)}{named}{moment}+00:00"}}'
                    if not careful:
                        append(text)
                        add(data_id)
                        if kind_of_value is str:
                            add(value)
                        elif kind_of_value is tuple:
                            strings.extend(value)
                            elements += len(value)
                        continue
                    if _fits(text):
                        append(text)
                        continue
        try:  # anything else, or (careful) a record with a lone surrogate or perhaps too large
            append(to_payload(item, default_user)[1].decode("utf-8"))
        except FeedbackValidationError as error:
            errors.append(error)
    if careful:
        return texts, errors, True
    return texts, errors, _plain_text("".join(strings), elements)


def _moment(moments: dict[float, str], second: float) -> str:
    """',"created_at":"' and the ISO form of a whole UTC second, without its offset."""
    known = moments.get(second)
    if known is None:
        known = moments[second] = (
            ',"created_at":"' + datetime.fromtimestamp(int(second), timezone.utc).isoformat()[:-6]
        )
    return known


def _plain_text(text: str, elements: int) -> bool:
    """Whether the strings of records (joined in ``text``) are valid and their JSON surely fits."""
    if 6 * len(text) + 3 * elements + _RECORD_OVERHEAD > MAX_RECORD_BYTES:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fits(text: str) -> bool:
    """Whether one record's JSON text is valid Unicode and within the limit as UTF-8."""
    if len(text) > MAX_RECORD_BYTES:  # at least a byte a character
        return False
    try:
        return len(text.encode("utf-8")) <= MAX_RECORD_BYTES
    except UnicodeEncodeError:
        return False
