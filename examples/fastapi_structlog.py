"""FastAPI with structlog alone: the processor sends feedback, the middleware drains at shutdown.

Run it as ``examples/fastapi_app.py`` says (``uvicorn fastapi_structlog:app --app-dir examples``,
``python examples/fastapi_structlog.py`` or gunicorn's uvicorn worker), and rate an answer:
``curl -X POST localhost:8000/answers/data_abc/rating?value=good``.
"""

from __future__ import annotations

import os

import structlog
from fastapi import FastAPI

from humanloop_logging import FeedbackMiddleware, FeedbackProcessor

structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        FeedbackProcessor(),  # reads HUMANLOOP_API_KEY
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.JSONRenderer(),
    ]
)
log = structlog.get_logger()

app = FastAPI()
# Drains every shipper of the process, the processor's included, before uvicorn's SIGTERM.
app.add_middleware(FeedbackMiddleware)


@app.post("/answers/{data_id}/rating")
def rate_answer(data_id: str, value: str = "good") -> dict[str, str]:
    structlog.contextvars.bind_contextvars(data_id=data_id)  # usually bound once per request
    log.info("user rated answer", type="rating", value=value)
    structlog.contextvars.clear_contextvars()
    return {"data_id": data_id, "rating": value, "pid": str(os.getpid())}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
