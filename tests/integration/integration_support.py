"""Running real servers and workers against the stand-in, and counting what arrived.

Each scenario starts a real process the way users do (the uvicorn and gunicorn CLIs, a Django
project, a Celery worker, a multiprocessing script), with ``FakeHumanloop`` in this process as its
backend. The process's output is read line by line, every wait has a deadline, and shutdown is
the real one (a signal, or the end of the script).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import support
from support import humanloop_env, sigint_as_a_terminal_gives_it

APPS = Path(__file__).resolve().parent / "apps"

#: The key every stand-in of this suite expects and every child process sends.
API_KEY = "hl-integration-key"

#: Settings that keep records queued until shutdown: a flush interval longer than any scenario
#: and a batch larger than any scenario's records, so only the shutdown path can send them.
QUEUED_UNTIL_SHUTDOWN: Mapping[str, object] = {"flush_interval": 30, "batch_size": 1000}

#: The drain budget given to every child; bounds below are generous multiples of it.
EXIT_TIMEOUT = 3.0

#: How long a shutdown may take before it counts as unbounded: the drain budget plus room for a
#: slow, shared machine (process start-up and tear-down of the server itself).
SHUTDOWN_BOUND = EXIT_TIMEOUT + 10.0


def child_env(
    base_url: str,
    settings: Mapping[str, object] = QUEUED_UNTIL_SHUTDOWN,
    extra: Optional[Mapping[str, str]] = None,
) -> dict[str, str]:
    """The environment of a child: this library's settings only, the apps importable."""
    env = support.child_env(
        APPS, **humanloop_env(API_KEY, base_url, **{"exit_timeout": EXIT_TIMEOUT, **settings})
    )
    env.update(extra or {})
    return env


