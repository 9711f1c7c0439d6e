"""A lean stand-in for ``POST /feedback``, for throughput benchmarks: it answers, counts, and does
nothing else.

    python -m benchmarks.sink --port 0 --delay 0.05     # prints "sink listening on http://..."

Every ``POST`` is read whole and answered ``200`` with a two-byte JSON list (``[]``), after
``--delay`` seconds (a simulated round trip to the service, slept on the connection's own thread,
so concurrent requests overlap as they would against a real service). Items are counted by
counting ``"data_id"`` in the body, which is cheap and exact for the benchmarks' bodies. Unlike
``humanloop-logging serve`` it validates nothing and records nothing, so its process costs a small
fraction of what any client it serves costs, and it is never the bottleneck.

Control, over HTTP on the same port: ``GET /stats`` answers ``{"items", "requests",
"in_flight_max", "statuses"}``; ``POST /reset`` sets them to zero; ``POST /config`` with
``{"delay": s, "status": n}`` changes the answer (a ``status`` other than 200 answers every feedback
request with it, with ``Retry-After: 1`` for 429 and 503, and counts nothing as received).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["SinkServer", "main"]

_OK_BODY = b"[]"


class SinkServer(ThreadingHTTPServer):
    """One thread per connection (keep-alive, so per client connection, not per request)."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], delay: float, status: int) -> None:
        super().__init__(address, _SinkHandler)
        self.delay = delay
        self.status = status
        self.lock = threading.Lock()
        self.items = 0
        self.requests = 0
        self.in_flight = 0
        self.in_flight_max = 0
        self.statuses: dict[str, int] = {}

    def reset(self) -> None:
        with self.lock:
            self.items = self.requests = self.in_flight_max = 0
            self.statuses = {}

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "items": self.items,
                "requests": self.requests,
                "in_flight_max": self.in_flight_max,
                "statuses": dict(self.statuses),
            }


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests and urllib3 expect
    server: SinkServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a line per request would cost more than answering it."""

    def setup(self) -> None:
        super().setup()
        # Answers go out in one write, and without Nagle: a status line and a body in two
        # segments would wait for the client's delayed ACK, 40 ms per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        lines = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/stats"):
            self._answer(200, json.dumps(self.server.snapshot()).encode())
        else:
            self._answer(404, b'{"detail":"Not Found"}')

    def do_POST(self) -> None:
        server = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.rstrip("/")
        if path.endswith("/reset"):
            server.reset()
            self._answer(200, b"{}")
            return
        if path.endswith("/config"):
            config = json.loads(body or b"{}")
            server.delay = float(config.get("delay", server.delay))
            server.status = int(config.get("status", server.status))
            self._answer(200, b"{}")
            return
        with server.lock:
            server.in_flight += 1
            server.in_flight_max = max(server.in_flight_max, server.in_flight)
        try:
            if server.delay > 0:
                time.sleep(server.delay)
            status = server.status
            with server.lock:
                server.requests += 1
                server.statuses[str(status)] = server.statuses.get(str(status), 0) + 1
                if status == 200:
                    server.items += body.count(b'"data_id"')
        finally:
            with server.lock:
                server.in_flight -= 1
        if status == 200:
            self._answer(200, _OK_BODY)
        else:
            retry = {"Retry-After": "1"} if status in (429, 503) else {}
            self._answer(status, b'{"detail":"unavailable"}', retry)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--status", type=int, default=200, help="answer feedback with this")
    args = parser.parse_args(argv)
    server = SinkServer((args.host, args.port), args.delay, args.status)
    host, port = server.server_address[:2]
    print(f"sink listening on http://{host!s}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
