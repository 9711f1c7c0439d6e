"""A hard limit on the whole of one request, which ``requests``' timeouts are not.

``requests`` applies its timeout to each socket operation, so a server that trickles its answer a
byte at a time keeps a request alive forever. Here a timer shuts the request's socket down when
its total time is up: the blocked read then fails at once, and the failure is an ordinary
(retryable) connection error. The socket is found through connection classes that note it on
this thread just before they wait for the answer.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Optional

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_in_flight = threading.local()


class Guard:
    """The socket of the request in flight on one thread, and whether its time is up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._timers: list[threading.Timer] = []
        self._done = False
        self.fired = False

    def attach(self, sock: Optional[socket.socket]) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                _shut(sock)

    def detach(self) -> None:
        with self._lock:
            self._sock = None
            self._done = True
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            _shut(self._sock)

    def fire_at(self, deadline: float) -> None:
        """Fire by ``deadline`` (monotonic) at the latest, whatever the original time limit."""
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.fire)
        timer.daemon = True
        with self._lock:
            if self._done:
                return
            self._timers.append(timer)
        timer.start()


def _shut(sock: Optional[socket.socket]) -> None:
    if sock is not None:
        with suppress(OSError):  # already closed: nothing left to cut
            sock.shutdown(socket.SHUT_RDWR)


def _note_socket(conn: Any) -> None:
    guard: Optional[Guard] = getattr(_in_flight, "guard", None)
    if guard is not None:
        guard.attach(getattr(conn, "sock", None))


class _GuardedHTTPConnection(HTTPConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _note_socket(self)
        return super().getresponse(*args, **kwargs)


class _GuardedHTTPSConnection(HTTPSConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _note_socket(self)
        return super().getresponse(*args, **kwargs)


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections can be cut off by :func:`time_limit`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPPool,
            "https": _GuardedHTTPSPool,
        }


@contextmanager
def time_limit(seconds: float) -> Iterator[Guard]:
    """Cut off the request made on this thread inside the block after ``seconds`` in total."""
    guard = Guard()
    timer = threading.Timer(seconds, guard.fire)
    timer.daemon = True
    _in_flight.guard = guard
    timer.start()
    try:
        yield guard
    finally:
        guard.detach()  # first, so a late timer cannot touch a connection back in the pool
        timer.cancel()
        _in_flight.guard = None
