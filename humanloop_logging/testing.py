"""Test helpers for users of humanloop-logging: a local stand-in for the Humanloop feedback API.

:class:`FakeHumanloop` is a real HTTP/1.1 server on 127.0.0.1 that answers ``POST /v4/feedback``
as the service does (same validation, same 200/401/422 bodies) and records what it was sent, so
tests exercise the real transport, retries and threads instead of mocks. Faults can be injected to
test how a client copes with outages, resets, slow answers, a rate limit and rejected datapoints::

    from humanloop_logging.testing import FakeHumanloop

    with FakeHumanloop() as fake:
        configure_my_app(base_url=fake.base_url, api_key=fake.api_key)
        fake.fail_next(2, 503, retry_after=0.1)
        do_something_that_logs_feedback()
        assert fake.wait_for_items(1)
        assert fake.received[0]["type"] == "rating"

Under pytest the ``fake_humanloop`` fixture (see :mod:`humanloop_logging.pytest_plugin`) gives a
started instance. This module uses the standard library only and never imports pytest.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import math
import selectors
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType, TracebackType
from typing import Any, Callable, Optional, TypeVar, Union

from ._fake_validate import FEEDBACK_PATH, FLAVOURS, answer_request, body_validator
from ._version import __version__
from .exceptions import HumanloopLoggingError

__all__ = [
    "FEEDBACK_PATH",
    "FLAVOURS",
    "RETRY_AFTER_FORMS",
    "ErrorLog",
    "FakeHumanloop",
    "RecordedRequest",
]

#: Longest a stop() waits for one connection thread after its socket was shut down.
_JOIN_TIMEOUT = 5.0

#: How set_rate_limit() may write ``Retry-After``: whole seconds rounded up (what services send),
#: the exact wait rounded up to the millisecond, or no header at all.
RETRY_AFTER_FORMS = ("integer", "fractional", None)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in saw it, kept so tests can assert on what a client really sent."""

    method: str
    path: str
    #: The status answered; 0 when the connection was dropped instead (reset, hang, stop).
    status: int
    #: Feedback items in the body: 1 for an object, the length of an array, 0 if not parseable.
    item_count: int
    #: Read-only request headers with lower-cased names (repeated headers joined by ", ").
    headers: Mapping[str, str]
    body: bytes
    #: ``time.time()`` when the request had been read.
    time: float
    #: True if the body was a JSON array (the batched form of the API).
    batch: bool
    #: Which TCP connection carried it (counts from 1 per stand-in), to check keep-alive reuse.
    connection: int
    #: The body of the answer sent (empty when the connection was dropped instead).
    response: bytes = b""

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError if it is not)."""
        return json.loads(self.body)


@dataclass(frozen=True)
class _Failure:
    """One queued injected error answer."""

    status: int
    body: bytes
    retry_after: Optional[str]


class _TokenBucket:
    """The rate limit's state: ``burst`` tokens at most, refilled at ``rate`` per second.

    Not locked itself: FakeHumanloop calls it with its own lock held.
    """

    def __init__(self, rate: float, burst: int, retry_after: Optional[str], now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.retry_after = retry_after
        self._tokens = float(burst)
        self._updated = now

    def take(self, now: float) -> Optional[float]:
        """Take a token: None if there was one, else the seconds until one will be there."""
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._updated = max(self._updated, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self.rate

    def header(self, wait: float) -> tuple[tuple[str, str], ...]:
        """The ``Retry-After`` header for a refusal ``wait`` seconds before the next token."""
        if self.retry_after is None:
            return ()
        if self.retry_after == "integer":
            return (("Retry-After", str(max(1, math.ceil(wait)))),)
        seconds, milliseconds = divmod(max(1, math.ceil(round(wait * 1000, 6))), 1000)
        text = f"{seconds}.{milliseconds:03d}".rstrip("0") if milliseconds else str(seconds)
        return (("Retry-After", text),)


@dataclass(frozen=True)
class _Answer:
    """What to send back; None instead of an answer means drop the connection."""

    status: int
    payload: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: Optional[str] = "application/json"


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=False).encode("utf-8")


#: The body of a 429 from set_rate_limit(), as a FastAPI service raising HTTPException(429) sends.
_RATE_LIMITED = _json_bytes({"detail": "Rate limit exceeded"})


def _format_retry_after(value: Union[str, float, None]) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(
            f"retry_after must be a finite number of seconds or a string, not {value!r}"
        )
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its open connections, so stop() can cut them."""

    daemon_threads = True
    # restart() rebinds the same port at once; on Windows SO_REUSEADDR would let two servers share it.
    allow_reuse_address = sys.platform != "win32"

    def __init__(
        self, address: tuple[str, int], fake: FakeHumanloop, stop_event: threading.Event
    ) -> None:
        self.fake = fake
        self.stop_event = stop_event
        self._connections_lock = threading.Lock()
        self._connections: dict[socket.socket, int] = {}
        self._connection_threads: set[threading.Thread] = set()
        self._aborted: set[socket.socket] = set()
        self._closing = False
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        # Before binding: a failed bind calls server_close(), which closes these too.
        self._wake_reader, self._wake_writer = socket.socketpair()
        super().__init__(address, _Handler)

    def serve_until_stopped(self) -> None:
        """Accept connections until stop_event is set and wake() is called.

        Unlike serve_forever() this does not poll: an idle stand-in sleeps in select(), and stop()
        returns at once instead of after a poll interval.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self.stop_event.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self.socket and not self.stop_event.is_set():
                        self._accept_one()

    def _accept_one(self) -> None:
        try:
            request, client_address = self.get_request()
        except OSError:
            return
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def wake(self) -> None:
        """Interrupt serve_until_stopped()'s select() (after stop_event was set)."""
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on DNS; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve each connection on its own daemon thread, remembered so stop() can cut it."""
        conn: socket.socket = request
        connection_id = self.fake._next_connection_id()
        thread = threading.Thread(
            target=self._serve_connection,
            args=(conn, client_address),
            name=f"humanloop-stand-in-connection-{connection_id}",
            daemon=True,
        )
        with self._connections_lock:
            if self._closing:
                self.shutdown_request(conn)
                return
            self._connections[conn] = connection_id
            self._connection_threads.add(thread)
        thread.start()

    def _serve_connection(self, conn: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(conn, client_address)
        except Exception:
            self.handle_error(conn, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(conn, None)
                self._connection_threads.discard(threading.current_thread())
            self.shutdown_request(conn)

    def connection_id(self, conn: socket.socket) -> int:
        with self._connections_lock:
            return self._connections.get(conn, 0)

    def abort(self, conn: socket.socket) -> None:
        """Make the coming close of ``conn`` a reset (RST) rather than an orderly FIN."""
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:  # pragma: no cover - platforms without SO_LINGER in this layout
            return
        with self._connections_lock:
            self._aborted.add(conn)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            aborted = request in self._aborted
            self._aborted.discard(request)
        if aborted:
            self.close_request(request)  # no shutdown(SHUT_WR): closing with linger 0 sends RST
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away, or stop() cutting a connection, is routine here.
        if isinstance(sys.exc_info()[1], (OSError, ValueError)):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shut down every open connection (clients see EOF/reset) and join their threads."""
        with self._connections_lock:
            self._closing = True
            connections = list(self._connections)
            threads = list(self._connection_threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                thread.join(_JOIN_TIMEOUT)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time off a keep-alive connection and lets FakeHumanloop answer it."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes; don't stall the second
    #: Idle keep-alive connections are closed after this long, so a long-running `serve` does not
    #: collect threads for clients that vanished; long enough never to race a test's client.
    timeout = 120.0
    server_version = f"humanloop-logging-stand-in/{__version__}"
    server: _Server

    def version_string(self) -> str:
        """The Server header: which stand-in answered, without the Python version."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr lines: tests print nothing they did not ask for."""

    def send_error(
        self, code: int, message: Optional[str] = None, explain: Optional[str] = None
    ) -> None:
        """Malformed HTTP gets the same JSON shape as everything else, then the connection closes."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        payload = _json_bytes({"detail": message or phrase})
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(payload)

    def do_POST(self) -> None:
        self._handle()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_POST

    def _read_body(self) -> Optional[bytes]:
        """The request body, or None if its framing is broken (the connection must then close)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            return None
        if size < 0:
            return None
        body = self.rfile.read(size)
        return body if len(body) == size else None

    def _read_chunked(self) -> Optional[bytes]:
        chunks: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                return None
            chunks.append(chunk)
            self.rfile.readline(65537)

    def _handle(self) -> None:
        body = self._read_body()
        if body is None:
            self.send_error(HTTPStatus.BAD_REQUEST, "Malformed request body framing")
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        answer = self.server.fake._answer(
            method=self.command,
            path=self.path,
            headers=MappingProxyType(headers),
            body=body,
            connection=self.server.connection_id(self.connection),
            stop_event=self.server.stop_event,
        )
        if answer is None:
            self.close_connection = True
            self.server.abort(self.connection)
            return
        self.send_response(answer.status)
        if answer.content_type is not None:
            self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.payload)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.payload)


