"""The stand-in's HTTP/1.1 server: connections, request framing, and writing the answer out.

Each connection is served on its own daemon thread, one keep-alive request at a time; what to
answer is :class:`FakeHumanloop`'s decision (``_answer``), made on that thread. The server knows
its open connections so that ``stop()`` can cut them, and can end one with a reset instead of an
orderly close, for the faults that drop a connection.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Optional

from humanloop_logging._version import __version__

if TYPE_CHECKING:
    from ._fake import FakeHumanloop

#: Longest a stop() waits for one connection thread after its socket was shut down.
_JOIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class _Answer:
    """What to send back; None instead of an answer means drop the connection."""

    status: int
    payload: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: Optional[str] = "application/json"
    #: A body written piece by piece as it comes (server-sent events) instead of ``payload``;
    #: the connection closes when it ends.
    stream: Optional[Iterable[bytes]] = None


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=False).encode("utf-8")


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
        fake = self.server.fake
        inspector = fake._inspector
        if inspector is not None and inspector.owns(self.path):
            answer: Optional[_Answer] = inspector.answer(
                method=self.command,
                path=self.path,
                headers=headers,
                body=body,
                stop_event=self.server.stop_event,
            )
        else:
            answer = fake._answer(
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
        if answer.stream is not None:
            self._write_stream(answer, answer.stream)
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

    def _write_stream(self, answer: _Answer, stream: Iterable[bytes]) -> None:
        """Send the headers, then each piece as it comes, until the stream or the client ends."""
        self.close_connection = True
        self.send_response(answer.status)
        if answer.content_type is not None:
            self.send_header("Content-Type", answer.content_type)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        with contextlib.suppress(OSError):
            for piece in stream:
                self.wfile.write(piece)