class Running:
    """A child process whose merged stdout and stderr are read line by line in the background."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path = APPS) -> None:
        self.argv = list(argv)
        self.started = time.monotonic()
        with sigint_as_a_terminal_gives_it():  # so that a Ctrl-C test can stop it
            self.proc = subprocess.Popen(
                self.argv,
                env=dict(env),
                cwd=str(cwd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # a signal from a terminal never reaches it by accident
            )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, name="child-output", daemon=True)
        self._reader.start()
        self.signalled_at: Optional[float] = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_line(self, needle: str, timeout: float = 60.0, count: int = 1) -> list[str]:
        """The first ``count`` lines containing ``needle``, waiting up to ``timeout`` seconds."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [line for line in self.lines if needle in line]
                if len(found) >= count:
                    return found[:count]
                remaining = end - time.monotonic()
                if self._eof or remaining <= 0:
                    raise AssertionError(
                        f"{count} line(s) with {needle!r} never came from {self.argv}; "
                        f"exit status {self.proc.poll()}; output:\n" + "\n".join(self.lines[-200:])
                    )
                self._cond.wait(remaining)

    def wait_for_http(self, url: str, timeout: float = 60.0) -> None:
        """Poll ``url`` until it answers 200, the process dies, or ``timeout`` runs out."""

        def answers() -> bool:
            try:
                status, _ = http_get(url, timeout=2.0)
            except OSError:
                return False
            return status == 200

        self.poll(answers, timeout, lambda: f"{url} never answered 200", "before serving")

    def poll(
        self, ready: Callable[[], bool], timeout: float, never: Callable[[], str], before: str
    ) -> None:
        """Look at ``ready`` (a server's port, a file a worker writes: nothing this test can wait
        on) until it holds. Between looks the process has 0.1 s to exit, which fails at once
        (``before`` what it exited); ``never()`` says what was missing when ``timeout`` ran out."""
        end = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > end:
                raise AssertionError(f"{never()}:\n{self.output()}")
            try:  # the poll interval doubles as a check that the process is still alive
                self.proc.wait(0.1)
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(
                f"{self.argv} exited with {self.proc.returncode} {before}:\n{self.output()}"
            )

    def send_signal(self, signum: int = signal.SIGTERM, *, group: bool = False) -> None:
        """Send ``signum`` to the process, or with ``group`` to its whole process group, as a
        terminal's Ctrl-C reaches every process of the foreground job (a reloader and its server)."""
        self.signalled_at = time.monotonic()
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)

    def finish(self, timeout: float, since: Optional[float] = None) -> tuple[int, float]:
        """Exit status and seconds from ``since`` (default: the signal) to the exit.

        A process still running after ``timeout`` is killed (with its process group) and the
        test fails: an unbounded shutdown is a finding, not something to wait out.
        """
        start = since if since is not None else self.signalled_at
        assert start is not None, "finish() needs a start: send a signal or pass since="
        try:
            returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise AssertionError(
                f"{self.argv} still running {timeout} s after shutdown began:\n{self.output()}"
            ) from None
        elapsed = time.monotonic() - start
        self._reader.join(10.0)
        self.kill_group()  # leftovers of a server that orphaned its children
        return returncode, elapsed

    def kill_group(self) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(10.0)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 10.0, method: str = "GET") -> tuple[int, bytes]:
    """GET (or ``method``, with an empty body) ``url`` without any proxy; the status and the body
    (an error status too)."""
    data = None if method == "GET" else b""
    request = urllib.request.Request(url, data=data, method=method, headers={"Connection": "close"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def http_post(
    url: str, form: Optional[Mapping[str, str]] = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """POST ``form`` (URL-encoded; none: an empty body) to ``url`` without any proxy; the status
    and the body (an error status too)."""
    data = urllib.parse.urlencode(form or {}).encode()
    headers = {"Connection": "close", "Content-Type": "application/x-www-form-urlencoded"}
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def get_all(base: str, paths: Sequence[str]) -> list[bytes]:
    """GET every path in turn; each must answer 200 (the feedback was logged before the answer)."""
    bodies = []
    for path in paths:
        status, body = http_get(base + path)
        assert status == 200, f"GET {path}: {status} {body[:500]!r}"
        bodies.append(body)
    return bodies


@dataclass
class Run:
    """What one scenario did: the records it logged, and how its process ended."""

    expected: list[str]
    exit_code: int
    shutdown_seconds: float
    output: str
    #: Extra measurements a scenario reports (for example how long dictConfig() took).
    measured: dict[str, float] = field(default_factory=dict)


@dataclass
class Outcome:
    """A run and what the stand-in received from it."""

    scenario: str
    backend: str
    run: Run
    received: collections.Counter[str]

    @property
    def delivered(self) -> int:
        """Distinct expected records that arrived (each counted once, however often it came)."""
        return sum(1 for data_id in set(self.run.expected) if self.received[data_id])

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.received.values() if n > 1)

    @property
    def unexpected(self) -> int:
        expected = set(self.run.expected)
        return sum(n for data_id, n in self.received.items() if data_id not in expected)

    def row(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "backend": self.backend,
            "received": self.delivered if self.backend == "up" else sum(self.received.values()),
            "expected": len(self.run.expected),
            "duplicates": self.duplicates,
            "exit": self.run.exit_code,
            "shutdown_s": round(self.run.shutdown_seconds, 2),
            **{k: int(v) if v.is_integer() else round(v, 2) for k, v in self.run.measured.items()},
        }


#: Every outcome of this test session, for the summary table at the end.
OUTCOMES: list[Outcome] = []


def received_counts(items: Sequence[Mapping[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(str(item.get("data_id")) for item in items)


def assert_exactly_once(outcome: Outcome) -> None:
    """Every expected record arrived exactly once, and nothing else arrived."""
    __tracebackhide__ = True
    expected = collections.Counter(outcome.run.expected)
    if outcome.received != expected:
        missing = sorted(set(expected) - set(outcome.received))
        raise AssertionError(
            f"{outcome.scenario}: received {outcome.delivered}/{len(expected)} "
            f"({outcome.duplicates} duplicates, {outcome.unexpected} unexpected); "
            f"missing e.g. {missing[:5]}\nchild output (last lines):\n"
            + "\n".join(outcome.run.output.splitlines()[-60:])
        )


def assert_ended(
    outcome: Outcome, exit_codes: Sequence[int], bound: float = SHUTDOWN_BOUND
) -> None:
    """The process ended with one of ``exit_codes`` within ``bound`` seconds of its shutdown."""
    __tracebackhide__ = True
    tail = "\n".join(outcome.run.output.splitlines()[-60:])
    assert outcome.run.exit_code in exit_codes, (
        f"{outcome.scenario}: exit status {outcome.run.exit_code}, expected one of "
        f"{list(exit_codes)}:\n{tail}"
    )
    assert outcome.run.shutdown_seconds <= bound, (
        f"{outcome.scenario}: shutdown took {outcome.run.shutdown_seconds:.1f} s (> {bound} s):\n"
        f"{tail}"
    )


def python() -> str:
    return sys.executable


#: The columns every ``Outcome.row()`` has; anything else is a scenario's own measurement.
STANDARD = frozenset(
    {"scenario", "backend", "received", "expected", "duplicates", "exit", "shutdown_s"}
)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Rows of ``Outcome.row()`` as a markdown table, one line per scenario and backend."""
    lines = [
        "| scenario | backend | received/expected | duplicates | exit | shutdown s | notes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        notes = ", ".join(f"{k} {v}" for k, v in row.items() if k not in STANDARD)
        lines.append(
            f"| {row['scenario']} | {row['backend']} | {row['received']}/{row['expected']} "
            f"| {row['duplicates']} | {row['exit']} | {row['shutdown_s']} | {notes} |"
        )
    return lines
