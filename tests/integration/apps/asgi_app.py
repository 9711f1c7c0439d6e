"""A FastAPI app that logs one feedback record per request, as a user would wire it up.

The handler is created when the module is imported (uvicorn imports it after configuring its own
logging). With ``HL_LIFESPAN_CLOSE=1`` the lifespan shutdown closes the handler, the advice
of docs/lifecycle.md for uvicorn >= 0.29.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from humanloop_logging import FeedbackHandler

feedback_handler = FeedbackHandler()
log = logging.getLogger("app")
log.setLevel(logging.INFO)  # the root logger's WARNING would drop INFO feedback
log.addHandler(feedback_handler)


@contextlib.asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
    if os.environ.get("HL_LIFESPAN_CLOSE") == "1":
        feedback_handler.close()  # drain before uvicorn re-raises SIGTERM


app = FastAPI(lifespan=lifespan)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/feedback/{data_id}")
def feedback(data_id: str) -> PlainTextResponse:
    log.info("user rated answer", extra={"data_id": data_id, "type": "rating", "value": "good"})
    return PlainTextResponse(f"{data_id} {os.getpid()}")
