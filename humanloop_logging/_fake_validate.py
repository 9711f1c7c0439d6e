"""Request checks for the local stand-in: the OpenAPI request schema of ``POST /feedback``, answered
the way the FastAPI service answers (a 422 whose ``detail`` lists every bad field of every bad item).

Standard library only: the stand-in ships to users, who should not need jsonschema to run it. The
date-time check mirrors what ``jsonschema``'s ``date-time`` format checker does with
``rfc3339-validator``, so the stand-in and the schema agree on every string.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from typing import Any, Union

__all__ = [
    "ErrorDetail",
    "Loc",
    "decode_json",
    "is_rfc3339_datetime",
    "unknown_datapoint_errors",
    "validate_body",
]

Loc = list[Union[str, int]]
ErrorDetail = dict[str, Any]

_MISSING = ("field required", "value_error.missing")
_NONE = ("none is not an allowed value", "type_error.none.not_allowed")
_NOT_STR = ("str type expected", "type_error.str")
_NOT_BOOL = ("value is not a valid boolean", "type_error.bool")
_NOT_DICT = ("value is not a valid dict", "type_error.dict")
_NOT_LIST = ("value is not a valid list", "type_error.list")
_BAD_DATETIME = ("invalid datetime format", "value_error.datetime")
_BAD_VALUE = (
    "value is not a valid feedback value (boolean, number, string or list of strings)",
    "type_error.union",
)

# The expression rfc3339-validator uses (it is what jsonschema's "date-time" check calls).
_RFC3339 = re.compile(
    r"""
    ^
    (\d{4})                             # year
    -
    (0[1-9]|1[0-2])                     # month
    -
    (\d{2})                             # day
    T
    (?:[01]\d|2[0123])                  # hours
    :
    (?:[0-5]\d)                         # minutes
    :
    (?:[0-5]\d)                         # seconds
    (?:\.\d+)?                          # fraction
    (?:Z|[+-](?:[01]\d|2[0123]):[0-5]\d)  # UTC or offset
    $
    """,
    re.VERBOSE | re.ASCII,
)

# Finds where json.loads met a token it refused (parse_constant / parse_float get no position).
_JSON_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"|(?P<constant>-?Infinity|NaN)|(?P<number>-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)'
)


class _RefusedToken(ValueError):
    """A token json.loads accepts but strict JSON does not (NaN, Infinity, a float that overflows)."""


def _refuse_constant(name: str) -> Any:
    raise _RefusedToken("Expecting value")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise _RefusedToken("Number out of range")
    return number


def _refused_position(text: str) -> int:
    """Offset of the first NaN/Infinity literal or overflowing number outside a string."""
    for match in _JSON_TOKEN.finditer(text):
        if match.group("constant"):
            return match.start()
        number = match.group("number")
        if number and not number.lstrip("-").isdigit() and math.isinf(float(number)):
            return match.start()
    return 0


def _error(loc: Loc, message: tuple[str, str], **extra: Any) -> ErrorDetail:
    return {"loc": loc, "msg": message[0], "type": message[1], **extra}


def _json_invalid(position: int, reason: str) -> list[ErrorDetail]:
    return [
        {
            "loc": ["body", position],
            "msg": "JSON decode error",
            "type": "json_invalid",
            "ctx": {"error": reason},
        }
    ]


def decode_json(raw: bytes) -> tuple[Any, list[ErrorDetail]]:
    """Parse a request body as strict JSON; the errors list is empty when it parsed.

    An empty body is a missing body (FastAPI's "field required"); NaN, Infinity and numbers too large
    for a double are refused, because no other JSON parser would read them back.
    """
    if not raw.strip():
        return None, [_error(["body"], _MISSING)]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, _json_invalid(exc.start, "Invalid UTF-8")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float), []
    except json.JSONDecodeError as exc:
        return None, _json_invalid(exc.pos, exc.msg)
    except _RefusedToken as exc:
        return None, _json_invalid(_refused_position(text), str(exc))
    except (ValueError, RecursionError) as exc:  # e.g. an integer past the digit limit
        return None, _json_invalid(0, str(exc) or type(exc).__name__)


def is_rfc3339_datetime(text: str) -> bool:
    """True if jsonschema's ``date-time`` format check (rfc3339-validator) accepts ``text``."""
    match = _RFC3339.match(text.upper())
    if match is None:
        return False
    year, month, day = (int(group) for group in match.groups())
    if year == 0:
        return False
    return 1 <= day <= calendar.monthrange(year, month)[1]


def _is_feedback_value(value: Any) -> bool:
    if isinstance(value, (bool, str)):
        return True
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, list) and all(isinstance(entry, str) for entry in value)


def _check_string(item: dict[str, Any], name: str, loc: Loc, errors: list[ErrorDetail]) -> None:
    if name in item:
        value = item[name]
        if value is None:
            errors.append(_error([*loc, name], _NONE))
        elif not isinstance(value, str):
            errors.append(_error([*loc, name], _NOT_STR))


def _item_errors(item: Any, loc: Loc) -> list[ErrorDetail]:
    """Every problem with one FeedbackRequest, in the order pydantic reports fields."""
    if not isinstance(item, dict):
        return [_error(loc, _NOT_DICT)]
    errors: list[ErrorDetail] = []
    if "type" not in item:
        errors.append(_error([*loc, "type"], _MISSING))
    else:
        _check_string(item, "type", loc, errors)
    if "value" in item:
        value = item["value"]
        if value is None:
            errors.append(_error([*loc, "value"], _NONE))
        elif not _is_feedback_value(value):
            errors.append(_error([*loc, "value"], _BAD_VALUE))
    elif item.get("unset") is not True:
        # The schema leaves value optional, but its description (and the service) require it
        # unless the feedback is being unset.
        errors.append(_error([*loc, "value"], _MISSING))
    _check_string(item, "data_id", loc, errors)
    _check_string(item, "user", loc, errors)
    _check_string(item, "created_at", loc, errors)
    created_at = item.get("created_at")
    if isinstance(created_at, str) and not is_rfc3339_datetime(created_at):
        errors.append(_error([*loc, "created_at"], _BAD_DATETIME))
    if "unset" in item:
        unset = item["unset"]
        if unset is None:
            errors.append(_error([*loc, "unset"], _NONE))
        elif not isinstance(unset, bool):
            errors.append(_error([*loc, "unset"], _NOT_BOOL))
    return errors


def validate_body(body: Any) -> list[ErrorDetail]:
    """Errors for a parsed body: one FeedbackRequest object or an array of them."""
    if isinstance(body, list):
        errors: list[ErrorDetail] = []
        for index, item in enumerate(body):
            errors.extend(_item_errors(item, ["body", index]))
        return errors
    if isinstance(body, dict):
        return _item_errors(body, ["body"])
    return [_error(["body"], _NOT_LIST), _error(["body"], _NOT_DICT)]


def unknown_datapoint_errors(body: Any, unknown: frozenset[str]) -> list[ErrorDetail]:
    """The service's answer to feedback on datapoints it does not know, for a body already valid."""
    if not unknown:
        return []
    items: list[tuple[Loc, Any]]
    if isinstance(body, list):
        items = [(["body", index], item) for index, item in enumerate(body)]
    else:
        items = [(["body"], body)]
    errors: list[ErrorDetail] = []
    for loc, item in items:
        data_id = item.get("data_id") if isinstance(item, dict) else None
        if isinstance(data_id, str) and data_id in unknown:
            errors.append(
                {
                    "loc": [*loc, "data_id"],
                    "msg": f"Datapoint {data_id} not found",
                    "type": "value_error.not_found",
                }
            )
    return errors
