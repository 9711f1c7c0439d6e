"""Shared pieces of the reliability suite: error capture, workloads, accounting, raw servers.

Kept out of ``conftest.py`` so test modules can import it by name; the fixtures and the session
report hooks that use it live in ``conftest.py``.
"""

from __future__ import annotations

import collections
import json
import logging
import selectors
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Optional

from support import child_env, humanloop_env, own_logger

from humanloop_logging import (
    DeliveryError,
    FeedbackHandler,
    FeedbackProcessor,
    FeedbackShipper,
    FeedbackValidationError,
    HumanloopLoggingError,
    UnprocessableEntityError,
    testing,
)
from humanloop_logging.testing import FakeHumanloop

#: The one API key every server and client of this suite uses: unusual enough that finding it in
#: any captured text can only mean it leaked.
SECRET_KEY = "hlsk-Reliab1lity-7c41e9-DO-NOT-LEAK-b00f"


# -- errors reported through on_error --------------------------------------------------------------


class ErrorLog(testing.ErrorLog):
    """The library's test ``on_error`` callback, registered so teardown can scan it for the key."""

    #: Every ErrorLog made during the current test.
    live: list[ErrorLog] = []  # noqa: RUF012 - deliberately shared

    def __init__(self) -> None:
        super().__init__()
        ErrorLog.live.append(self)

    def delivery_failures(self) -> list[DeliveryError]:
        """Records given up on: DeliveryErrors other than a 422's rejections."""
        return [e for e in self.of(DeliveryError) if not isinstance(e, UnprocessableEntityError)]

    def failed_ids(self) -> list[str]:
        """data_id of every record reported as given up on, once per report."""
        ids: list[str] = []
        for error in self.delivery_failures():
            ids.extend(str(record.get("data_id")) for record in error.records)
        return ids

    def rejected(self) -> list[tuple[str, str]]:
        """(data_id, reasons) of every record the service rejected with a 422."""
        pairs: list[tuple[str, str]] = []
        for error in self.of(UnprocessableEntityError):
            for record, reasons in error.rejected:
                pairs.append((str(record.get("data_id")), "; ".join(reasons)))
        return pairs

    def refused(self) -> list[FeedbackValidationError]:
        return self.of(FeedbackValidationError)


def exception_renderings(error: BaseException) -> list[str]:
    """Every text a reporter of ``error`` might produce: str, repr, args and formatted traceback
    of the error and of everything in its cause and context chain (suppressed or not)."""
    texts: list[str] = []
    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        texts.append(
            "".join(traceback.format_exception(type(current), current, current.__traceback__))
        )
        if isinstance(current, HumanloopLoggingError):
            texts.append(repr(vars(current)))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
    return texts


def assert_no_secret(texts: Iterable[str], where: str) -> None:
    """Fail if the key is in any of ``texts``; the failure shows where, with the key masked."""
    __tracebackhide__ = True  # the texts themselves are not shown in the report
    for text in texts:
        at = text.find(SECRET_KEY)
        if at >= 0:
            excerpt = text[max(0, at - 200) : at + len(SECRET_KEY) + 100]
            masked = excerpt.replace(SECRET_KEY, "<THE API KEY>")
            raise AssertionError(f"the API key leaked into {where}: ...{masked!r}...")


# -- what the stand-in received --------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """One request the stand-in accepted (answered 200), as arrival time and data ids."""

    time: float
    data_ids: tuple[str, ...]


def accepted_requests(fake: FakeHumanloop) -> list[Accepted]:
    """Every accepted request in arrival order (parsed from the recorded bodies: fast)."""
    accepted: list[Accepted] = []
    for request in fake.requests:
        if request.status == 200:
            items = request.json()
            assert isinstance(items, list), request.body[:200]
            accepted.append(Accepted(request.time, tuple(str(i["data_id"]) for i in items)))
    return accepted


def received_counts(fake: FakeHumanloop) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for request in accepted_requests(fake):
        counts.update(request.data_ids)
    return counts


