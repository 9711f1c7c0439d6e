"""Settings of the one-view project: no database, no apps, the handler in ``LOGGING``."""

from __future__ import annotations

from typing import Any

SECRET_KEY = "integration-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "hl_django.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, Any] = {}
USE_TZ = True

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "console": {"class": "logging.StreamHandler", "level": "WARNING"},
        "humanloop": {"()": "humanloop_logging.FeedbackHandler"},
    },
    # INFO on the root: at Python's default WARNING the feedback lines would never reach it.
    "root": {"level": "INFO", "handlers": ["console", "humanloop"]},
}
