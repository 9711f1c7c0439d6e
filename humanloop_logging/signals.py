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


#: Signals a process is told to stop or act by: they must reach the main thread, which runs
#: Python's handlers. A signal the kernel gives to a background thread only sets a flag, and a
#: main thread blocked in a wait (``Event().wait()``, a server's loop) never wakes to act on it.
_FOR_THE_MAIN_THREAD = {
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")
    if hasattr(signal, name)
}


def start_without_signals(thread: threading.Thread) -> None:
    """Start one of the library's own threads with SIGTERM and the like blocked from birth.

    A thread inherits the signal mask of the thread that starts it, so the mask is set here,
    around ``start()``, and restored after: a mask set by the new thread itself would leave a
    window between its birth and its first line in which the kernel could hand it a signal that
    the main thread then never sees. (POSIX; elsewhere a plain ``start()``.) ``start()``'s own
    ``RuntimeError`` at interpreter shutdown passes through.
    """
    if not hasattr(signal, "pthread_sigmask"):
        thread.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _FOR_THE_MAIN_THREAD)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def reraising_server() -> Optional[str]:
    """The server that will end this process by raising ``SIGTERM`` again with Python's default
    action after its graceful shutdown (so no exit hook runs), or None.

    uvicorn >= 0.29 swaps in its ``Server.handle_exit`` for the whole of ``serve()`` and, once
    shut down, puts back the handler that was there before and raises the signal again: that
    handler is Python's default unless :func:`exit_on_sigterm` set ours first. Read without
    importing uvicorn; uvicorn < 0.29 handled signals in its event loop and exited normally.
    """
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    server_module = sys.modules.get("uvicorn.server")
    if server_module is None or not isinstance(server, getattr(server_module, "Server", ())):
        return None
    if not hasattr(server, "capture_signals") or _INSTALLED.is_set():
        return None
    return "uvicorn"


#: Set once exit_on_sigterm() installed its handler: a server started afterwards restores that
#: handler, not death, when it raises SIGTERM again.
_INSTALLED = threading.Event()


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
    _INSTALLED.set()
    return True
