"""How the stand-in answers a request: the Humanloop FastAPI service's request handling, emulated.

The real service is a FastAPI app whose ``POST /v4/feedback`` takes
``Union[List[FeedbackRequest], FeedbackRequest]`` and checks the API key inside the endpoint. Its
answers depend on the stack under it, so the stand-in has two *flavours*:

* ``"v1"``: FastAPI 0.99 on pydantic 1.10, what the v4 API ran on. Lenient: numbers and booleans
  are coerced into strings, ``null`` is accepted for optional fields, a value of ``1`` becomes
  ``true``; a 422 lists a bad value once per member of its union and adds ``["body"]`` for the
  object branch of the body's union; an integer too large for a float is a 500.
* ``"v2"``: current FastAPI on pydantic 2. Strict about types; a 422 ``loc`` carries union tags
  (``["body", "list[FeedbackRequest]", 3, "value", "list[str]", 1]``) and the object branch adds
  ``["body", "FeedbackRequest"]`` echoing the whole request; a body without a JSON Content-Type
  is refused.

The framing is the same code path for both and needs only the standard library: routing (404,
405, a 307 to the path without its trailing slash), the Content-Type rule, JSON parsing (422 for a
JSON syntax error, 400 for anything else ``json.loads`` raises), then body validation, then the
endpoint (401 for the key, the ``value``-unless-``unset`` rule, unknown datapoints), then rendering
the way Starlette's ``JSONResponse`` does, where a lone surrogate or a NaN is a 500.

Body validation has two implementations. When pydantic is importable the stand-in validates with
pydantic itself (``pydantic.v1`` for the v1 flavour), on models built like the service's, so
every status and ``loc`` is the real one. Without pydantic it uses the standard-library emulation
below, which reproduces each flavour's rules for the JSON a client can send; the README lists
where it still differs.
"""

from __future__ import annotations

import calendar
import email.message
import importlib
import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Callable, Optional, Union
from urllib.parse import unquote, urlsplit

__all__ = [
    "FLAVOURS",
    "VALIDATORS",
    "ErrorDetail",
    "Loc",
    "answer_request",
    "body_validator",
    "pydantic_available",
]

Loc = list[Union[str, int]]
ErrorDetail = dict[str, Any]

#: The stacks the stand-in can answer like.
FLAVOURS = ("v1", "v2")
#: ``"auto"`` uses pydantic when it is importable for the flavour, else the standard library.
VALIDATORS = ("auto", "pydantic", "stdlib")

#: The one route, as on ``https://api.humanloop.com``.
FEEDBACK_PATH = "/v4/feedback"
FEEDBACK_TYPES = ("rating", "action", "issue", "correction", "comment")
_FIELDS = ("type", "value", "data_id", "user", "created_at", "unset")

_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class ServiceAnswer:
    """One answer: status, body and its Content-Type (None: no body), extra headers, and the
    feedback items accepted (None unless the status is 200)."""

    status: int
    payload: bytes
    content_type: Optional[str] = _JSON
    headers: tuple[tuple[str, str], ...] = ()
    accepted: Optional[list[Any]] = None


class _ServerError(Exception):
    """What makes the real service answer 500: an exception its code does not handle."""


