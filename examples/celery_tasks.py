"""Celery: a task that logs feedback from the worker's prefork pool.

Set ``HUMANLOOP_API_KEY`` (or run ``humanloop-logging serve`` and set ``HUMANLOOP_BASE_URL`` to
the address it prints), then, from ``examples/``::

    celery -A celery_tasks worker --loglevel INFO      # the worker
    python celery_tasks.py data_abc data_def           # queue a rating of each datapoint

``CELERY_BROKER_URL`` names the broker (``redis://localhost:6379/0``, ``amqp://...``); without it
messages are files in a folder (kombu's filesystem transport), so the example needs no server.

Tasks log through Celery's task logger, and the handler joins it once Celery has set its logging
up (``after_setup_task_logger``): the worker removes handlers it finds at start-up. Run the
worker at ``--loglevel INFO``; Celery sets the task logger to that level, WARNING by default, which
drops INFO feedback. Nothing else is needed for the pool: the handler is built in the worker's main
process before it forks, each child starts with an empty queue of its own, and a child that ends
(``--max-tasks-per-child``, a warm shutdown) sends what it queued on Celery's
``worker_process_shutdown`` signal, before billiard's ``os._exit()`` skips every exit hook.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from typing import Any

from celery import Celery
from celery.signals import after_setup_task_logger
from celery.utils.log import get_task_logger

from humanloop_logging import FeedbackHandler

app = Celery("celery_tasks", broker=os.environ.get("CELERY_BROKER_URL", "filesystem://"))
if app.conf.broker_url == "filesystem://":
    folder = os.environ.get("CELERY_BROKER_FOLDER", os.path.join(tempfile.gettempdir(), "celery"))
    os.makedirs(os.path.join(folder, "control"), exist_ok=True)
    app.conf.broker_transport_options = {
        "data_folder_in": folder,
        "data_folder_out": folder,
        "control_folder": os.path.join(folder, "control"),
    }
app.conf.task_ignore_result = True  # no result backend in this example

log = get_task_logger(__name__)


@after_setup_task_logger.connect
def add_feedback_handler(logger: logging.Logger, **_kwargs: Any) -> None:
    logger.addHandler(FeedbackHandler())  # reads HUMANLOOP_API_KEY


@app.task
def rate_answer(data_id: str, value: str = "good") -> None:
    log.info("user rated answer", extra={"data_id": data_id, "type": "rating", "value": value})


if __name__ == "__main__":
    for data_id in sys.argv[1:]:
        rate_answer.delay(data_id)
    print(f"queued {len(sys.argv) - 1} task(s)")
