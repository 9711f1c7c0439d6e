"""Make ``SIGTERM`` a normal exit, so the exit hook can send what is queued.

With Python's default disposition a process killed by ``SIGTERM`` (``docker stop``, systemd,
Kubernetes) dies at once: no ``atexit`` hook runs and queued feedback is lost. gunicorn workers
(and uvicorn before 0.29) turn ``SIGTERM`` into a normal exit; a plain process can opt in here.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Optional

__all__ = ["exit_on_sigterm"]


def _exit(signum: int, _frame: Optional[FrameType]) -> None:
    sys.exit(128 + signum)


def exit_on_sigterm() -> bool:
    """Turn ``SIGTERM`` into ``SystemExit(143)`` if nothing else handles it yet.

    Returns True if the handler was installed. A handler the application (or its server) already
    set is left alone, and so is everything when called off the main thread, where Python does not
    allow it.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _exit)
    return True
