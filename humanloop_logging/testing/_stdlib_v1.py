"""The standard-library emulation of the v1 flavour: pydantic 1.10 on the service's models.

What the stand-in validates bodies with when pydantic is not installed (see :mod:`._validators`):
the same status, ``loc`` lists and messages as pydantic 1.10, for the JSON a client can send.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Union

from ._service import FEEDBACK_TYPES, ErrorDetail, Item, Loc, _ServerError

_BOOL_FALSE = {0, "0", "off", "f", "false", "n", "no"}
_BOOL_TRUE = {1, "1", "on", "t", "true", "y", "yes"}

# pydantic 1.10's datetime_parse expressions (\d is Unicode-aware there too).
_V1_DATETIME = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})[T ]"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{1,2})"
    r"(?::(?P<second>\d{1,2})(?:\.(?P<microsecond>\d{1,6})\d{0,6})?)?"
    r"(?P<tzinfo>Z|[+-]\d{2}(?::?\d{2})?)?$"
)
_EPOCH = datetime(1970, 1, 1)


class _V1Error(Exception):
    def __init__(self, msg: str, kind: str, **ctx: Any) -> None:
        super().__init__(msg)
        self.msg, self.kind, self.ctx = msg, kind, ctx


def _v1_error(loc: Loc, exc: _V1Error) -> ErrorDetail:
    error: ErrorDetail = {"loc": loc, "msg": exc.msg, "type": exc.kind}
    if exc.ctx:
        error["ctx"] = exc.ctx
    return error


def _v1_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    raise _V1Error("str type expected", "type_error.str")


def _v1_bool(value: Any) -> bool:
    if value is True or value is False:
        return value
    if isinstance(value, str):
        value = value.lower()
    try:
        if value in _BOOL_TRUE:
            return True
        if value in _BOOL_FALSE:
            return False
    except TypeError:
        pass
    raise _V1Error("value could not be parsed to a boolean", "type_error.bool")


def _v1_float(value: Any) -> float:
    if isinstance(value, float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _V1Error("value is not a valid float", "type_error.float") from None
    except OverflowError as exc:  # pydantic 1 does not catch it: the service answers 500
        raise _ServerError from exc


def _v1_datetime(value: Any) -> datetime:
    if isinstance(value, (int, float)):
        number: Optional[float] = value
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    else:
        raise _V1Error("invalid type; expected datetime, string, bytes, int or float", "type_error")
    if number is not None:
        return _v1_from_unix_seconds(number)
    match = _V1_DATETIME.match(value)
    if match is None:
        raise _V1Error("invalid datetime format", "value_error.datetime")
    parts = match.groupdict()
    zone = parts.pop("tzinfo")
    if parts["microsecond"]:
        parts["microsecond"] = parts["microsecond"].ljust(6, "0")
    fields = {name: int(text) for name, text in parts.items() if text is not None}
    try:
        tzinfo: Optional[timezone] = None
        if zone == "Z":
            tzinfo = timezone.utc
        elif zone is not None:
            minutes = 60 * int(zone[1:3]) + (int(zone[-2:]) if len(zone) > 3 else 0)
            tzinfo = timezone(timedelta(minutes=-minutes if zone[0] == "-" else minutes))
        return datetime(**fields, tzinfo=tzinfo)
    except (ValueError, OverflowError):
        raise _V1Error("invalid datetime format", "value_error.datetime") from None


def _v1_from_unix_seconds(seconds: float) -> datetime:
    if seconds > 3e20:
        return datetime.max
    if seconds < -3e20:
        return datetime.min
    while abs(seconds) > 2e10:
        seconds /= 1000
    try:
        return (_EPOCH + timedelta(seconds=seconds)).replace(tzinfo=timezone.utc)
    except ValueError as exc:  # NaN: pydantic reports the ValueError's own text
        raise _V1Error(str(exc), "value_error") from None
    except OverflowError as exc:
        raise _ServerError from exc


def _v1_value(value: Any, loc: Loc) -> tuple[Any, list[ErrorDetail]]:
    """Union[bool, float, List[str], str], tried left to right; every member's error if none."""
    errors: list[ErrorDetail] = []
    for member in (_v1_bool, _v1_float):
        try:
            return member(value), []
        except _V1Error as exc:
            errors.append(_v1_error(loc, exc))
    if isinstance(value, list):
        strings: list[str] = []
        element_errors: list[ErrorDetail] = []
        for position, element in enumerate(value):
            if element is None:
                element_errors.append(
                    _v1_error(
                        [*loc, position],
                        _V1Error("none is not an allowed value", "type_error.none.not_allowed"),
                    )
                )
                continue
            try:
                strings.append(_v1_str(element))
            except _V1Error as exc:
                element_errors.append(_v1_error([*loc, position], exc))
        if not element_errors:
            return strings, []
        errors.extend(element_errors)
    else:
        errors.append(_v1_error(loc, _V1Error("value is not a valid list", "type_error.list")))
    try:
        return _v1_str(value), []
    except _V1Error as exc:
        errors.append(_v1_error(loc, exc))
    return None, errors


