"""stdlib logging set up with ``logging.config.dictConfig``, as most applications configure it.

The handler is one entry whose ``"()"`` names ``humanloop_logging.FeedbackHandler``; every setting
is a key of that entry. A second ``dictConfig()`` (a framework configuring logging after you, as
Django and Celery do) closes the first handler; feedback it had queued is still sent.

Run it with ``HUMANLOOP_API_KEY`` set (and ``HUMANLOOP_BASE_URL=http://127.0.0.1:8742/v4`` with
``humanloop-logging serve`` running, to try it without a key): ``python dictconfig.py``.
"""

import logging
import logging.config

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "console": {"class": "logging.StreamHandler", "level": "WARNING"},
        "humanloop": {
            "()": "humanloop_logging.FeedbackHandler",  # reads HUMANLOOP_API_KEY
            "batch_size": 50,
            "default_user": "web-app",
        },
    },
    "root": {"level": "INFO", "handlers": ["console", "humanloop"]},
}

logging.config.dictConfig(LOGGING)
log = logging.getLogger(__name__)
log.info("user rated answer", extra={"data_id": "data_abc", "type": "rating", "value": "good"})

# Configured again later: the first handler is closed, and what it queued is sent all the same.
logging.config.dictConfig(LOGGING)
log.info("user copied answer", extra={"data_id": "data_abc", "type": "action", "value": "copy"})
