"""``humanloop-logging spool status`` and ``spool drain``, run as users run them: a real command in
a subprocess, against a spool a killed process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from humanloop_logging._spool import Spool, read_status
from humanloop_logging.testing import FakeHumanloop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

KEY = "hl-cli-spool-key"


def command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "humanloop_logging", "spool", *args],
        capture_output=True,
        text=True,
        timeout=45,
        env=env,
        check=False,
    )


def leave_in_spool(path: Path, count: int) -> None:
    """A process logs ``count`` records with the service down, says they are on disk, and is
    killed with SIGKILL: its rows are left to whoever comes next."""
    script = textwrap.dedent(
        f"""
        import logging, sys
        from humanloop_logging import FeedbackHandler
        handler = FeedbackHandler({KEY!r}, "http://127.0.0.1:9/v4", spool_path={str(path)!r},
                                  max_retry_time=0.2, flush_interval=60)
        log = logging.getLogger("app"); log.addHandler(handler); log.setLevel(logging.INFO)
        for n in range({count}):
            log.info("fb", extra={{"data_id": f"d-{{n}}", "type": "rating", "value": "good"}})
        while handler.stats().spooled < {count}:
            handler.flush(0.05)
        print("ON DISK", flush=True)
        sys.stdin.read()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ON DISK"
    finally:
        child.kill()
        child.wait(10)


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "feedback.db"


def test_status_shows_rows_bytes_age_and_owners(spool_path: Path) -> None:
    """status reads a spool without taking anything over: rows, bytes, oldest age, the owner. The
    rows of an owner that is gone wait for a process to take them over, and are counted so."""
    leave_in_spool(spool_path, 40)
    result = command("status", str(spool_path))
    assert result.returncode == 0, result.stderr
    assert f"spool:      {spool_path}" in result.stdout
    assert "rows:       40 (40 waiting for a process to take them)" in result.stdout
    assert "bytes:" in result.stdout
    assert "oldest:" in result.stdout
    assert ": gone, 40 row(s)" in result.stdout  # the killed process
    assert read_status(str(spool_path)).rows == 40  # nothing was taken


#: What ``spool status`` has no use for: an HTTP client or server, structlog, the stand-in, the demo.
NOT_FOR_STATUS = (
    "requests",
    "tenacity",
    "urllib3",
    "structlog",
    "http.server",
    "humanloop_logging.testing",
    "humanloop_logging.demo",
    "humanloop_logging.shipper",
)


