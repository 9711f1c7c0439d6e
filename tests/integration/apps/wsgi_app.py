"""A plain WSGI app for gunicorn that logs one feedback record per request.

The handler is created at import: in each worker, or once in the master with ``--preload`` (the
workers then inherit it across ``fork()``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any, Callable

from humanloop_logging import FeedbackHandler

log = logging.getLogger("app")
log.setLevel(logging.INFO)  # the root logger's WARNING would drop INFO feedback
log.addHandler(FeedbackHandler())

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path: str = environ.get("PATH_INFO", "")
    if path.startswith("/feedback/"):
        data_id = path[len("/feedback/") :]
        log.info("user rated answer", extra={"data_id": data_id, "type": "rating", "value": "good"})
        body = f"{data_id} {os.getpid()}".encode()
    elif path == "/health":
        body = b"ok"
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
