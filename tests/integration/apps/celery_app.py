"""A Celery app on the filesystem broker whose tasks log feedback.

Celery takes the root logger over when the worker starts (``worker_hijack_root_logger``, on by
default): it removes every handler already on the root logger and sets the root level to the
worker's ``--loglevel`` (WARNING unless told otherwise, which drops INFO feedback). So the handler
is added where Celery documents it, in an ``after_setup_logger`` receiver, which runs in the main
process once Celery has configured logging and before the prefork pool forks its children; the
children inherit it. Run the worker with ``--loglevel INFO``.

``HL_CELERY_DIR`` is the broker's folder; each task appends its data_id to ``HL_DONE_FILE`` when
it has logged, so a test can tell that every task ran without looking at the logs.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger

from humanloop_logging import FeedbackHandler

folder = os.environ.get("HL_CELERY_DIR", "celery-broker")
os.makedirs(folder, exist_ok=True)

app = Celery("celery_app")
app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={
        "data_folder_in": folder,
        "data_folder_out": folder,
        "control_folder": os.path.join(folder, "control"),  # not the working directory
        "polling_interval": 0.1,
    },
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
)


@after_setup_logger.connect
def add_feedback_handler(logger: logging.Logger, **_kwargs: Any) -> None:
    logger.addHandler(FeedbackHandler())


@app.task
def give_feedback(data_id: str) -> None:
    logging.getLogger("app").info(
        "user rated answer", extra={"data_id": data_id, "type": "rating", "value": "good"}
    )
    with open(os.environ["HL_DONE_FILE"], "a") as done:
        done.write(data_id + "\n")


if __name__ == "__main__":  # python celery_app.py PREFIX N: queue N tasks
    prefix, count = sys.argv[1], int(sys.argv[2])
    for n in range(count):
        give_feedback.delay(f"{prefix}-{n}")
    print("QUEUED", count, flush=True)
