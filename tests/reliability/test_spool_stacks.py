"""The durable spool end to end, in real processes: kill -9, outages, sharing, bursts, faults, fork.

Every logging process is a fresh interpreter (``run_python`` or ``Child``); the stand-in runs in
the test process, so its work never competes for the logging process's GIL. Counts are taken at
the stand-in, by data_id, and from each process's ``stats()``; every scenario also checks that the
spool file is private (0600, its directory 0700 when the library made it) and that the API key is
in none of its bytes.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import stat
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    MEASUREMENTS,
    SECRET_KEY,
    Child,
    Finished,
    accepted_requests,
    find_duplicates,
    received_counts,
    run_python,
    settings_env,
)
from support import closed_port_base_url, tmpfs

from humanloop_logging._spool import read_status
from humanloop_logging.testing import FakeHumanloop, RecordedRequest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PRELUDE = """
import atexit, json, os, sys, time

_end = []

def _last_words():  # registered first, so it runs after every other exit hook
    if _end:
        os.write(1, f"EXIT {json.dumps(time.monotonic() - _end[0])}\\n".encode())

atexit.register(_last_words)

def the_end():
    _end.append(time.monotonic())

import dataclasses, logging, threading
from humanloop_logging import FeedbackHandler
from humanloop_logging._spool import read_status
from support import wait_until  # for counters of stats(), which nothing else marks

logging.raiseExceptions = True  # a library error inside a logging call would print a traceback
errors = []
said = threading.Event()  # set by the first error reported

def on_error(error):
    errors.append(error)
    said.set()

def say(tag, value):  # one write, so that forked children's lines never interleave
    os.write(1, f"{tag} {json.dumps(value)}\\n".encode())

class _Say(logging.Handler):
    def emit(self, record):
        say("LIB", record.getMessage())

_library = logging.getLogger("humanloop_logging")
_library.addHandler(_Say())
_library.setLevel(logging.DEBUG)

handler = FeedbackHandler(on_error=on_error)
log = logging.getLogger("app")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(handler)

def feedback(data_id):
    log.info("fb", extra={"data_id": data_id, "type": "rating", "value": "good"})

def stats():
    return dataclasses.asdict(handler.stats())

def reported():
    return [[type(e).__name__, str(e), getattr(e, "moved_to", None)] for e in errors]
"""


def script(body: str) -> str:
    return PRELUDE + textwrap.dedent(body)


def spool_at(tmp_path: Path) -> Path:
    """A spool path whose directory the library creates."""
    return tmp_path / "spool-dir" / "feedback.db"


def assert_invariant(stats: dict[str, int]) -> None:
    """enqueued + replayed == every outcome + pending (filtered, withheld: 0 here), none negative."""
    assert all(value >= 0 for value in stats.values()), stats
    assert 0 <= stats["spooled"] <= stats["pending"], stats
    assert stats["enqueued"] + stats["replayed"] == (
        stats["sent"] + stats["rejected"] + stats["dropped"] + stats["failed"] + stats["pending"]
    ), stats


def assert_private_and_keyless(path: Path, *, made_dir: bool) -> None:
    """The spool and its -wal/-shm are 0600 (the directory 0700 if the library made it), and
    the API key is in none of their bytes."""
    assert path.exists(), path
    if made_dir:
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, oct(path.parent.stat().st_mode)
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if not part.exists():
            continue
        assert stat.S_IMODE(part.stat().st_mode) == 0o600, (part, oct(part.stat().st_mode))
        assert SECRET_KEY.encode() not in part.read_bytes(), f"the API key is in {part}"


def assert_clean_stderr(result: Finished) -> None:
    for marker in ("Traceback", "Exception ignored", "--- Logging error ---"):
        assert marker not in result.stderr, result.stderr


def assert_exactly_once(fake: FakeHumanloop, expected: set[str]) -> collections.Counter[str]:
    """Every expected data_id accepted exactly once, nothing else; the counts for the report."""
    counts = received_counts(fake)
    missing = expected - set(counts)
    extra = set(counts) - expected
    duplicates = find_duplicates(accepted_requests(fake))
    assert not missing, f"{len(missing)} never arrived, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} unexpected, e.g. {sorted(extra)[:5]}"
    assert duplicates.extra_copies == 0, (
        f"{duplicates.extra_copies} duplicate copies; accepted requests accepted again later "
        f"(lost answers): {[(r.time, r.data_ids[:3], len(r.data_ids)) for r in duplicates.lost]}"
    )
    return counts


def spooled_data_ids(path: Path) -> list[str]:
    """The data_ids on disk, in id order, read without taking part in the spool."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT data_id FROM records ORDER BY id")]
    finally:
        conn.close()