@dataclass
class LossWindows:
    """Spans of wall-clock time in which the stand-in may accept a request whose answer is lost."""

    spans: list[tuple[float, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def around(self, slack: float, after: float = 0.0) -> Iterator[None]:
        """Mark the block as lossy, ``slack`` seconds before it included (requests in flight),
        and ``after`` seconds past its end (what the fault left behind)."""
        start = time.time() - slack
        try:
            yield
        finally:
            with self._lock:
                self.spans.append((start, time.time() + after))

    def contains(self, moment: float) -> bool:
        with self._lock:
            return any(start <= moment <= end for start, end in self.spans)


@dataclass(frozen=True)
class Duplicates:
    """Copies of records the stand-in accepted more than once, and the requests that explain them."""

    extra_copies: int
    #: Accepted requests with at least one record accepted again later: their answers were lost.
    lost: list[Accepted]
    #: Records accepted in a lost request but never again (given up on after the loss).
    only_in_lost: set[str]


def find_duplicates(accepted: Sequence[Accepted]) -> Duplicates:
    last_seen: dict[str, int] = {}
    for index, request in enumerate(accepted):
        for data_id in request.data_ids:
            last_seen[data_id] = index
    counts = collections.Counter(i for r in accepted for i in r.data_ids)
    lost = [
        request
        for index, request in enumerate(accepted)
        if any(last_seen[i] > index for i in request.data_ids)
    ]
    return Duplicates(
        extra_copies=sum(counts.values()) - len(counts),
        lost=lost,
        only_in_lost={i for r in lost for i in r.data_ids if counts[i] == 1},
    )


# -- the session report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultRow:
    case: str
    sent: int
    delivered: int
    duplicated: int
    rejected: int
    dropped: int
    failed: int
    retried: int
    requests: int
    wall: float


FAULT_ROWS: dict[str, FaultRow] = {}
HYPOTHESIS_EXAMPLES: dict[str, int] = {}
MEASUREMENTS: dict[str, str] = {}


def report_lines() -> list[str]:
    lines: list[str] = []
    if FAULT_ROWS:
        lines += [
            "| fault | sent | delivered | duplicated | rejected | dropped | failed | retried "
            "| requests | wall s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in FAULT_ROWS.values():
            lines.append(
                f"| {row.case} | {row.sent} | {row.delivered} | {row.duplicated} | {row.rejected}"
                f" | {row.dropped} | {row.failed} | {row.retried} | {row.requests}"
                f" | {row.wall:.1f} |"
            )
    if HYPOTHESIS_EXAMPLES:
        lines.append("")
        for name, count in HYPOTHESIS_EXAMPLES.items():
            lines.append(f"hypothesis examples run, {name}: {count}")
    if MEASUREMENTS:
        lines.append("")
        for name, text in MEASUREMENTS.items():
            lines.append(f"{name}: {text}")
    return lines


# -- teardown -------------------------------------------------------------------------------------


class Cleanup:
    """Closes handlers, processors and shippers, and detaches handlers from loggers, at teardown."""

    def __init__(self) -> None:
        self._steps: list[Callable[[], object]] = []

    def later(self, step: Callable[[], object]) -> None:
        self._steps.append(step)

    def close(self, thing: FeedbackHandler | FeedbackProcessor | FeedbackShipper) -> None:
        self._steps.append(thing.close)

    def attach(self, logger_name: str, handler: FeedbackHandler) -> logging.Logger:
        """``handler`` on a logger of its own that does not propagate, at DEBUG."""
        logger = own_logger(logger_name)
        logger.addHandler(handler)
        self._steps.append(lambda: logger.removeHandler(handler))
        self.close(handler)
        return logger

    def run(self) -> None:
        """Every step, even after one fails; then the first failure."""
        first: Optional[BaseException] = None
        for step in reversed(self._steps):
            try:
                step()
            except BaseException as exc:
                first = first or exc
        self._steps.clear()
        if first is not None:
            raise first


# -- workloads -------------------------------------------------------------------------------------


class Background:
    """A thread whose exception is re-raised by ``join`` in the test's thread."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self.error: Optional[BaseException] = None
        self._target = target
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as exc:
            self.error = exc

    def start(self) -> Background:
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.thread.name} still running after {timeout}s"
        if self.error is not None:
            raise self.error


def run_producers(
    log_one: Callable[[int, int], None],
    threads: int,
    per_thread: int,
    *,
    pause_at: Optional[int] = None,
    resume: Optional[threading.Event] = None,
    timeout: float = 120.0,
) -> None:
    """Call ``log_one(thread, index)`` for every index from ``threads`` threads started together.

    With ``pause_at``, every thread waits for ``resume`` before logging that index.
    """
    barrier = threading.Barrier(threads)

    def produce(thread: int) -> None:
        barrier.wait(timeout)
        for index in range(per_thread):
            if index == pause_at and resume is not None:
                assert resume.wait(timeout), "the fault injector never resumed the producers"
            log_one(thread, index)

    workers = [Background(partial(produce, t), f"producer-{t}").start() for t in range(threads)]
    for worker in workers:
        worker.join(timeout)


# -- subprocesses ----------------------------------------------------------------------------------


def settings_env(base_url: str, **settings: object) -> dict[str, str]:
    """A child's environment: this suite's key, ``base_url`` and ``settings`` for its handlers."""
    return child_env(**humanloop_env(SECRET_KEY, base_url, **settings))


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def lines(self, tag: str) -> list[str]:
        return [
            line[len(tag) + 1 :] for line in self.stdout.splitlines() if line.startswith(tag + " ")
        ]

    def line(self, tag: str) -> str:
        found = self.lines(tag)
        assert len(found) == 1, f"expected one {tag} line:\n{self.stdout}\n{self.stderr}"
        return found[0]

    def json(self, tag: str) -> Any:
        return json.loads(self.line(tag))


def run_python(script: str, env: Mapping[str, str], timeout: float) -> Finished:
    """Run ``script`` in a fresh interpreter; its output is checked for the key."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert_no_secret([result.stdout, result.stderr], "a child process's output")
    return Finished(result.returncode, result.stdout, result.stderr)


class Child:
    """A running script we talk to line by line; every read has a deadline."""

    def __init__(self, script: str, env: Mapping[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script],
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: collections.deque[str] = collections.deque()
        self._cond = threading.Condition()
        self._eof = False
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.stdout.append(line)
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def expect(self, tag: str, timeout: float = 20.0) -> str:
        """The rest of the next line starting with ``tag`` (other lines are skipped)."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                while self._lines:
                    line = self._lines.popleft()
                    if line == tag or line.startswith(tag + " "):
                        return line[len(tag) + 1 :]
                remaining = end - time.monotonic()
                if self._eof or remaining <= 0:
                    raise AssertionError(f"no {tag!r} line; output so far: {''.join(self.stdout)}")
                self._cond.wait(remaining)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 30.0) -> Finished:
        """Wait for the process (killing it if it overruns ``timeout``) and collect its output."""
        assert self.proc.stdin is not None
        with suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for reader in self._readers:
            reader.join(10.0)
        out, err = "".join(self.stdout), "".join(self.stderr)
        assert_no_secret([out, err], "a child process's output")
        return Finished(self.proc.returncode, out, err)


# -- a raw-socket server for hostile and broken answers --------------------------------------------


@dataclass(frozen=True)
class RawRequest:
    head: bytes
    headers: dict[str, str]
    body: bytes


Behaviour = Callable[["RawServer", socket.socket, RawRequest], bool]
"""Answers one request on ``conn``; returns True to keep the connection for the next request."""


def _response(status: int, body: bytes, content_type: str, length: Optional[int] = None) -> bytes:
    head = (
        f"HTTP/1.1 {status} Whatever\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


def good_answer(server: RawServer, conn: socket.socket, request: RawRequest) -> bool:
    """What the service does: accept the items and echo them back as JSON."""
    items = json.loads(request.body)
    server.accept(request)
    conn.sendall(_response(200, json.dumps(items).encode(), "application/json"))
    return True


@dataclass
class Fixed:
    """A fixed answer; ``accepts`` says whether the server counts the items as taken."""

    status: int
    body: bytes
    content_type: str = "application/json"

    def __call__(self, server: RawServer, conn: socket.socket, request: RawRequest) -> bool:
        if 200 <= self.status < 300:
            server.accept(request)
        conn.sendall(_response(self.status, self.body, self.content_type))
        return True


@dataclass
class HugeBody:
    """Announces and streams a body of ``size`` bytes until the client stops reading."""

    status: int
    size: int
    sent: int = 0
    completed: bool = False

    def __call__(self, server: RawServer, conn: socket.socket, request: RawRequest) -> bool:
        if 200 <= self.status < 300:
            server.accept(request)
        chunk = b"x" * 65536
        try:
            conn.sendall(_response(self.status, b"", "application/json", length=self.size))
            while self.sent < self.size and not server.stop_event.is_set():
                piece = chunk[: self.size - self.sent]
                conn.sendall(piece)
                self.sent += len(piece)
            self.completed = self.sent == self.size
        except OSError:
            pass
        return False


@dataclass
class NeverAnswer:
    """Reads the request and holds the connection open without a word until the server stops."""

    held: int = 0

    def __call__(self, server: RawServer, conn: socket.socket, request: RawRequest) -> bool:
        self.held += 1
        server.stop_event.wait()
        return False


@dataclass
class Trickle:
    """Sends a whole answer one byte every ``interval`` seconds (headers first, or after them)."""

    status: int
    interval: float = 0.2
    body: bytes = b"[]"
    headers_at_once: bool = False
    bytes_sent: int = 0
    cut_off: bool = False
    total: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def __call__(self, server: RawServer, conn: socket.socket, request: RawRequest) -> bool:
        if 200 <= self.status < 300:
            server.accept(request)
        answer = _response(self.status, self.body * 200, "application/json")
        split = answer.index(b"\r\n\r\n") + 4 if self.headers_at_once else 0
        self.total = len(answer) - split
        try:
            if split:
                conn.sendall(answer[:split])
            for index in range(split, len(answer)):
                if server.stop_event.wait(self.interval):
                    return False
                conn.sendall(answer[index : index + 1])
                self.bytes_sent += 1
        except OSError:
            self.cut_off = True
            return False
        finally:
            self.done.set()
        return True


@dataclass
class Echo:
    """A broken proxy's error page: the request head, headers and all, echoed in the body."""

    status: int

    def __call__(self, server: RawServer, conn: socket.socket, request: RawRequest) -> bool:
        body = b"Bad request, you sent:\n" + request.head
        conn.sendall(_response(self.status, body, "text/plain"))
        return True


class RawServer:
    """A bare HTTP/1.1 server on 127.0.0.1 that answers request n with ``behaviours[n]``.

    Once the list is used up it answers with ``then`` (by default, like the service). Items of
    requests answered 2xx are counted in ``accepted``, whatever the client made of the answer.
    """

    def __init__(self, behaviours: Sequence[Behaviour], then: Behaviour = good_answer) -> None:
        self._behaviours = collections.deque(behaviours)
        self._then = then
        self.stop_event = threading.Event()
        self._lock = threading.Condition()
        self.requests: list[RawRequest] = []
        self.accepted: collections.Counter[str] = collections.Counter()
        self.accepted_batches = 0
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._wake_r, self._wake_w = socket.socketpair()
        self.port = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="raw-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v4"

    def __enter__(self) -> RawServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def accept(self, request: RawRequest) -> None:
        items = json.loads(request.body)
        with self._lock:
            self.accepted.update(str(item["data_id"]) for item in items)
            self.accepted_batches += 1

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: len(self.requests) >= count, timeout)

    def stop(self) -> None:
        self.stop_event.set()
        with suppress(OSError):
            self._wake_w.send(b"\0")
        self._acceptor.join(5.0)
        with self._lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for conn in connections:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5.0)
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self.stop_event.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._listener and not self.stop_event.is_set():
                        conn, _ = self._listener.accept()
                        thread = threading.Thread(
                            target=self._serve, args=(conn,), name="raw-conn", daemon=True
                        )
                        with self._lock:
                            self._connections.add(conn)
                            self._threads.append(thread)
                        thread.start()

    def _next(self) -> Behaviour:
        with self._lock:
            return self._behaviours.popleft() if self._behaviours else self._then

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while not self.stop_event.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                    self._lock.notify_all()
                if not self._next()(self, conn, request):
                    return
        except OSError:
            return
        finally:
            reader.close()
            with suppress(OSError):
                conn.close()
            with self._lock:
                self._connections.discard(conn)


def _read_request(reader: Any) -> Optional[RawRequest]:
    head = b""
    while True:
        line = reader.readline(65537)
        if not line:
            return None
        head += line
        if line in (b"\r\n", b"\n"):
            break
    headers: dict[str, str] = {}
    for raw in head.split(b"\r\n")[1:]:
        name, sep, value = raw.decode("latin-1").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0")))
    return RawRequest(head, headers, body)
