"""How the stand-in answers a request: the Humanloop FastAPI service's request handling, emulated.

The real service is a FastAPI app whose ``POST /v4/feedback`` takes
``Union[List[FeedbackRequest], FeedbackRequest]`` and checks the API key in a security dependency
(the document's ``APIKeyHeader``), which FastAPI resolves before it validates the body: a wrong key
with a bad body is a 401, never a 422. Its answers depend on the stack under it, so the stand-in has
two *flavours*:

* ``"v1"``: FastAPI 0.99 on pydantic 1.10, what the v4 API ran on. Lenient: numbers and booleans
  are coerced into strings, ``null`` is accepted for optional fields, a value of ``1`` becomes
  ``true``; a 422 lists a bad value once per member of its union and adds ``["body"]`` for the
  object branch of the body's union; an integer too large for a float is a 500.
* ``"v2"``: current FastAPI on pydantic 2. Strict about types; a 422 ``loc`` carries union tags
  (``["body", "list[FeedbackRequest]", 3, "value", "list[str]", 1]``) and the object branch adds
  ``["body", "FeedbackRequest"]`` echoing the whole request; a body without a JSON Content-Type
  is refused.

This module is the framing, the same code path for both and standard library only: routing (404,
405, a 307 to the path without its trailing slash), the Content-Type rule, JSON parsing (422 for a
JSON syntax error, 400 for anything else ``json.loads`` raises), both done before any dependency
runs, then the key (401), then body validation (a :data:`BodyValidator` from :mod:`._validators`),
then the endpoint (unknown datapoints), then rendering the way Starlette's ``JSONResponse`` does,
where a lone surrogate or a NaN is a 500. ``value`` is optional, as the document's schema has it:
an item with neither ``value`` nor ``unset`` is accepted.
"""

from __future__ import annotations

import email.message
import json
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Callable, Optional, Union
from urllib.parse import unquote, urlsplit

Loc = list[Union[str, int]]
ErrorDetail = dict[str, Any]
#: An item as validated: its fields as the service would echo them.
Item = dict[str, Any]
#: ``validate(body) -> (errors, validated)``: no errors and a list of items (the array branch) or
#: one item (the object branch), or errors and None. Raises _ServerError where the service 500s.
BodyValidator = Callable[[Any], tuple[list[ErrorDetail], Union[list[Item], Item, None]]]

#: The stacks the stand-in can answer like.
FLAVOURS = ("v1", "v2")

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
    refuse_every_key: bool = False,
) -> ServiceAnswer:
    """The service's answer to one request (``target`` is the request line's path and query;
    ``headers`` have lower-cased names; ``validator`` comes from :func:`body_validator`;
    ``refuse_every_key`` answers as if ``api_key`` were revoked)."""
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
    # The security dependency: FastAPI solves dependencies before it validates the body.
    given = headers.get("x-api-key")
    if (
        refuse_every_key
        or given is None
        or not secrets.compare_digest(
            given.encode("utf-8", "surrogateescape"), api_key.encode("utf-8")
        )
    ):
        return _json_answer(401, {"detail": "Invalid API key"})
    try:
        if parsed is _MISSING_BODY or (flavour == "v1" and parsed is None):
            errors, validated = [_missing(flavour, ["body"])], None
        else:
            errors, validated = validator(parsed)
    except _ServerError:
        return _internal_error()
    if errors or validated is None:
        return _json_answer(422, {"detail": errors})

    # The endpoint: which branch of the body's union validated (pydantic 1 may read an array as
    # one object), then the datapoints it does not know.
    batch = isinstance(validated, list)
    items = validated if isinstance(validated, list) else [validated]
    errors = []
    for index, item in enumerate(items):
        data_id = item.get("data_id")
        if isinstance(data_id, str) and data_id in unknown_data_ids:
            loc: Loc = ["body", index, "data_id"] if batch else ["body", "data_id"]
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


def _v2_finite(item: Item) -> Item:
    """pydantic 2 writes an infinite or NaN float as null in JSON (FastAPI renders with it)."""
    value = item.get("value")
    if isinstance(value, float) and not math.isfinite(value):
        item["value"] = None
    return item