# -- rendering: Starlette's JSONResponse ---------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    """What FastAPI's ``jsonable_encoder`` makes of the values pydantic puts in an error."""
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode()  # invalid UTF-8 raises, and the service answers 500
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, BaseException):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def render(content: Any) -> bytes:
    """``JSONResponse.render``: no ASCII escaping, no NaN; raises where Starlette would."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_jsonable
    ).encode("utf-8")


def _json_answer(status: int, content: Any, accepted: Optional[list[Any]] = None) -> ServiceAnswer:
    try:
        payload = render(content)
    except (ValueError, TypeError, UnicodeError):  # a NaN, a lone surrogate: the service's 500
        return _internal_error()
    return ServiceAnswer(status, payload, _JSON, (), accepted)


def _internal_error() -> ServiceAnswer:
    return ServiceAnswer(500, b"Internal Server Error", _TEXT)


# -- the request pipeline ------------------------------------------------------------------------


def answer_request(
    *,
    flavour: str,
    validator: BodyValidator,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    api_key: str,
    unknown_data_ids: frozenset[str] = frozenset(),
) -> ServiceAnswer:
    """The service's answer to one request (``target`` is the request line's path and query;
    ``headers`` have lower-cased names; ``validator`` comes from :func:`body_validator`)."""
    split = urlsplit(target)
    path = unquote(split.path)
    if path != FEEDBACK_PATH:
        if path.endswith("/") and path.rstrip("/") == FEEDBACK_PATH:
            host = headers.get("host", "")
            location = f"http://{host}{FEEDBACK_PATH}" + (f"?{split.query}" if split.query else "")
            return ServiceAnswer(307, b"", None, (("Location", location),))
        return _json_answer(404, {"detail": "Not Found"})
    if method != "POST":
        answer = _json_answer(405, {"detail": "Method Not Allowed"})
        return ServiceAnswer(answer.status, answer.payload, _JSON, (("Allow", "POST"),))

    parsed = _read_body(flavour, headers, body)
    if isinstance(parsed, ServiceAnswer):
        return parsed
    try:
        if parsed is _MISSING_BODY or (flavour == "v1" and parsed is None):
            errors, validated = [_missing(flavour, ["body"])], None
        else:
            errors, validated = validator(parsed)
    except _ServerError:
        return _internal_error()
    if errors or validated is None:
        return _json_answer(422, {"detail": errors})

    # The endpoint: the key, then the rules the models do not state.
    given = headers.get("x-api-key")
    if given is None or not secrets.compare_digest(
        given.encode("utf-8", "surrogateescape"), api_key.encode("utf-8")
    ):
        return _json_answer(401, {"detail": "Invalid API key"})
    # Which branch of the body's union validated: pydantic 1 may read an array as one object.
    batch = isinstance(validated, list)
    items = validated if isinstance(validated, list) else [validated]
    errors = []
    for index, item in enumerate(items):
        loc: Loc = ["body", index] if batch else ["body"]
        if "value" not in item["__set__"] and item.get("unset") is not True:
            errors.append(_missing(flavour, [*loc, "value"]))
    if not errors:
        for index, item in enumerate(items):
            data_id = item.get("data_id")
            if isinstance(data_id, str) and data_id in unknown_data_ids:
                loc = ["body", index, "data_id"] if batch else ["body", "data_id"]
                errors.append(_not_found(flavour, loc, data_id))
    if errors:
        return _json_answer(422, {"detail": errors})
    answers = [
        {**{name: item.get(name) for name in _FIELDS}, "id": f"ann_{secrets.token_hex(12)}"}
        for item in items
    ]
    accepted = parsed if isinstance(parsed, list) and batch else [parsed]
    return _json_answer(200, answers if batch else answers[0], accepted)


_MISSING_BODY = object()


def _read_body(flavour: str, headers: Mapping[str, str], body: bytes) -> Any:
    """FastAPI's body reading: JSON when the Content-Type says so, else the raw bytes."""
    if not body:
        return _MISSING_BODY
    content_type = headers.get("content-type")
    if not content_type:
        is_json = flavour == "v1"  # FastAPI >= 0.132 refuses a body without a Content-Type
    else:
        message = email.message.Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        is_json = message.get_content_maintype() == "application" and (
            subtype == "json" or subtype.endswith("+json")
        )
    if not is_json:
        return body
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        return _json_answer(422, {"detail": [_json_error(flavour, exc)]})
    except Exception:  # invalid UTF-8, an integer past the digit limit, deep nesting
        return _json_answer(400, {"detail": "There was an error parsing the body"})


def _json_error(flavour: str, exc: json.JSONDecodeError) -> ErrorDetail:
    if flavour == "v1":
        return {
            "loc": ["body", exc.pos],
            "msg": str(exc),
            "type": "value_error.jsondecode",
            "ctx": {
                "msg": exc.msg,
                "doc": exc.doc,
                "pos": exc.pos,
                "lineno": exc.lineno,
                "colno": exc.colno,
            },
        }
    return {
        "type": "json_invalid",
        "loc": ["body", exc.pos],
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": exc.msg},
    }


def _missing(flavour: str, loc: Loc, item: Any = None) -> ErrorDetail:
    if flavour == "v1":
        return {"loc": loc, "msg": "field required", "type": "value_error.missing"}
    return {"type": "missing", "loc": loc, "msg": "Field required", "input": item}


def _not_found(flavour: str, loc: Loc, data_id: str) -> ErrorDetail:
    msg = f"Datapoint {data_id} not found"
    if flavour == "v1":
        return {"loc": loc, "msg": msg, "type": "value_error.not_found"}
    return {"type": "not_found", "loc": loc, "msg": msg, "input": data_id}


# -- body validation -----------------------------------------------------------------------------

#: An item as validated: its fields as the service would echo them, plus ``"__set__"``, the names
#: the item gave (for the ``value`` rule).
Item = dict[str, Any]
#: ``validate(body) -> (errors, validated)``: no errors and a list of items (the array branch) or
#: one item (the object branch), or errors and None. Raises _ServerError where the service 500s.
BodyValidator = Callable[[Any], tuple[list[ErrorDetail], Union[list[Item], Item, None]]]


def pydantic_available(flavour: str) -> bool:
    """True if the installed pydantic can validate like ``flavour`` (v1 works from pydantic 2 too,
    through ``pydantic.v1``; v2 needs pydantic 2)."""
    try:
        _pydantic_validator(flavour)
    except ImportError:
        return False
    return True


