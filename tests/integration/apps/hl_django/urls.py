"""Two views: a health check and one that logs a feedback record."""

from __future__ import annotations

import logging
import os

from django.http import HttpRequest, HttpResponse
from django.urls import path

log = logging.getLogger("app")


def health(_request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def feedback(_request: HttpRequest, data_id: str) -> HttpResponse:
    log.info("user rated answer", extra={"data_id": data_id, "type": "rating", "value": "good"})
    return HttpResponse(f"{data_id} {os.getpid()}")


urlpatterns = [
    path("health", health),
    path("feedback/<str:data_id>", feedback),
]
