"""Body validation for the stand-in: pydantic itself when it is installed, else an emulation.

When pydantic is importable the stand-in validates with pydantic (``pydantic.v1`` for the v1
flavour), on models built like the service's, so every status and ``loc`` is the real one. Without
pydantic it uses the standard-library emulation of each flavour (:mod:`._stdlib_v1`,
:mod:`._stdlib_v2`), which reproduces its rules for the JSON a client can send; docs/stand-in.md
lists where it still differs.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from enum import Enum
from typing import Any, Union

from ._service import _FIELDS, FLAVOURS, BodyValidator, ErrorDetail, Item, _ServerError, _v2_finite
from ._stdlib_v1 import _stdlib_v1
from ._stdlib_v2 import _stdlib_v2

#: ``"auto"`` uses pydantic when it is importable for the flavour, else the standard library.
VALIDATORS = ("auto", "pydantic", "stdlib")


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
            {name: _v1_json(getattr(item, name)) for name in _FIELDS}
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
            _v2_finite(item.model_dump(mode="json"))
            for item in (validated if isinstance(validated, list) else [validated])
        ]
        return [], items if isinstance(validated, list) else items[0]

    return validate
