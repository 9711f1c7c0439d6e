"""FastAPI with structlog alone: each request binds its datapoint once, feedback events name none.

A dependency binds the request's ``data_id`` into structlog's context variables, so every event
logged while the request is handled carries it: the routes log ``type`` and ``value`` only. The
processor sends those events as feedback; the middleware drains its queue at shutdown.

Run it as ``examples/fastapi_app.py`` says (``uvicorn fastapi_structlog:app --app-dir examples``,
``python examples/fastapi_structlog.py`` or gunicorn's uvicorn worker), and use an answer:
``curl -X POST localhost:8000/answers/data_abc/rating?value=good`` or
``curl -X POST localhost:8000/answers/data_abc/copied``.
"""

from __future__ import annotations

import os

import structlog
from fastapi import APIRouter, Depends, FastAPI

from humanloop_logging import FeedbackMiddleware, FeedbackProcessor

structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,  # first: the processor sees the bound data_id
        FeedbackProcessor(),  # reads HUMANLOOP_API_KEY
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.JSONRenderer(),
    ]
)
log = structlog.get_logger()


async def bind_datapoint(data_id: str) -> None:
    """Every event of this request is about the answer ``data_id`` names.

    ``async``, so it runs in the request's own context: a sync dependency runs on a worker thread
    in a copy of the context, and what it binds would be gone when the route runs.
    """
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(data_id=data_id)


answers = APIRouter(prefix="/answers/{data_id}", dependencies=[Depends(bind_datapoint)])


@answers.post("/rating")
def rate_answer(data_id: str, value: str = "good") -> dict[str, str]:
    log.info("user rated answer", type="rating", value=value)
    return {"data_id": data_id, "rating": value, "pid": str(os.getpid())}


@answers.post("/copied")
def copy_answer(data_id: str) -> dict[str, str]:
    log.info("user copied answer", type="action", value="copy")
    return {"data_id": data_id, "action": "copy", "pid": str(os.getpid())}


app = FastAPI()
app.include_router(answers)
# Drains every shipper of the process, the processor's included, before uvicorn's SIGTERM.
app.add_middleware(FeedbackMiddleware)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