def body_validator(flavour: str, validator: str = "auto") -> tuple[str, BodyValidator]:
    """The body validation for ``flavour``: ``("pydantic" | "stdlib", validate)``."""
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {', '.join(FLAVOURS)}, not {flavour!r}")
    if validator not in VALIDATORS:
        raise ValueError(f"validator must be one of {', '.join(VALIDATORS)}, not {validator!r}")
    if validator != "stdlib":
        try:
            return "pydantic", _pydantic_validator(flavour)
        except ImportError:
            if validator == "pydantic":
                raise
    return "stdlib", _stdlib_v1 if flavour == "v1" else _stdlib_v2


_PYDANTIC_CACHE: dict[str, BodyValidator] = {}


def _pydantic_validator(flavour: str) -> BodyValidator:
    cached = _PYDANTIC_CACHE.get(flavour)
    if cached is None:
        cached = _pydantic_v1() if flavour == "v1" else _pydantic_v2()
        _PYDANTIC_CACHE[flavour] = cached
    return cached


class _FeedbackType(str, Enum):
    rating = "rating"
    action = "action"
    issue = "issue"
    correction = "correction"
    comment = "comment"


_FeedbackType.__name__ = _FeedbackType.__qualname__ = "FeedbackType"  # pydantic v2 tags with it


def _model_fields() -> dict[str, Any]:
    """The service's FeedbackRequest fields, for ``create_model``: (type, default)."""
    return {
        "type": (Union[_FeedbackType, str], ...),
        "value": (Union[bool, float, list[str], str], None),
        "data_id": (str, None),
        "user": (str, None),
        "created_at": (datetime, None),
        "unset": (bool, None),
    }


def _pydantic_v1() -> BodyValidator:
    pydantic_v1: Any
    try:
        pydantic_v1 = importlib.import_module("pydantic.v1")
    except ImportError:  # pydantic 1.x before 1.10.17 has no pydantic.v1
        pydantic_v1 = importlib.import_module("pydantic")
        if not pydantic_v1.VERSION.startswith("1."):
            raise
    model = pydantic_v1.create_model("FeedbackRequest", **_model_fields())
    body_model = pydantic_v1.create_model("Body", body=(Union[list[model], model], ...))  # type: ignore[valid-type]

    def validate(body: Any) -> tuple[list[ErrorDetail], Union[list[Item], Item, None]]:
        try:
            validated = body_model(body=body).body
        except pydantic_v1.ValidationError as exc:
            # FastAPI 0.99 validates a ModelField named "body" and lists the errors with
            # .errors(); a model with a "body" field gives the same ("body", ...) locs.
            return [dict(error) for error in exc.errors()], None
        except Exception as exc:  # OverflowError from float(2**1024): unhandled, a 500
            raise _ServerError from exc
        items = [
            {
                **{name: _v1_json(getattr(item, name)) for name in _FIELDS},
                "__set__": set(item.__fields_set__),
            }
            for item in (validated if isinstance(validated, list) else [validated])
        ]
        return [], items if isinstance(validated, list) else items[0]

    return validate


def _v1_json(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _pydantic_v2() -> BodyValidator:
    pydantic: Any = importlib.import_module("pydantic")

    if not pydantic.VERSION.startswith("2."):
        raise ImportError("pydantic 2 is needed for the v2 flavour")
    model = pydantic.create_model("FeedbackRequest", **_model_fields())
    adapter = pydantic.TypeAdapter(Union[list[model], model])  # type: ignore[valid-type]

    def validate(body: Any) -> tuple[list[ErrorDetail], Union[list[Item], Item, None]]:
        try:
            validated = adapter.validate_python(body, from_attributes=True)
        except pydantic.ValidationError as exc:
            return [
                {**error, "loc": ["body", *error["loc"]]} for error in exc.errors(include_url=False)
            ], None
        items = [
            _v2_finite({**item.model_dump(mode="json"), "__set__": set(item.model_fields_set)})
            for item in (validated if isinstance(validated, list) else [validated])
        ]
        return [], items if isinstance(validated, list) else items[0]

    return validate


def _v2_finite(item: Item) -> Item:
    """pydantic 2 writes an infinite or NaN float as null in JSON (FastAPI renders with it)."""
    value = item.get("value")
    if isinstance(value, float) and not math.isfinite(value):
        item["value"] = None
    return item


# -- the standard-library emulation: pydantic 1.10 -----------------------------------------------

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
    out: dict[str, Any] = {"__set__": {name for name in _FIELDS if name in item}}
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


# -- the standard-library emulation: pydantic 2 --------------------------------------------------

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
    out: dict[str, Any] = {"__set__": {name for name in _FIELDS if name in item}}
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
