"""A real FastAPI service for ``POST /v4/feedback``, built from the vendored v4 OpenAPI models.

The models follow ``tests/data/humanloop-v4-feedback.openapi.json`` field by field, written the way
a FastAPI app of the v4 era wrote them (``str = None`` for an optional field, which the document
renders as a plain ``{"type": "string"}``), and the endpoint takes the document's request body,
``Union[list[FeedbackRequest], FeedbackRequest]``. The same source runs on FastAPI 0.99 with
pydantic 1.10 and on current FastAPI with pydantic 2: each answers as that stack does, which is
what the stand-in is checked against. The API key is the document's security scheme,
``APIKeyHeader`` on ``X-API-KEY``, checked in a dependency: FastAPI solves it after it has parsed
the JSON but before it validates the body, so a wrong key with an invalid body is a 401. ``value``
is optional, as the schema has it (its description's "required otherwise" is prose no model
enforces): an item with neither ``value`` nor ``unset`` is accepted.

Run as a program it binds 127.0.0.1 on a free port, serves with uvicorn, and prints
``ready <port> pydantic=<major>`` on stdout once it accepts requests. The product never imports it.
"""

from __future__ import annotations

import argparse
import secrets
import socket
from datetime import datetime
from enum import Enum
from typing import Any, Optional, Union

import pydantic
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Security
from fastapi.encoders import jsonable_encoder
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

API_KEY = "hl-test-key"
PYDANTIC_MAJOR = int(pydantic.VERSION.split(".")[0])

_TYPE_DESCRIPTION = (
    "The type of feedback. The default feedback types available are 'rating', 'action', "
    "'issue', 'correction', and 'comment'."
)


class FeedbackType(str, Enum):
    """An enumeration."""

    rating = "rating"
    action = "action"
    issue = "issue"
    correction = "correction"
    comment = "comment"


class FeedbackRequest(BaseModel):
    """One feedback item, as the document's ``FeedbackRequest`` schema describes it."""

    type: Union[FeedbackType, str] = Field(
        ..., title="Feedback type", description=_TYPE_DESCRIPTION
    )
    value: Union[bool, float, list[str], str] = Field(  # type: ignore[assignment]
        None,
        title="Feedback value",
        description=(
            "The feedback value to be set. This field should be left blank when unsetting "
            "'rating', 'correction' or 'comment', but is required otherwise."
        ),
    )
    data_id: str = Field(  # type: ignore[assignment]
        None,
        title="Datapoint ID",
        description="ID to associate the feedback to a previously logged datapoint.",
    )
    user: str = Field(  # type: ignore[assignment]
        None, title="User", description="A unique identifier to who provided the feedback."
    )
    created_at: datetime = Field(  # type: ignore[assignment]
        None,
        title="Created at",
        description="User defined timestamp for when the feedback was created. ",
    )
    unset: bool = Field(  # type: ignore[assignment]
        None, title="Unset", description="If true, the value for this feedback is unset."
    )


app = FastAPI(title="Humanloop API", version="4.0.1")


_api_key_header = APIKeyHeader(name="X-API-KEY", auto_error=False)


def api_key(x_api_key: Optional[str] = Security(_api_key_header)) -> str:
    """The security dependency: a missing or wrong key is a 401, before the body is validated."""
    if x_api_key is None or not secrets.compare_digest(
        x_api_key.encode("utf-8", "surrogateescape"), API_KEY.encode("utf-8")
    ):
        raise HTTPException(status_code=401, detail="Invalid API key")
    return x_api_key


@app.post("/v4/feedback", dependencies=[Depends(api_key)])
def feedback(body: Union[list[FeedbackRequest], FeedbackRequest]) -> Any:
    """Submit an array of feedback for existing ``data_ids``."""
    items = body if isinstance(body, list) else [body]
    answers = [{**jsonable_encoder(item), "id": f"ann_{secrets.token_hex(12)}"} for item in items]
    return answers if isinstance(body, list) else answers[0]


class _Server(uvicorn.Server):
    """Says on stdout when it is ready, so a test waits on a line instead of sleeping."""

    async def startup(self, sockets: Optional[list[socket.socket]] = None) -> None:
        await super().startup(sockets=sockets)
        port = sockets[0].getsockname()[1] if sockets else 0
        print(f"ready {port} pydantic={PYDANTIC_MAJOR}", flush=True)


def main(argv: Optional[list[str]] = None) -> None:
    """Serve on 127.0.0.1 (a free port unless ``--port``) until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off")
    _Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
