"""FastAPI: feedback from a route, all of it sent even when a deploy stops the server.

Set ``HUMANLOOP_API_KEY`` (or, to try it locally with no key, run ``humanloop-logging serve`` and
set ``HUMANLOOP_BASE_URL`` to the address it prints), then start the app the way you serve it::

    uvicorn fastapi_app:app --app-dir examples
    python examples/fastapi_app.py                      # uvicorn.run()
    gunicorn -k uvicorn_worker.UvicornWorker -w 2 --chdir examples fastapi_app:app

and rate an answer: ``curl -X POST localhost:8000/answers/data_abc/rating?value=good``.
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from humanloop_logging import FeedbackHandler, FeedbackMiddleware

# Feedback on a logger of its own: the root logger's default level (WARNING) would drop INFO, and
# feedback is not for the console.
feedback_log = logging.getLogger("app.feedback")
feedback_log.setLevel(logging.INFO)
feedback_log.propagate = False
feedback_log.addHandler(FeedbackHandler())  # reads HUMANLOOP_API_KEY

app = FastAPI()
# uvicorn ends its shutdown by raising SIGTERM again, which kills the process before any exit
# hook runs: this sends what is still queued at the lifespan shutdown, before that.
app.add_middleware(FeedbackMiddleware)


@app.post("/answers/{data_id}/rating")
def rate_answer(data_id: str, value: str = "good") -> dict[str, str]:
    feedback_log.info(
        "user rated answer", extra={"data_id": data_id, "type": "rating", "value": value}
    )
    return {"data_id": data_id, "rating": value, "pid": str(os.getpid())}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