class FakeHumanloop:
    """A local, in-process stand-in for ``https://api.humanloop.com/v4`` ``POST /feedback``.

    Thread-safe: tests may inject faults and read what was received while clients are posting.
    Faults apply in this order: reset, hang, latency, rate limit, fail, then the service's own
    checks (route, API key, body validation, unknown datapoints). The rate limit stands where a
    gateway's would: a request it refuses never reaches the outage of fail_next() nor the service,
    and a request it lets through has used its token whatever the service then answers.

    ``clock`` is the monotonic clock the rate limit's bucket refills on; a test can pass one that
    it advances itself, to see a token come back without waiting for it.
    """

    def __init__(
        self,
        *,
        api_key: str = "hl-test-key",
        host: str = "127.0.0.1",
        port: int = 0,
        flavour: str = "v1",
        validator: str = "auto",
        on_request: Optional[Callable[[RecordedRequest], None]] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {port!r}")
        self._validator_name, self._validate = body_validator(flavour, validator)
        self._flavour = flavour
        self._on_request = on_request
        self._clock = clock
        self.api_key = api_key
        self.host = host
        self._port = port
        self._lifecycle = threading.Lock()
        self._server: Optional[_Server] = None
        self._serve_thread: Optional[threading.Thread] = None
        self._stop_event: Optional[threading.Event] = None
        self._changed = threading.Condition(threading.Lock())
        self._sequence = itertools.count()
        self._connection_ids = itertools.count(1)
        self._requests: list[tuple[int, RecordedRequest]] = []
        self._received: list[tuple[int, int, dict[str, Any]]] = []
        self._arrivals = 0
        self._resets = 0
        self._hangs = 0
        self._failures: deque[_Failure] = deque()
        self._latency = 0.0
        self._rejected_data_ids: frozenset[str] = frozenset()
        self._bucket: Optional[_TokenBucket] = None
        self._rate_limited = 0
        self._clear_generation = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeHumanloop:
        """Listen and serve on a daemon thread; returns self so ``fake = FakeHumanloop().start()``."""
        with self._lifecycle:
            if self._server is not None:
                return self
            stop_event = threading.Event()
            server = _Server((self.host, self._port), self, stop_event)
            self._port = int(server.server_address[1])
            thread = threading.Thread(
                target=server.serve_until_stopped,
                name=f"humanloop-stand-in-{self._port}",
                daemon=True,
            )
            thread.start()
            self._server, self._serve_thread, self._stop_event = server, thread, stop_event
        return self

    def stop(self) -> None:
        """Stop listening, cut every open connection and join all threads; safe to call twice."""
        with self._lifecycle:
            server, thread, stop_event = self._server, self._serve_thread, self._stop_event
            if server is None or thread is None or stop_event is None:
                return
            self._server = self._serve_thread = self._stop_event = None
            stop_event.set()
            with self._changed:
                self._changed.notify_all()  # wake answers held by hang_next
            server.wake()
            thread.join()
            server.server_close()
            server.close_connections()

    def restart(self) -> None:
        """Simulate a service restart: clients lose their connections, the port stays the same."""
        self.stop()
        self.start()

    def __enter__(self) -> FakeHumanloop:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<FakeHumanloop {self.host}:{self._port} {state}>"

    @property
    def flavour(self) -> str:
        """Which service this stand-in answers like: ``"v1"`` (FastAPI 0.99 on pydantic 1.10, the
        v4 era) or ``"v2"`` (current FastAPI on pydantic 2)."""
        return self._flavour

    @property
    def validator(self) -> str:
        """What validates bodies: ``"pydantic"`` (exact) or ``"stdlib"`` (the built-in emulation)."""
        return self._validator_name

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (the requested one before the first start); kept across restart()."""
        return self._port

    @property
    def base_url(self) -> str:
        """What a client takes as its Humanloop base URL, e.g. ``http://127.0.0.1:54321/v4``."""
        if self._port == 0:
            raise RuntimeError("FakeHumanloop has no port until start() is called")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}/v4"

    @property
    def url(self) -> str:
        """The feedback endpoint itself."""
        return self.base_url + "/feedback"

    # -- what was received ---------------------------------------------------------------------

    @property
    def received(self) -> list[dict[str, Any]]:
        """A copy of every accepted feedback item, as sent, in the order the requests arrived."""
        with self._changed:
            return [copy.deepcopy(item) for _, _, item in self._received]

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request seen, whatever its answer, in the order they arrived."""
        with self._changed:
            return [recorded for _, recorded in self._requests]

    def wait_for_items(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` items were accepted; False if ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._received) >= count, timeout)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` requests were recorded, up to ``timeout``.

        A request is recorded once answered or dropped; one held by hang_next() as it is held.
        """
        with self._changed:
            return self._changed.wait_for(lambda: len(self._requests) >= count, timeout)

    def wait_for_arrivals(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` requests were read, answered or not.

        Lets a test act while an answer is still held back by set_latency() or hang_next().
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._arrivals >= count, timeout)

    @property
    def arrivals(self) -> int:
        """How many requests were read so far, answered or not (what wait_for_arrivals() counts).

        Read it right after set_latency() or hang_next() to wait for requests that the fault
        holds: ``requests`` does not yet list the ones still in flight.
        """
        with self._changed:
            return self._arrivals

    @property
    def rate_limit(self) -> Optional[tuple[float, int]]:
        """``(requests per second, burst)`` of the rate limit in force; None when there is none."""
        with self._changed:
            bucket = self._bucket
        return None if bucket is None else (bucket.rate, bucket.burst)

    @property
    def rate_limited(self) -> int:
        """How many POSTs the rate limit answered 429 (they are in ``requests``, not ``received``)."""
        with self._changed:
            return self._rate_limited

    def clear(self) -> None:
        """Forget everything received and every fault, latency, rate limit and rejected id; release
        hangs."""
        with self._changed:
            self._requests.clear()
            self._received.clear()
            self._arrivals = 0
            self._resets = self._hangs = 0
            self._failures.clear()
            self._latency = 0.0
            self._bucket = None
            self._rate_limited = 0
            self._rejected_data_ids = frozenset()
            self._clear_generation += 1
            self._changed.notify_all()

    # -- fault injection -----------------------------------------------------------------------

    def fail_next(
        self,
        n: int,
        status: int = 503,
        *,
        retry_after: Union[str, float, None] = None,
        body: Any = None,
    ) -> None:
        """Answer the next ``n`` POST requests with ``status`` instead of handling them.

        The body is ``{"detail": <reason phrase>}`` unless ``body`` is given (bytes are sent as they
        are, anything else as JSON); ``retry_after`` becomes a ``Retry-After`` header.
        """
        _check_count(n)
        if not 200 <= status <= 599:
            raise ValueError(f"status must be between 200 and 599, not {status!r}")
        if body is None:
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = "Injected failure"
            payload = _json_bytes({"detail": phrase})
        elif isinstance(body, bytes):
            payload = body
        else:
            payload = _json_bytes(body)
        failure = _Failure(status, payload, _format_retry_after(retry_after))
        with self._changed:
            self._failures.extend([failure] * n)

    def reset_next(self, n: int) -> None:
        """Read the next ``n`` requests, then reset their connections without answering."""
        _check_count(n)
        with self._changed:
            self._resets += n

    def hang_next(self, n: int) -> None:
        """Read the next ``n`` requests and hold them unanswered until stop() or clear()."""
        _check_count(n)
        with self._changed:
            self._hangs += n

    def set_latency(self, seconds: float) -> None:
        """Delay every answer by ``seconds`` (0 turns it off); stop() cuts a delay short."""
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"latency must be a finite number of seconds >= 0, not {seconds!r}")
        with self._changed:
            self._latency = float(seconds)

    def set_rate_limit(
        self,
        requests_per_second: Optional[float],
        *,
        burst: Optional[int] = None,
        retry_after: Optional[str] = "integer",
    ) -> None:
        """Answer POSTs beyond ``requests_per_second`` with 429, as a token bucket; None or 0 turns
        it off.

        The bucket holds ``burst`` tokens (default: one second's worth, at least 1), starts full,
        and refills continuously; each POST that reaches the limit takes one. A POST that finds no
        token is answered ``429 {"detail": "Rate limit exceeded"}`` with a ``Retry-After`` saying
        when the next token will be there: ``retry_after="integer"`` (the default) rounds that up
        to whole seconds, at least 1, as services send it (delta-seconds are an integer in
        RFC 9110); ``"fractional"`` gives the exact wait rounded up to the millisecond (``0.05``);
        None sends no header. A refused request is recorded in ``requests`` with its 429, counted
        in ``rate_limited``, and accepts nothing. Calling this again starts a new, full bucket.
        """
        if requests_per_second is not None and (
            isinstance(requests_per_second, bool)
            or not isinstance(requests_per_second, (int, float))
            or not math.isfinite(requests_per_second)
            or requests_per_second < 0
        ):
            raise ValueError(
                "requests_per_second must be a finite number >= 0 (0 or None: no limit), "
                f"not {requests_per_second!r}"
            )
        if not requests_per_second:
            if burst is not None:
                raise ValueError("burst needs a rate limit (requests_per_second > 0)")
            with self._changed:
                self._bucket = None
            return
        if burst is None:
            burst = max(1, math.ceil(requests_per_second))
        elif isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an integer >= 1, not {burst!r}")
        if retry_after not in RETRY_AFTER_FORMS:
            raise ValueError(
                f"retry_after must be one of {RETRY_AFTER_FORMS!r}, not {retry_after!r}"
            )
        bucket = _TokenBucket(float(requests_per_second), burst, retry_after, self._clock())
        with self._changed:
            self._bucket = bucket

    def reject_data_ids(self, *data_ids: str) -> None:
        """Answer 422 "Datapoint ... not found" to any request with feedback for these data ids."""
        with self._changed:
            self._rejected_data_ids = self._rejected_data_ids.union(data_ids)

    # -- answering (called on connection threads) ----------------------------------------------

    def _next_connection_id(self) -> int:
        with self._changed:
            return next(self._connection_ids)

    def _record(
        self, sequence: int, request: RecordedRequest, items: Optional[list[dict[str, Any]]] = None
    ) -> None:
        with self._changed:
            _insort_by_sequence(self._requests, sequence, [(sequence, request)])
            if items:
                block = [(sequence, index, item) for index, item in enumerate(items)]
                _insort_by_sequence(self._received, sequence, block)
            self._changed.notify_all()

    def _answer(
        self,
        *,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        connection: int,
        stop_event: threading.Event,
    ) -> Optional[_Answer]:
        """Decide the answer to one request (None: drop the connection) and record it."""
        arrived = time.time()
        parsed = _lenient_json(body)
        batch = isinstance(parsed, list)
        item_count = len(parsed) if batch else 1 if isinstance(parsed, dict) else 0

        def record(status: int, items: Optional[list[Any]] = None, response: bytes = b"") -> None:
            recorded = RecordedRequest(
                method=method,
                path=path,
                status=status,
                item_count=item_count,
                headers=headers,
                body=body,
                time=arrived,
                batch=batch,
                connection=connection,
                response=response,
            )
            self._record(sequence, recorded, items)
            if self._on_request is not None:
                self._on_request(recorded)

        with self._changed:
            sequence = next(self._sequence)
            self._arrivals += 1
            generation = self._clear_generation
            reset = self._resets > 0
            hang = not reset and self._hangs > 0
            if reset:
                self._resets -= 1
            elif hang:
                self._hangs -= 1
            latency = self._latency
            self._changed.notify_all()

        if reset:
            record(0)
            return None
        if hang:
            record(0)
            with self._changed:
                self._changed.wait_for(
                    lambda: stop_event.is_set() or self._clear_generation != generation
                )
            return None
        if latency > 0 and stop_event.wait(latency):
            record(0)
            return None

        with self._changed:
            refusal = self._rate_limit_locked() if method == "POST" else None
            failure = None
            if refusal is None and method == "POST" and self._failures:
                failure = self._failures.popleft()
            rejected_ids = self._rejected_data_ids
        if refusal is not None:
            record(refusal.status, None, refusal.payload)
            return refusal
        answer, accepted = self._service_answer(
            method=method,
            path=path,
            headers=headers,
            body=body,
            failure=failure,
            rejected_ids=rejected_ids,
        )
        record(answer.status, accepted, answer.payload)
        return answer

    def _rate_limit_locked(self) -> Optional[_Answer]:
        """Take a token for a POST: None if it may go on, else its 429 (counted). Lock held."""
        bucket = self._bucket
        if bucket is None:
            return None
        wait = bucket.take(self._clock())
        if wait is None:
            return None
        self._rate_limited += 1
        return _Answer(429, _RATE_LIMITED, bucket.header(wait))

    def _service_answer(
        self,
        *,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        failure: Optional[_Failure],
        rejected_ids: frozenset[str],
    ) -> tuple[_Answer, Optional[list[Any]]]:
        if failure is not None:
            extra = (
                (("Retry-After", failure.retry_after),) if failure.retry_after is not None else ()
            )
            return _Answer(failure.status, failure.body, extra), None
        answer = answer_request(
            flavour=self._flavour,
            validator=self._validate,
            method=method,
            target=path,
            headers=headers,
            body=body,
            api_key=self.api_key,
            unknown_data_ids=rejected_ids,
        )
        return (
            _Answer(answer.status, answer.payload, answer.headers, answer.content_type),
            answer.accepted,
        )


def _lenient_json(body: bytes) -> Any:
    """The body as JSON if it is JSON at all (to count its items), else None."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _insort_by_sequence(entries: list[Any], sequence: int, block: list[tuple[Any, ...]]) -> None:
    """Insert one request's entries (each starting with its arrival ``sequence``) in arrival
    order, all at once: with several requests answered out of order, inserting item by item
    would cost each item a walk past every item answered after it."""
    low, high = 0, len(entries)
    if high and entries[-1][0] < sequence:  # the common case: answered in arrival order
        entries.extend(block)
        return
    while low < high:
        middle = (low + high) // 2
        if entries[middle][0] < sequence:
            low = middle + 1
        else:
            high = middle
    entries[low:low] = block


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, not {n!r}")


_E = TypeVar("_E", bound=HumanloopLoggingError)


class ErrorLog:
    """An ``on_error`` callback for tests: keeps every error and lets a test wait for them.

    ``FeedbackHandler(..., on_error=errors)``, then ``errors.wait_for(UnprocessableEntityError)``
    and ``errors.of(FeedbackValidationError)``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.errors: list[HumanloopLoggingError] = []

    def __call__(self, error: HumanloopLoggingError) -> None:
        with self._cond:
            self.errors.append(error)
            self._cond.notify_all()

    def of(self, kind: type[_E]) -> list[_E]:
        """The errors of one kind, in the order they were reported."""
        with self._cond:
            return [error for error in self.errors if isinstance(error, kind)]

    def wait_for(
        self,
        kind: type[HumanloopLoggingError] = HumanloopLoggingError,
        count: int = 1,
        timeout: float = 5.0,
    ) -> bool:
        """Block until ``count`` errors of ``kind`` were reported; False if ``timeout`` ran out."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.of(kind)) >= count, timeout)
