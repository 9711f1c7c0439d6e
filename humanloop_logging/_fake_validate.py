"""The stand-in's emulation of the service, at the import path it had before it moved.

It lives in :mod:`humanloop_logging.testing` now (``_service``: the request pipeline and its
answers; ``_validators``: body validation). Code that imported it from here keeps working.
"""

from __future__ import annotations

from .testing._service import (
    FEEDBACK_PATH,
    FEEDBACK_TYPES,
    FLAVOURS,
    BodyValidator,
    ErrorDetail,
    Item,
    Loc,
    ServiceAnswer,
    answer_request,
    render,
)
from .testing._validators import VALIDATORS, body_validator, pydantic_available

__all__ = [
    "FEEDBACK_PATH",
    "FEEDBACK_TYPES",
    "FLAVOURS",
    "VALIDATORS",
    "BodyValidator",
    "ErrorDetail",
    "Item",
    "Loc",
    "ServiceAnswer",
    "answer_request",
    "body_validator",
    "pydantic_available",
    "render",
]