def test_status_imports_neither_an_http_stack_nor_structlog(spool_path: Path) -> None:
    """status reads a SQLite file: the command loads no HTTP client or server, no structlog, no
    stand-in and no demo to do it, so it starts fast wherever the spool lives."""
    spool = Spool(str(spool_path), max_bytes=1 << 20)
    try:
        spool.append([("d-1", b'{"data_id": "d-1", "type": "rating", "value": 1}', time.time())])
    finally:
        spool.close()
    code = textwrap.dedent(
        """
        import json, sys
        from humanloop_logging.cli import main
        status = main(["spool", "status", sys.argv[1]])
        print(json.dumps({"status": status, "modules": sorted(sys.modules)}), file=sys.stderr)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(spool_path)],
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "rows:       1 " in result.stdout
    seen = json.loads(result.stderr.splitlines()[-1])
    assert seen["status"] == 0
    loaded = [
        name
        for name in seen["modules"]
        if any(name == heavy or name.startswith(heavy + ".") for heavy in NOT_FOR_STATUS)
    ]
    assert loaded == []


def test_status_of_no_spool_is_an_error(tmp_path: Path) -> None:
    """status on a path with no spool says so and exits 1."""
    result = command("status", str(tmp_path / "none.db"))
    assert result.returncode == 1
    assert "no spool here" in result.stderr


def test_drain_sends_everything_once_and_exits_0_on_an_empty_spool(spool_path: Path) -> None:
    """drain takes over a killed process's rows, sends each once, and exits 0 when empty."""
    leave_in_spool(spool_path, 250)
    with FakeHumanloop(api_key=KEY) as fake:
        result = command("drain", str(spool_path), "--base-url", fake.base_url, "--api-key", KEY)
        received = sorted(item["data_id"] for item in fake.received)
    assert result.returncode == 0, result.stdout + result.stderr
    assert received == sorted(f"d-{n}" for n in range(250))
    assert "250 sent, 0 rejected, 0 given up, 0 left" in result.stdout
    assert read_status(str(spool_path)).rows == 0
    assert KEY not in result.stdout + result.stderr


def _signal_until_it_reports(process: subprocess.Popen[str], signum: int, again: bool) -> str:
    """Send ``signum`` once, or (``again``) every 50 ms until the drain prints its summary, as a
    user who presses Ctrl-C over and over does: later signals land while it closes. Returns the
    standard output."""
    assert process.stdout is not None
    lines: list[str] = []
    reported = threading.Event()

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.append(line)
            if " left in " in line:
                reported.set()
        reported.set()  # ended without a summary: the assertions say so

    reader = threading.Thread(target=read, args=(process.stdout,), daemon=True)
    reader.start()
    process.send_signal(signum)
    deadline = time.monotonic() + 30
    while again and not reported.wait(0.05) and time.monotonic() < deadline:
        process.send_signal(signum)
    reader.join(30)
    return "".join(lines)


@pytest.mark.parametrize(
    ("signum", "again"),
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c", "ctrl-c-repeatedly", "sigterm"],
)
def test_drain_interrupted_leaves_the_rest_on_disk(
    spool_path: Path, signum: int, again: bool
) -> None:
    """Ctrl-C (once or over and over) or SIGTERM during a drain against a service that never
    answers: exit 130, nothing lost, the rows still on disk for the next process. A signal never
    raises inside the library's code: it only tells the drain's loop to stop."""
    leave_in_spool(spool_path, 30)
    with FakeHumanloop(api_key=KEY) as fake:
        fake.hang_next(100)
        env = {
            **os.environ,
            "HUMANLOOP_API_KEY": KEY,
            "HUMANLOOP_BASE_URL": fake.base_url,
            "PYTHONUNBUFFERED": "1",  # the summary line as soon as it is printed
        }
        drain = subprocess.Popen(
            [sys.executable, "-m", "humanloop_logging", "spool", "drain", str(spool_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert fake.wait_for_arrivals(1, timeout=20)  # a request is in flight
            out = _signal_until_it_reports(drain, signum, again)
            _, err = drain.communicate(timeout=30)
        finally:
            if drain.poll() is None:
                drain.kill()
        fake.clear()
    assert drain.returncode == 130, out + err
    assert "30 left in" in out, out
    status = read_status(str(spool_path))
    assert status.rows == 30
    assert "Traceback" not in err, err


def test_drain_timeout_stops_leaves_the_rest_on_disk_and_exits_124(spool_path: Path) -> None:
    """--timeout against a service that never answers: the drain stops on its own once the time
    has passed, says so, exits 124 (not 1, not 130), and every row is still on disk."""
    leave_in_spool(spool_path, 30)
    with FakeHumanloop(api_key=KEY) as fake:
        fake.hang_next(100)
        env = {**os.environ, "HUMANLOOP_API_KEY": KEY, "HUMANLOOP_BASE_URL": fake.base_url}
        result = command("drain", str(spool_path), "--timeout", "1", env=env)
        assert fake.received == []  # whatever it sent got no answer
        fake.clear()
    assert result.returncode == 124, result.stdout + result.stderr
    assert "30 left in" in result.stdout
    assert "stopped: --timeout 1 s passed; the rest stays on disk" in result.stdout
    assert read_status(str(spool_path)).rows == 30
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_drain_timeout_must_be_a_positive_number(value: str) -> None:
    """A --timeout that could never let the drain run is a usage error (exit 2)."""
    result = command("drain", "/nonexistent/spool.db", "--timeout", value)
    assert result.returncode == 2
    assert "--timeout" in result.stderr
