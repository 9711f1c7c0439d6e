"""gunicorn settings for the stack scenarios: each worker says when it is ready.

A worker forked by the master installs its own SIGTERM handler only after it has booted; a SIGTERM
that reaches it earlier is taken by the master's handler, which the child inherited, and is lost:
that worker then serves on until the master kills it after ``graceful_timeout`` (30 s). A
scenario therefore waits for every worker's line before it sends anything, so that what it
measures is the library's shutdown, not that race in gunicorn.
"""

from __future__ import annotations

import os
from typing import Any

READY = "gunicorn worker ready"


def post_worker_init(worker: Any) -> None:
    """Called in the worker once its signal handlers are installed and the app is loaded."""
    # One write: the workers share the pipe, and a line written in pieces could interleave.
    os.write(2, f"{READY} {os.getpid()}\n".encode())
