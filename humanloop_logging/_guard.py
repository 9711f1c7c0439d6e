"""A hard limit on the whole of one request, which ``requests``' timeouts are not.

``requests`` applies its timeout to each socket operation, so a server (or a proxy) that trickles
its answer a byte at a time keeps a request alive forever. Here the request's socket is shut down
when its total time is up: the blocked read then fails at once, and the failure is an ordinary
(retryable) connection error. The socket is found through connection classes that note it on this
thread as soon as it exists (before a proxy tunnel or the TLS handshake), before the request is
written and before the answer is awaited.

One watchdog, not a timer per request and not socket deadlines. A ``threading.Timer`` per request
starts a thread per request, and on Python 3.12.0 to 3.12.2 no thread may be started while the
interpreter shuts down, which is exactly when the exit hook sends what is left. Socket-level
deadlines (shrinking ``settimeout`` before every operation) would need hooks inside http.client,
urllib3 and ssl for every read and write, the proxy tunnel and the handshake included, and would
still not let ``close()`` cut a request short from another thread. So one long-lived daemon thread,
``humanloop-feedback-watchdog``, keeps a heap of (deadline, guard) entries on a condition and shuts
a guard's socket down when its deadline passes. It is started when a transport is built, never at
exit; a forked child starts its own (the parent's thread does not exist there), from the transport's
fork hook or at the first request. If no thread can be started at all, requests still go out,
bounded by ``requests``' per-operation timeout alone, and nothing is raised.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Optional

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .signals import start_without_signals

WATCHDOG_THREAD = "humanloop-feedback-watchdog"

_in_flight = threading.local()


class Guard:
    """The socket of the request in flight on one thread, and whether its time is up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._done = False
        self.fired = False
        #: Fired by a deadline brought forward (close, exit) rather than the time limit.
        self.cut_short = False

    def attach(self, sock: Optional[socket.socket]) -> None:
        if sock is None:
            return
        with self._lock:
            if self._done:
                return
            self._sock = sock
            if self.fired:
                _shut(sock)

    def detach(self) -> None:
        """The request is over: from now on nothing may touch its connection (back in the pool)."""
        with self._lock:
            self._sock = None
            self._done = True

    def release(self, sock: Optional[socket.socket]) -> None:
        """``sock``'s connection goes back to the pool: it is no longer this request's to cut."""
        with self._lock:
            if self._sock is sock:
                self._sock = None

    @property
    def done(self) -> bool:
        return self._done

    def fire(self, cut_short: bool = False) -> None:
        with self._lock:
            if self._done or self.fired:
                return
            self.fired = True
            self.cut_short = cut_short
            _shut(self._sock)

    def fire_at(self, deadline: float) -> None:
        """Fire by ``deadline`` (monotonic) at the latest, whatever the original time limit."""
        if self._done:
            return
        if deadline <= time.monotonic():
            self.fire(cut_short=True)
        else:  # without a watchdog, the request's own per-operation timeout still bounds it
            _watchdog.schedule(deadline, self, cut_short=True)


def _shut(sock: Optional[socket.socket]) -> None:
    if sock is not None:
        with suppress(OSError):  # already closed: nothing left to cut
            sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that fires guards whose deadline has passed."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Guard, bool]] = []
        self._order = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()

    def after_fork_in_child(self) -> None:
        """The parent's thread and lock do not exist here (the lock may even be held): start over."""
        self._reset()

    def start(self) -> bool:
        """Make sure the thread runs in this process; False if no thread can be started now."""
        if self._pid != os.getpid():  # forked without the fork hook (os.fork in a C extension)
            self._reset()
        with self._cond:
            thread = self._thread
            if thread is not None and thread.is_alive():
                return True
            thread = threading.Thread(target=self._run, name=WATCHDOG_THREAD, daemon=True)
            try:
                start_without_signals(thread)
            except RuntimeError:  # "can't create new thread at interpreter shutdown"
                return False
            self._thread = thread
            return True

    def schedule(self, deadline: float, guard: Guard, *, cut_short: bool = False) -> bool:
        """Fire ``guard`` at ``deadline``; False (and nothing scheduled) without a watchdog."""
        if not self.start():
            return False
        with self._cond:
            heap = self._heap
            if len(heap) > 64 and sum(entry[2].done for entry in heap) * 2 > len(heap):
                # Requests that ended leave their entries behind: drop them now and then.
                heap[:] = [entry for entry in heap if not entry[2].done]
                heapq.heapify(heap)
            heapq.heappush(heap, (deadline, next(self._order), guard, cut_short))
            if heap[0][2] is guard:
                self._cond.notify()
        return True

    def _run(self) -> None:
        cond = self._cond
        heap = self._heap
        while True:
            with cond:
                if cond is not self._cond:  # replaced after fork: this is a stale copy
                    return
                now = time.monotonic()
                due: list[tuple[Guard, bool]] = []
                while heap and heap[0][0] <= now:
                    _, _, guard, cut_short = heapq.heappop(heap)
                    due.append((guard, cut_short))
                if not due:
                    cond.wait(heap[0][0] - now if heap else None)
                    continue
            for guard, cut_short in due:
                guard.fire(cut_short)


_watchdog = _Watchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watchdog.after_fork_in_child)


def start_watchdog() -> bool:
    """Start the watchdog now, while threads can still be started; False if it cannot run."""
    return _watchdog.start()


def _note_socket(conn: Any) -> None:
    guard: Optional[Guard] = getattr(_in_flight, "guard", None)
    if guard is not None:
        guard.attach(getattr(conn, "sock", None))


class _Noting:
    """Notes the connection's socket for the request's guard whenever it may block on it."""

    sock: Optional[socket.socket]

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        guard: Optional[Guard] = getattr(_in_flight, "guard", None)
        if guard is not None:  # before the proxy tunnel and the TLS handshake
            guard.attach(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        _note_socket(self)  # a kept-alive connection: the body is written on the old socket
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _note_socket(self)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _GuardedHTTPConnection(_Noting, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_Noting, HTTPSConnection):
    pass


class _Releasing:
    """Lets go of a connection's socket, for the request's guard, as it goes back to the pool:
    that happens when the answer has been read, while the request's time limit still runs, and a
    cut-off then would shut a socket that the next request may already be using."""

    def _put_conn(self, conn: Any) -> None:
        guard: Optional[Guard] = getattr(_in_flight, "guard", None)
        if guard is not None and conn is not None:
            guard.release(getattr(conn, "sock", None))
        super()._put_conn(conn)  # type: ignore[misc]


class _GuardedHTTPPool(_Releasing, HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(_Releasing, HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_GUARDED_POOLS = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


class GuardedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections can be cut off by :func:`time_limit`.

    Direct connections and those through an HTTP(S) proxy (``HTTP_PROXY``, ``HTTPS_PROXY``) are
    guarded; a SOCKS proxy's connections are urllib3's own classes and are not.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_GUARDED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_GUARDED_POOLS)
        return manager


@contextmanager
def time_limit(seconds: float) -> Iterator[Guard]:
    """Cut off the request made on this thread inside the block after ``seconds`` in total."""
    guard = Guard()
    _in_flight.guard = guard
    _watchdog.schedule(time.monotonic() + seconds, guard)
    try:
        yield guard
    finally:
        guard.detach()  # so a late watchdog cannot touch a connection back in the pool
        _in_flight.guard = None
