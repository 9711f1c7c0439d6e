"""The total time limit on a request: one watchdog thread, at exit, after fork, behind a proxy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any, Optional

import pytest
from support import Control, child_env, free_port

from humanloop_logging import DeliveryError, TransportError, _guard
from humanloop_logging._guard import WATCHDOG_THREAD
from humanloop_logging.testing import FakeHumanloop
from humanloop_logging.transport import HTTPTransport

pytestmark = pytest.mark.timeout(60)

ITEM = {"data_id": "dp-1", "type": "rating", "value": "good"}
BODY = json.dumps([ITEM]).encode()


# -- tiny servers on 127.0.0.1 -------------------------------------------------------------------


class _Server:
    """Accepts on 127.0.0.1, reads one request per connection, lets ``answer`` deal with it."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.stop_event = threading.Event()
        #: The first line of every request read, e.g. ``POST http://host/v4/feedback HTTP/1.1``.
        self.request_lines: list[str] = []
        #: Set when a client closed a connection this server was still answering.
        self.cut_off = threading.Event()
        self.got_request = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="test-server", daemon=True)

    def __enter__(self) -> _Server:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_event.set()
        with suppress(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
        self._thread.join(5.0)
        for conn in list(self._conns):
            with suppress(OSError):
                conn.close()
        self._listener.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v4/feedback"

    def _accept(self) -> None:
        while not self.stop_event.is_set():
            conn, _ = self._listener.accept()
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    head += chunk
                top, _, body = head.partition(b"\r\n\r\n")
                length = 0
                for line in top.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    body += chunk
                self.request_lines.append(top.split(b"\r\n", 1)[0].decode("latin-1"))
                self.got_request.set()
                self.answer(conn, top, body)
            except OSError:
                return

    def answer(self, conn: socket.socket, head: bytes, body: bytes) -> None:
        raise NotImplementedError

    def trickle(self, conn: socket.socket, interval: float = 0.05) -> None:
        """A whole answer one byte at a time (100 s of it), until the client closes."""
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b" " * 2000
        for index in range(len(answer)):
            if self.stop_event.wait(interval):
                return
            try:
                conn.sendall(answer[index : index + 1])
                closed = conn.recv(1, socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                closed = False
            except OSError:
                closed = True
            if closed:
                self.cut_off.set()
                return


class Trickler(_Server):
    """A server that answers a byte every 0.05 s: no single read ever times out."""

    def answer(self, conn: socket.socket, head: bytes, body: bytes) -> None:
        self.trickle(conn)


class Proxy(_Server):
    """A plain HTTP proxy: forwards an absolute-URI request upstream, or (``trickle``) answers it
    itself a byte at a time, like a proxy whose upstream hangs."""

    def __init__(self, *, trickle: bool) -> None:
        super().__init__()
        self._trickle = trickle

    def answer(self, conn: socket.socket, head: bytes, body: bytes) -> None:
        if self._trickle:
            self.trickle(conn)
            return
        request_line, _, headers = head.partition(b"\r\n")
        method, target, version = request_line.split(b" ")
        assert target.startswith(b"http://"), target
        authority, _, path = target[len(b"http://") :].partition(b"/")
        host, _, port = authority.partition(b":")
        kept = [
            line
            for line in headers.split(b"\r\n")
            if not line.lower().startswith((b"connection:", b"proxy-connection:"))
        ]
        upstream_head = b"\r\n".join(
            [b" ".join([method, b"/" + path, version]), *kept, b"Connection: close"]
        )
        with socket.create_connection((host.decode(), int(port or b"80")), timeout=10) as up:
            up.sendall(upstream_head + b"\r\n\r\n" + body)
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    break
                conn.sendall(chunk)


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    server = Trickler()
    with server:
        yield server


def transport(url: str, *, timeout: float, api_key: str = "hl-test-key") -> HTTPTransport:
    return HTTPTransport(api_key=api_key, url=url, timeout=timeout, max_retry_time=0.0)


def send(target: HTTPTransport, control: Optional[Control] = None) -> Optional[DeliveryError]:
    """Send one item; the DeliveryError raised, if any."""
    try:
        target.send(BODY, [ITEM], control or Control())
    except DeliveryError as error:
        return error
    finally:
        target.close()
    return None


def watchdogs() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WATCHDOG_THREAD and t.is_alive()]


# -- one watchdog --------------------------------------------------------------------------------


def test_one_watchdog_thread_serves_every_request(
    fake_humanloop: FakeHumanloop, trickler: Trickler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Transports share one daemon watchdog, and no request starts a thread of its own."""
    first = transport(fake_humanloop.url, timeout=5.0, api_key=fake_humanloop.api_key)
    [watchdog] = watchdogs()
    assert watchdog.daemon

    started: list[str] = []
    original = threading.Thread.start
    me = threading.current_thread()

    def start(thread: threading.Thread) -> None:
        if threading.current_thread() is me:
            started.append(thread.name)
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    second = transport(fake_humanloop.url, timeout=5.0, api_key=fake_humanloop.api_key)
    for _ in range(3):
        second.send(BODY, [ITEM], Control())
    assert send(first) is None
    error = send(transport(trickler.url, timeout=0.5))

    assert isinstance(error, TransportError)
    assert "timed out in total" in error.message
    assert started == []
    assert watchdogs() == [watchdog]
    assert len(fake_humanloop.received) == 4


def test_a_trickled_answer_is_cut_off_at_timeout(trickler: Trickler) -> None:
    """An answer that arrives a byte at a time is cut when timeout has passed in total."""
    error = send(transport(trickler.url, timeout=0.5))

    assert isinstance(error, TransportError)
    assert error.category == "timeout"
    assert "timed out in total" in error.message
    assert f"127.0.0.1:{trickler.port}" in error.message
    assert trickler.cut_off.wait(10.0)


def test_cut_off_at_brings_the_end_of_a_request_forward(trickler: Trickler) -> None:
    """close() cuts a request short, long before its own timeout would."""
    target = transport(trickler.url, timeout=600.0)
    outcome: list[Optional[DeliveryError]] = []
    sender = threading.Thread(target=lambda: outcome.append(send(target)), daemon=True)
    sender.start()
    assert trickler.got_request.wait(10.0)  # the request is in flight: the server has read it
    target.cut_off_at(time.monotonic() + 0.2)
    sender.join(30.0)

    [error] = outcome
    assert isinstance(error, TransportError)
    assert error.category == "closing"
    assert "close deadline" in error.message
    assert trickler.cut_off.wait(10.0)


def test_requests_still_go_out_when_no_thread_can_be_started(
    fake_humanloop: FakeHumanloop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a watchdog (no thread may start), a transport is built and sends, raising nothing."""
    monkeypatch.setattr(_guard, "_watchdog", _guard._Watchdog())
    me = threading.current_thread()
    original = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if threading.current_thread() is me:
            raise RuntimeError("can't create new thread at interpreter shutdown")
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    target = transport(fake_humanloop.url, timeout=5.0, api_key=fake_humanloop.api_key)

    assert send(target) is None
    assert fake_humanloop.received == [ITEM]
    assert not _guard.start_watchdog()


def _child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in child_env().items() if not k.startswith("HTTP")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


_CHILD_PRELUDE = """
    import json, sys, threading, time
    from humanloop_logging import DeliveryError
    from humanloop_logging._guard import WATCHDOG_THREAD
    from humanloop_logging.transport import HTTPTransport
    from support import Control

    def send(url, timeout):
        target = HTTPTransport(api_key="hl-test-key", url=url, timeout=timeout, max_retry_time=0)
        try:
            target.send(b'[{"data_id": "dp-1", "type": "rating", "value": "good"}]', [], Control())
        except DeliveryError as error:
            return error.message
        return "sent"
"""


def test_at_exit_requests_are_sent_and_cut_off_without_starting_a_thread(
    fake_humanloop: FakeHumanloop, trickler: Trickler
) -> None:
    """At exit, where Python 3.12.0-3.12.2 starts no thread, sends work and are still cut off."""
    script = (
        _CHILD_PRELUDE
        + """
    import atexit
    HTTPTransport(api_key="hl-test-key", url=sys.argv[1], timeout=1, max_retry_time=0)

    def at_exit():
        def refuse(thread):
            raise RuntimeError("can't create new thread at interpreter shutdown")
        threading.Thread.start = refuse
        print("GOOD", send(sys.argv[1], 5.0))
        print("TRICKLE", send(sys.argv[2], 0.5))

    atexit.register(at_exit)
    """
    )
    result = _child(script, fake_humanloop.url, trickler.url)

    assert result.returncode == 0, result.stderr
    assert "GOOD sent" in result.stdout, result.stdout + result.stderr
    assert "TRICKLE timed out in total" in result.stdout, result.stdout + result.stderr
    assert fake_humanloop.received == [ITEM]
    assert trickler.cut_off.wait(10.0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_has_its_own_watchdog(trickler: Trickler) -> None:
    """After fork the child's requests are still cut off: it runs a watchdog of its own."""
    script = (
        _CHILD_PRELUDE
        + """
    import os
    target = HTTPTransport(api_key="hl-test-key", url=sys.argv[1], timeout=0.5, max_retry_time=0)
    parent = [t.ident for t in threading.enumerate() if t.name == WATCHDOG_THREAD]
    pid = os.fork()
    if pid == 0:
        target.reset_after_fork()
        ours = [t.ident for t in threading.enumerate() if t.name == WATCHDOG_THREAD]
        print("CHILD", json.dumps([len(parent), len(ours)]), send(sys.argv[1], 0.5), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    """
    )
    result = _child(script, trickler.url)

    assert result.returncode == 0, result.stderr
    assert "CHILD [1, 1] timed out in total" in result.stdout, result.stdout + result.stderr
    assert trickler.cut_off.wait(10.0)


# -- behind a proxy ------------------------------------------------------------------------------


@pytest.fixture
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_a_trickling_proxy_is_cut_off_at_timeout(
    fake_humanloop: FakeHumanloop, no_proxy_settings: pytest.MonkeyPatch
) -> None:
    """Through HTTP_PROXY, a proxy that trickles its answer is cut off at timeout in total."""
    with Proxy(trickle=True) as proxy:
        no_proxy_settings.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        error = send(transport(fake_humanloop.url, timeout=0.5, api_key=fake_humanloop.api_key))

        assert proxy.request_lines == [f"POST {fake_humanloop.url} HTTP/1.1"]
        assert isinstance(error, TransportError)
        assert "timed out in total" in error.message
        assert proxy.cut_off.wait(10.0)
    assert fake_humanloop.requests == []


def test_a_request_through_a_proxy_is_delivered(
    fake_humanloop: FakeHumanloop, no_proxy_settings: pytest.MonkeyPatch
) -> None:
    """Through HTTP_PROXY, a working proxy delivers the batch to the service."""
    with Proxy(trickle=False) as proxy:
        no_proxy_settings.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        error = send(transport(fake_humanloop.url, timeout=5.0, api_key=fake_humanloop.api_key))

    assert error is None
    assert proxy.request_lines == [f"POST {fake_humanloop.url} HTTP/1.1"]
    assert fake_humanloop.received == [ITEM]


def test_the_guarded_pools_serve_http_proxies_but_not_socks() -> None:
    """An HTTP proxy's pools use the guarded connections; a SOCKS proxy's are left as they are."""
    adapter = _guard.GuardedAdapter()
    manager: Any = adapter.proxy_manager_for("http://127.0.0.1:3128")
    assert manager.pool_classes_by_scheme == _guard._GUARDED_POOLS
    pytest.importorskip("socks", reason="SOCKS proxies need PySocks")
    socks: Any = adapter.proxy_manager_for("socks5://127.0.0.1:1080")
    assert socks.pool_classes_by_scheme != _guard._GUARDED_POOLS


def test_an_unreachable_proxy_is_named(
    fake_humanloop: FakeHumanloop, no_proxy_settings: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY pointing at nothing: category proxy, naming the proxy and the setting."""
    port = free_port()
    no_proxy_settings.setenv("HTTP_PROXY", f"http://user:pw@127.0.0.1:{port}")
    error = send(transport(fake_humanloop.url, timeout=5.0, api_key=fake_humanloop.api_key))

    assert isinstance(error, TransportError)
    assert error.category == "proxy"
    assert error.message.startswith(
        f"cannot reach Humanloop through 127.0.0.1:{port} (connection refused) for POST "
        f"{fake_humanloop.url}: check HTTPS_PROXY / HTTP_PROXY (and NO_PROXY)"
    )
    assert "pw" not in error.message
    assert fake_humanloop.requests == []


def test_a_cut_off_after_the_connection_went_back_to_the_pool_leaves_it_alone(
    fake_humanloop: FakeHumanloop,
) -> None:
    """Reading an answer to its end returns the connection to the pool while the request's time
    limit still runs: a cut-off that fires then (a close, the watchdog) must not shut a socket
    that another request may already be using. The next request reuses that very connection."""
    import requests

    adapter = _guard.GuardedAdapter()
    headers = {"X-API-KEY": fake_humanloop.api_key, "Content-Type": "application/json"}

    def post(data_id: str) -> int:
        body = json.dumps([{"data_id": data_id, "type": "rating", "value": "good"}])
        request = requests.Request(
            "POST", f"{fake_humanloop.base_url}/feedback", headers=headers, data=body
        ).prepare()
        response = adapter.send(request, stream=True, timeout=5)
        try:
            response.content  # noqa: B018 (read to the end: the connection goes back to the pool)
            return response.status_code
        finally:
            response.close()

    try:
        with _guard.time_limit(10) as guard:
            assert post("first") == 200
            guard.fire(cut_short=True)  # lands after the answer was read, before the block ends
        assert post("second") == 200
    finally:
        adapter.close()
    connections = [request.connection for request in fake_humanloop.requests]
    assert len(connections) == 2
    assert connections[0] == connections[1], "the pooled connection was shut by the cut-off"
