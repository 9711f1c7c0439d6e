"""The standard-library emulation of the v2 flavour: pydantic 2 on the service's models.

What the stand-in validates bodies with when pydantic is not installed (see :mod:`._validators`):
the same status and ``loc`` lists (union tags included) as pydantic 2, for the JSON a client can
send.
"""

from __future__ import annotations

import calendar
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Union

from ._service import FEEDBACK_TYPES, ErrorDetail, Item, Loc, _missing, _v2_finite

_EPOCH = datetime(1970, 1, 1)

_V2_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt _](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?)?",
    re.ASCII,
)
_V2_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)", re.ASCII)


class _V2Error(Exception):
    def __init__(self, kind: str, msg: str, **ctx: Any) -> None:
        super().__init__(msg)
        self.kind, self.msg, self.ctx = kind, msg, ctx


def _v2_error(loc: Loc, exc: _V2Error, value: Any) -> ErrorDetail:
    error: ErrorDetail = {"type": exc.kind, "loc": loc, "msg": exc.msg, "input": value}
    if exc.ctx:
        error["ctx"] = exc.ctx
    return error


def _v2_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _V2Error("string_type", "Input should be a valid string")


def _v2_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"0", "off", "f", "false", "n", "no"}:
        return False
    if isinstance(value, str) and value.lower() in {"1", "on", "t", "true", "y", "yes"}:
        return True
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, (str, int)):
        raise _V2Error("bool_parsing", "Input should be a valid boolean, unable to interpret input")
    raise _V2Error("bool_type", "Input should be a valid boolean")


def _v2_datetime(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _V2Error("datetime_type", "Input should be a valid datetime")
    if isinstance(value, str) and _V2_NUMBER.fullmatch(value):
        value = float(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            raise _V2Error(
                "datetime_parsing", "Input should be a valid datetime, NaN values not permitted"
            )
        seconds = float(value) if abs(value) < 1e300 else math.inf
        if abs(seconds) > 2e10:
            seconds /= 1000
        try:
            moment = (_EPOCH + timedelta(seconds=seconds)).replace(tzinfo=timezone.utc)
        except (OverflowError, ValueError):
            raise _V2Error(
                "datetime_parsing",
                "Input should be a valid datetime, dates after 9999 are not supported as unix "
                "timestamps",
            ) from None
        return _v2_isoformat(moment)
    match = _V2_DATETIME.fullmatch(value)
    bad = _V2Error(
        "datetime_from_date_parsing", "Input should be a valid datetime or date, invalid format"
    )
    if match is None:
        raise bad
    year, month, day, hour, minute, second, fraction, zulu, sign, zone_h, zone_m = match.groups()
    try:
        if int(year) == 0 or not 1 <= int(day) <= calendar.monthrange(int(year), int(month))[1]:
            raise bad
        tzinfo: Optional[timezone] = None
        if zulu:
            tzinfo = timezone.utc
        elif sign:
            if int(zone_h) > 23 or int(zone_m) > 59:
                raise bad
            minutes = 60 * int(zone_h) + int(zone_m)
            tzinfo = timezone(timedelta(minutes=-minutes if sign == "-" else minutes))
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=tzinfo,
        )
    except (ValueError, calendar.IllegalMonthError):
        raise bad from None
    return _v2_isoformat(moment)


def _v2_isoformat(moment: datetime) -> str:
    """How pydantic 2 writes a datetime in JSON: ``Z`` for UTC."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _v2_value(value: Any, loc: Loc) -> tuple[Any, list[ErrorDetail]]:
    """Smart Union[bool, float, List[str], str]: the exact type wins; ints become floats."""
    if isinstance(value, (bool, str)):
        return value, []
    if isinstance(value, float) or (isinstance(value, int) and abs(value) < 2**1024):
        return float(value), []
    if isinstance(value, list) and all(isinstance(element, str) for element in value):
        return value, []
    errors = [
        _v2_error([*loc, "bool"], _V2Error("bool_type", "Input should be a valid boolean"), value),
        _v2_error([*loc, "float"], _V2Error("float_type", "Input should be a valid number"), value),
    ]
    if isinstance(value, list):
        errors.extend(
            _v2_error(
                [*loc, "list[str]", position],
                _V2Error("string_type", "Input should be a valid string"),
                element,
            )
            for position, element in enumerate(value)
            if not isinstance(element, str)
        )
    else:
        errors.append(
            _v2_error(
                [*loc, "list[str]"], _V2Error("list_type", "Input should be a valid list"), value
            )
        )
    errors.append(
        _v2_error([*loc, "str"], _V2Error("string_type", "Input should be a valid string"), value)
    )
    return None, errors


def _v2_item(item: Any, loc: Loc) -> tuple[Optional[Item], list[ErrorDetail]]:
    if not isinstance(item, dict):
        error = _V2Error(
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        )
        return None, [_v2_error(loc, error, item)]
    errors: list[ErrorDetail] = []
    out: dict[str, Any] = {}
    if "type" not in item:
        errors.append(_missing("v2", [*loc, "type"], item))
    elif isinstance(item["type"], str):
        out["type"] = item["type"]
    else:
        expected = " or ".join(
            [", ".join(f"'{name}'" for name in FEEDBACK_TYPES[:-1]), f"'{FEEDBACK_TYPES[-1]}'"]
        )
        errors.append(
            _v2_error(
                [*loc, "type", "str-enum[FeedbackType]"],
                _V2Error("enum", f"Input should be {expected}", expected=expected),
                item["type"],
            )
        )
        errors.append(
            _v2_error(
                [*loc, "type", "str"],
                _V2Error("string_type", "Input should be a valid string"),
                item["type"],
            )
        )
    if "value" in item:
        out["value"], value_errors = _v2_value(item["value"], [*loc, "value"])
        errors.extend(value_errors)
    for name, check in (
        ("data_id", _v2_str),
        ("user", _v2_str),
        ("created_at", _v2_datetime),
        ("unset", _v2_bool),
    ):
        if name in item:
            try:
                out[name] = check(item[name])
            except _V2Error as exc:
                errors.append(_v2_error([*loc, name], exc, item[name]))
    return (None if errors else out), errors


def _stdlib_v2(body: Any) -> tuple[list[ErrorDetail], Union[list[Item], Item, None]]:
    """pydantic 2's smart union of the array and the object branch, with their tags in ``loc``."""
    errors: list[ErrorDetail] = []
    if isinstance(body, list):
        items: list[Item] = []
        for index, element in enumerate(body):
            item, item_errors = _v2_item(element, ["body", "list[FeedbackRequest]", index])
            errors.extend(item_errors)
            if item is not None:
                items.append(_v2_finite(item))
        if not errors:
            return [], items
    else:
        errors.append(
            _v2_error(
                ["body", "list[FeedbackRequest]"],
                _V2Error("list_type", "Input should be a valid list"),
                body,
            )
        )
    single, single_errors = _v2_item(body, ["body", "FeedbackRequest"])
    if single is not None:
        return [], _v2_finite(single)
    return errors + single_errors, None