def _v1_item(item: Any, loc: Loc) -> tuple[Optional[Item], list[ErrorDetail]]:
    if item is None:
        error = _V1Error("none is not an allowed value", "type_error.none.not_allowed")
        return None, [_v1_error(loc, error)]
    if not isinstance(item, dict):
        try:
            item = dict(item)
        except (TypeError, ValueError):
            return None, [_v1_error(loc, _V1Error("value is not a valid dict", "type_error.dict"))]
    errors: list[ErrorDetail] = []
    out: dict[str, Any] = {}
    if "type" not in item:
        errors.append(_v1_error([*loc, "type"], _V1Error("field required", "value_error.missing")))
    elif item["type"] is None:
        errors.append(
            _v1_error(
                [*loc, "type"],
                _V1Error("none is not an allowed value", "type_error.none.not_allowed"),
            )
        )
    elif item["type"] in FEEDBACK_TYPES:
        out["type"] = item["type"]
    else:
        try:
            out["type"] = _v1_str(item["type"])
        except _V1Error as exc:
            errors.append(
                _v1_error(
                    [*loc, "type"],
                    _V1Error(
                        "value is not a valid enumeration member; permitted: "
                        + ", ".join(f"'{name}'" for name in FEEDBACK_TYPES),
                        "type_error.enum",
                        enum_values=list(FEEDBACK_TYPES),
                    ),
                )
            )
            errors.append(_v1_error([*loc, "type"], exc))
    value = item.get("value")
    if value is not None:
        out["value"], value_errors = _v1_value(value, [*loc, "value"])
        errors.extend(value_errors)
    for name in ("data_id", "user"):
        if item.get(name) is not None:
            try:
                out[name] = _v1_str(item[name])
            except _V1Error as exc:
                errors.append(_v1_error([*loc, name], exc))
    if item.get("created_at") is not None:
        try:
            out["created_at"] = _v1_datetime(item["created_at"]).isoformat()
        except _V1Error as exc:
            errors.append(_v1_error([*loc, "created_at"], exc))
    if item.get("unset") is not None:
        try:
            out["unset"] = _v1_bool(item["unset"])
        except _V1Error as exc:
            errors.append(_v1_error([*loc, "unset"], exc))
    return (None if errors else out), errors


def _stdlib_v1(body: Any) -> tuple[list[ErrorDetail], Union[list[Item], Item, None]]:
    """pydantic 1.10 on ``Union[List[FeedbackRequest], FeedbackRequest]``: the array branch, then
    the object branch; the errors of both when neither fits."""
    errors: list[ErrorDetail] = []
    if isinstance(body, list):
        items: list[Item] = []
        for index, element in enumerate(body):
            item, item_errors = _v1_item(element, ["body", index])
            errors.extend(item_errors)
            if item is not None:
                items.append(item)
        if not errors:
            return [], items
    else:
        errors.append(_v1_error(["body"], _V1Error("value is not a valid list", "type_error.list")))
    single, single_errors = _v1_item(body, ["body"])
    if single is not None:
        return [], single
    return errors + single_errors, None