def wait_for_request_span(
    fake: FakeHumanloop, span: float, timeout: float
) -> list[RecordedRequest]:
    """Wait (on the stand-in's own arrivals) until its recorded requests span ``span`` seconds."""
    seen = 0
    while True:
        requests = fake.requests
        if len(requests) >= 2 and requests[-1].time - requests[0].time > span:
            return requests
        seen = len(requests)
        assert fake.wait_for_requests(seen + 1, timeout), (
            f"no request for {timeout}s; {seen} seen over "
            f"{requests[-1].time - requests[0].time if requests else 0:.2f}s"
        )


# -- 1. kill -9 with the service down, then a restart ----------------------------------------------

KILLED = """
N = int(os.environ["N"])
for n in range(N):
    feedback(f"k-{n}")
wait_until(lambda: handler.stats().spooled == N, 30)
say("SPOOLED", stats())
sys.stdin.readline()  # killed while waiting here
"""

RESUMED = """
say("FLUSHED", handler.flush(30))
say("STATS", stats())
say("ERRORS", reported())
"""


def test_kill_9_with_the_service_down_then_a_restart_sends_everything_once(
    tmp_path: Path,
) -> None:
    """kill -9 after N records reach disk (service down); a new process sends all N exactly once."""
    n = 2000
    path = spool_at(tmp_path)
    down = settings_env(closed_port_base_url(), spool_path=path, max_retry_time=1, exit_timeout=1)
    child = Child(script(KILLED), {**down, "N": str(n)})
    first = json.loads(child.expect("SPOOLED", timeout=40))
    on_disk = read_status(str(path))
    os.kill(child.proc.pid, signal.SIGKILL)
    killed = child.finish(timeout=10)
    assert killed.returncode == -signal.SIGKILL
    assert (first["spooled"], first["dropped"], first["failed"], first["sent"]) == (n, 0, 0, 0)
    assert_invariant(first)
    assert on_disk.rows == n
    assert_private_and_keyless(path, made_dir=True)

    with FakeHumanloop(api_key=SECRET_KEY) as fake:
        result = run_python(
            script(RESUMED), settings_env(fake.base_url, spool_path=path), timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert_clean_stderr(result)
        stats = result.json("STATS")
        assert result.json("FLUSHED") is True, result.stdout
        assert stats["replayed"] == n, stats
        assert (stats["enqueued"], stats["sent"], stats["failed"], stats["dropped"]) == (0, n, 0, 0)
        assert (stats["pending"], stats["spooled"]) == (0, 0)
        assert_invariant(stats)
        counts = assert_exactly_once(fake, {f"k-{i}" for i in range(n)})
        OBSERVED["kill -9"] = (
            f"first process: {first}; on disk at the kill {on_disk.rows}; second process: "
            f"{stats}; at the stand-in {sum(counts.values())} items, {len(counts)} distinct in "
            f"{len(accepted_requests(fake))} accepted requests"
        )
    assert read_status(str(path)).rows == 0
    assert_private_and_keyless(path, made_dir=True)


# -- 2. an outage of 3 x max_retry_time -----------------------------------------------------------

OUTAGE = """
N = int(os.environ["N"])
for n in range(N):
    feedback(f"o-{n}")
say("LOGGED", stats())
say("FLUSHED", handler.flush(60))
say("STATS", stats())
say("ERRORS", reported())
"""


def test_an_outage_of_three_retry_times_loses_nothing(tmp_path: Path) -> None:
    """503s for more than 3 x max_retry_time (by the stand-in's clock): nothing fails, all once."""
    n, max_retry_time = 500, 1.0
    path = spool_at(tmp_path)
    with FakeHumanloop(api_key=SECRET_KEY) as fake:
        fake.fail_next(1_000_000, 503)
        env = settings_env(fake.base_url, spool_path=path, max_retry_time=max_retry_time)
        child = Child(script(OUTAGE), {**env, "N": str(n)})
        child.expect("LOGGED", timeout=30)
        outage = wait_for_request_span(fake, 3 * max_retry_time, timeout=30)
        fake.clear()  # the service is back
        result = child.finish(timeout=60)
        assert result.returncode == 0, result.stderr
        assert_clean_stderr(result)
        stats = result.json("STATS")
        assert result.json("FLUSHED") is True, result.stdout
        assert all(r.status in (503, 0) for r in outage), [r.status for r in outage]
        assert (stats["sent"], stats["failed"], stats["dropped"], stats["pending"]) == (n, 0, 0, 0)
        assert stats["retried"] > 0, stats
        assert_invariant(stats)
        assert_exactly_once(fake, {f"o-{i}" for i in range(n)})
        OBSERVED["outage"] = (
            f"{len(outage)} requests answered 503 over {outage[-1].time - outage[0].time:.2f}s "
            f"(max_retry_time {max_retry_time:g}s); then {len(accepted_requests(fake))} accepted "
            f"requests, {sum(received_counts(fake).values())} items, {stats}"
        )
    assert_private_and_keyless(path, made_dir=True)


# -- 3. four processes sharing one spool through 503 bursts -----------------------------------------

SHARED = """
N = int(os.environ["N"])
PREFIX = os.environ["PREFIX"]
say("READY", os.getpid())
assert sys.stdin.readline().strip() == "go"
for n in range(N):
    feedback(f"{PREFIX}-{n}")
say("FLUSHED", handler.flush(60))
say("STATS", stats())
say("ERRORS", reported())
"""


class Bursts:
    """After every ``every`` accepted requests, the next ``burst`` requests are answered 503."""

    def __init__(self, every: int, burst: int) -> None:
        self.every, self.burst = every, burst
        self.fake: FakeHumanloop | None = None
        self.accepted = self.bursts = 0
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> None:
        with self._lock:
            if request.status != 200:
                return
            self.accepted += 1
            if self.accepted % self.every == 0 and self.fake is not None:
                self.bursts += 1
                self.fake.fail_next(self.burst, 503)


def test_four_processes_share_one_spool_through_503_bursts(tmp_path: Path) -> None:
    """Four processes on one spool, 503 bursts: each one's records all arrive, exactly once."""
    processes, n = 4, 1000
    path = spool_at(tmp_path)
    bursts = Bursts(every=5, burst=4)
    with FakeHumanloop(api_key=SECRET_KEY, on_request=bursts) as fake:
        bursts.fake = fake
        fake.fail_next(4, 503)  # the first burst right at the start
        env = settings_env(
            fake.base_url, spool_path=path, max_retry_time=10, flush_interval=0.2, batch_size=50
        )
        children = [
            Child(script(SHARED), {**env, "N": str(n), "PREFIX": f"p{i}"}) for i in range(processes)
        ]
        for child in children:
            child.expect("READY", timeout=30)
        for child in children:
            child.send("go")
        results = [child.finish(timeout=60) for child in children]
        per_process: list[dict[str, Any]] = []
        for result in results:
            assert result.returncode == 0, result.stderr
            assert_clean_stderr(result)
            assert result.json("FLUSHED") is True, result.stdout
            stats = result.json("STATS")
            assert_invariant(stats)
            assert (stats["failed"], stats["dropped"], stats["pending"]) == (0, 0, 0), stats
            per_process.append(stats)
        assert sum(s["enqueued"] for s in per_process) == processes * n
        assert sum(s["sent"] for s in per_process) == processes * n
        counts = assert_exactly_once(
            fake, {f"p{i}-{k}" for i in range(processes) for k in range(n)}
        )
        for i in range(processes):
            assert sum(1 for key in counts if key.startswith(f"p{i}-")) == n
        answered_503 = sum(1 for r in fake.requests if r.status == 503)
        assert bursts.bursts > 0
        assert answered_503 > 0
        OBSERVED["shared"] = (
            f"{processes} x {n} records; {answered_503} requests answered 503 in "
            f"{bursts.bursts + 1} bursts; {len(accepted_requests(fake))} accepted requests, "
            f"{sum(counts.values())} items, {len(counts)} distinct, 0 duplicates; per process "
            f"(sent, retried, replayed): {[(s['sent'], s['retried'], s['replayed']) for s in per_process]}"
        )
    assert read_status(str(path)).rows == 0
    assert_private_and_keyless(path, made_dir=True)


# -- 4. 50,000 records in tight runs against a 50 ms service ----------------------------------------

BURST = """
N, RUN = int(os.environ["N"]), int(os.environ["RUN"])

def in_memory():
    s = stats()
    return s["pending"] - s["spooled"]

started = time.monotonic()
most_on_disk = 0
for first in range(0, N, RUN):
    for n in range(first, first + RUN):
        feedback(f"b-{n}")
    # Each run fits the queue; the writer has it on disk before the next run starts.
    assert wait_until(lambda: in_memory() == 0, 60)
    most_on_disk = max(most_on_disk, stats()["spooled"])
logged = time.monotonic() - started
say("LOGGED", {"seconds": logged, "most_on_disk": most_on_disk, "stats": stats()})
say("FLUSHED", handler.flush(90))
say("STATS", stats())
say("ERRORS", reported())
"""


def test_a_burst_five_times_the_queue_goes_to_disk_and_drops_nothing(tmp_path: Path) -> None:
    """50,000 records, five times the default queue, in tight runs of 5,000, each on disk before
    the next, against 50 ms round trips: the spool holds what the service has not taken yet, none
    is dropped, and all arrive once. (A single tight loop of 50,000 can outrun the writer on two
    busy cores: see docs/spool.md.)"""
    n, run = 50_000, 5_000
    path = spool_at(tmp_path)
    with FakeHumanloop(api_key=SECRET_KEY) as fake:
        fake.set_latency(0.05)
        env = settings_env(fake.base_url, spool_path=path, batch_size=1000)
        result = run_python(script(BURST), {**env, "N": str(n), "RUN": str(run)}, timeout=110)
        assert result.returncode == 0, result.stderr
        assert_clean_stderr(result)
        logged = result.json("LOGGED")
        stats = result.json("STATS")
        OBSERVED["burst"] = (
            f"logged {n} in runs of {run} in {logged['seconds']:.2f}s; at most "
            f"{logged['most_on_disk']} on disk; dropped {stats['dropped']}; "
            f"{len(fake.requests)} requests; {stats}"
        )
        assert_invariant(stats)
        assert logged["stats"]["dropped"] == 0, logged
        assert result.json("FLUSHED") is True, result.stdout
        assert (stats["sent"], stats["dropped"], stats["failed"], stats["pending"]) == (n, 0, 0, 0)
        assert_exactly_once(fake, {f"b-{i}" for i in range(n)})
    assert_private_and_keyless(path, made_dir=True)


# -- 5. a corrupt file, a read-only directory, a full spool -----------------------------------------

DELIVER = """
N = int(os.environ["N"])
for n in range(N):
    feedback(f"d-{n}")
say("FLUSHED", handler.flush(30))
say("STATS", stats())
say("ERRORS", reported())
"""


def test_a_corrupt_spool_is_moved_aside_and_a_fresh_one_delivers(tmp_path: Path) -> None:
    """Garbage at spool_path: moved aside to <path>.corrupt-..., said once, everything delivered."""
    n = 300
    path = tmp_path / "feedback.db"
    garbage = b"this is not a database, " * 400
    path.write_bytes(garbage)
    with FakeHumanloop(api_key=SECRET_KEY) as fake:
        env = settings_env(fake.base_url, spool_path=path)
        result = run_python(script(DELIVER), {**env, "N": str(n)}, timeout=60)
        assert result.returncode == 0, result.stderr
        assert_clean_stderr(result)
        assert result.json("FLUSHED") is True, result.stdout
        stats = result.json("STATS")
        assert (stats["sent"], stats["failed"], stats["dropped"], stats["pending"]) == (n, 0, 0, 0)
        assert_invariant(stats)
        assert_exactly_once(fake, {f"d-{i}" for i in range(n)})
    reports = result.json("ERRORS")
    assert len(reports) == 1, reports
    kind, text, moved_to = reports[0]
    assert kind == "SpoolError", reports[0]
    assert str(path) in text, text
    assert "corrupt" in text, text
    assert moved_to is not None
    assert moved_to.startswith(f"{path}.corrupt-"), moved_to
    assert Path(moved_to).read_bytes() == garbage
    assert [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name] == [Path(moved_to).name]
    assert_private_and_keyless(path, made_dir=False)


def test_a_read_only_directory_falls_back_to_memory(tmp_path: Path) -> None:
    """A spool on a read-only mount: said once with the path, kept in memory, all delivered."""
    n = 300
    # A read-only mount, since root (who may mount) ignores file modes.
    ro = tmpfs(tmp_path / "ro", "size=1m", "ro")
    with ro as directory, FakeHumanloop(api_key=SECRET_KEY) as fake:
        path = directory / "sub" / "feedback.db"
        env = settings_env(fake.base_url, spool_path=path)
        result = run_python(script(DELIVER), {**env, "N": str(n)}, timeout=60)
        assert result.returncode == 0, result.stderr
        assert_clean_stderr(result)
        assert result.json("FLUSHED") is True, result.stdout
        stats = result.json("STATS")
        assert (stats["sent"], stats["failed"], stats["dropped"], stats["pending"]) == (n, 0, 0, 0)
        assert stats["spooled"] == 0
        assert_invariant(stats)
        assert_exactly_once(fake, {f"d-{i}" for i in range(n)})
        assert not path.parent.exists()
    reports = result.json("ERRORS")
    assert len(reports) == 1, reports
    assert reports[0][0] == "SpoolError", reports[0]
    assert str(path) in reports[0][1], reports[0]
    assert "in memory" in reports[0][1], reports[0]


FILL = """
N = int(os.environ["N"])
for n in range(N):
    feedback(f"s-{n}")
wait_until(lambda: handler.stats().spooled + handler.stats().dropped == N, 30)
# Evictions are said once the burst is over: a moment (1 s) without any.
said.wait(10)
say("STATS", stats())
say("ERRORS", reported())
the_end()
"""


def test_a_full_spool_evicts_the_oldest_counts_and_says_so_once(tmp_path: Path) -> None:
    """64 KiB spool, service down: oldest evicted, counted, said once; exit on time, rest kept."""
    n, exit_timeout = 3000, 0.5
    path = spool_at(tmp_path)
    env = settings_env(
        closed_port_base_url(),
        spool_path=path,
        max_spool_bytes=64 * 1024,
        max_retry_time=0.5,
        exit_timeout=exit_timeout,
    )
    result = run_python(script(FILL), {**env, "N": str(n)}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert_clean_stderr(result)
    stats = result.json("STATS")
    reports = result.json("ERRORS")
    left = spooled_data_ids(path)
    exit_seconds = result.json("EXIT")
    OBSERVED["full spool"] = (
        f"{stats}; on disk after exit {len(left)}; exit took {exit_seconds:.2f}s "
        f"(exit_timeout {exit_timeout:g}s); reports {[r[:2] for r in reports]}"
    )
    assert_invariant(stats)
    assert stats["dropped"] > 0, stats
    assert (stats["sent"], stats["failed"]) == (0, 0), stats
    assert stats["spooled"] + stats["dropped"] == n, stats
    assert len(reports) == 1, f"expected one report of the eviction, got {reports}"
    assert reports[0][0] in ("QueueFullError", "SpoolError"), reports
    assert str(stats["dropped"]) in reports[0][1], reports
    assert len(left) == stats["spooled"], (len(left), stats)
    assert left == [f"s-{i}" for i in range(n - len(left), n)], "not the newest that stayed"
    assert read_status(str(path)).unowned == len(left)  # released for the next process
    said = [line for line in result.lines("LIB") if str(path) in line and "stay" in line]
    assert len(said) == 1, result.lines("LIB")
    assert str(len(left)) in said[0], said
    assert exit_seconds <= exit_timeout + 1.0, f"exit took {exit_seconds:.2f}s"
    assert_private_and_keyless(path, made_dir=True)


# -- 6. fork -------------------------------------------------------------------------------------

FORKED = """
import multiprocessing
CHILDREN, PER_CHILD, PER_PARENT = 3, 300, 200
path = os.environ["HUMANLOOP_FEEDBACK_SPOOL_PATH"]

def work(i):
    for n in range(PER_CHILD):
        feedback(f"c{i}-{n}")
    flushed = handler.flush(15)
    registered = [o.pid for o in read_status(path).owners if o.pid == os.getpid()]
    say("CHILD", {"i": i, "flushed": flushed, "registered": len(registered),
                  "stats": stats(), "errors": reported()})

for n in range(PER_PARENT):
    feedback(f"before-{n}")
context = multiprocessing.get_context("fork")
children = [context.Process(target=work, args=(i,)) for i in range(CHILDREN)]
for child in children:
    child.start()
for n in range(PER_PARENT):
    feedback(f"during-{n}")
for child in children:
    child.join(60)
say("EXITCODES", [child.exitcode for child in children])
for n in range(PER_PARENT):
    feedback(f"after-{n}")
say("FLUSHED", handler.flush(30))
say("STATS", stats())
say("ERRORS", reported())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_fork_children_log_through_the_parents_spool(tmp_path: Path) -> None:
    """A parent with a spool forks children that log; all arrive once, both sides keep working."""
    children, per_child, per_parent = 3, 300, 200
    path = spool_at(tmp_path)
    with FakeHumanloop(api_key=SECRET_KEY) as fake:
        env = settings_env(fake.base_url, spool_path=path, flush_interval=0.2)
        result = run_python(script(FORKED), env, timeout=90)
        assert result.returncode == 0, result.stderr
        assert_clean_stderr(result)
        assert result.json("EXITCODES") == [0] * children
        child_lines = [json.loads(line) for line in result.lines("CHILD")]
        assert sorted(c["i"] for c in child_lines) == list(range(children)), result.stdout
        for line in child_lines:
            assert line["flushed"] is True, line
            assert line["registered"] == 1, line  # its own owner row: its own connection
            assert line["errors"] == [], line
            assert line["stats"]["sent"] == per_child, line
            assert_invariant(line["stats"])
        parent = result.json("STATS")
        assert result.json("FLUSHED") is True, result.stdout
        assert result.json("ERRORS") == []
        assert (parent["sent"], parent["failed"], parent["dropped"]) == (3 * per_parent, 0, 0)
        assert_invariant(parent)
        expected = {
            f"{stage}-{n}" for stage in ("before", "during", "after") for n in range(per_parent)
        }
        expected |= {f"c{i}-{n}" for i in range(children) for n in range(per_child)}
        counts = assert_exactly_once(fake, expected)
        OBSERVED["fork"] = (
            f"{len(counts)} distinct, {sum(counts.values())} items in "
            f"{len(accepted_requests(fake))} accepted requests; parent {parent}; children "
            f"sent {[c['stats']['sent'] for c in child_lines]}"
        )
    assert read_status(str(path)).rows == 0
    assert_private_and_keyless(path, made_dir=True)


#: Counts observed by the scenarios, printed in the reliability report.
OBSERVED: dict[str, str] = {}


@pytest.fixture(autouse=True, scope="module")
def _report_observed() -> Iterator[None]:
    yield
    for name, text in OBSERVED.items():
        MEASUREMENTS[f"spool stacks, {name}"] = text
