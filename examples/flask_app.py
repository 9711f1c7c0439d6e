"""Flask: feedback from a route through stdlib logging, under the development server or gunicorn.

Set ``HUMANLOOP_API_KEY`` (or run ``humanloop-logging serve`` and set ``HUMANLOOP_BASE_URL`` to
the address it prints), then, from ``examples/``::

    flask --app flask_app run                          # development; Ctrl-C sends what is queued
    gunicorn -w 2 --preload flask_app:app              # production, with or without --preload

and rate an answer: ``curl -X POST localhost:5000/answers/data_abc/rating -d value=good``.

Under gunicorn there is nothing more to do. On SIGTERM each worker finishes its requests and
exits through ``sys.exit()``, so the exit hook sends what is queued within ``exit_timeout`` (keep
it below ``--graceful-timeout``). With ``--preload`` the handler is built once in the master, and
each forked worker starts with an empty queue and sends only its own records.
"""

from __future__ import annotations

import logging
import os
from logging.config import dictConfig

from flask import Flask, request

# Logging first, before the app exists, as Flask's documentation advises.
dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            # Reads HUMANLOOP_API_KEY and HUMANLOOP_BASE_URL; settings go here as keywords.
            "humanloop": {"()": "humanloop_logging.FeedbackHandler"},
        },
        "loggers": {
            # Feedback on a logger of its own at INFO: the root logger's default level (WARNING)
            # would drop logger.info(), and feedback is not for the console.
            "app.feedback": {"handlers": ["humanloop"], "level": "INFO", "propagate": False},
        },
    }
)
feedback_log = logging.getLogger("app.feedback")

app = Flask(__name__)


@app.post("/answers/<data_id>/rating")
def rate_answer(data_id: str) -> dict[str, object]:
    value = request.form.get("value", "good")
    feedback_log.info(
        "user rated answer", extra={"data_id": data_id, "type": "rating", "value": value}
    )
    return {"data_id": data_id, "rating": value, "pid": os.getpid()}
