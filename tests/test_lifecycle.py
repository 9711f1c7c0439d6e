"""Real processes: delivery at exit, the exit budget, fork, and no recursion through urllib3 logs."""

from __future__ import annotations

import collections
import json
import linecache
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import child_env, closed_port_base_url, data_ids, hand_over, humanloop_env

from humanloop_logging.testing import FakeHumanloop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

#: How long past its last line a child with exit_timeout=1 may take to end. The exit hook keeps
#: to that second; the bound only tells it from the 30 s of timeout and max_retry_time that these
#: tests set beside it, so it is ten times the expected time, for a slow and shared machine: no
#: claim about speed. That the deadline is what ended the sends is read from what the child said.
EXIT_BOUND = 10.0

PRELUDE = """
import json, logging, os, sys, time
from humanloop_logging import FeedbackHandler

def make_logger(handler):
    logger = logging.getLogger("app")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger

def feedback(logger, data_id, **fields):
    extra = {"data_id": data_id, "type": "rating", "value": "good"}
    extra.update(fields)
    logger.info("feedback", extra=extra)

def stats_line(tag, handler):
    s = handler.stats()
    print(tag, json.dumps(dict(enqueued=s.enqueued, sent=s.sent, rejected=s.rejected,
        dropped=s.dropped, failed=s.failed, pending=s.pending)), flush=True)
"""


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str
    ended: float
    """time.monotonic() in this process right after the child had exited."""

    def line(self, tag: str) -> str:
        lines = [line for line in self.stdout.splitlines() if line.startswith(tag + " ")]
        assert len(lines) == 1, self.stdout + self.stderr
        return lines[0][len(tag) + 1 :]

    def stats(self, tag: str) -> dict[str, int]:
        parsed: dict[str, int] = json.loads(self.line(tag))
        return parsed


def run_script(body: str, env: Mapping[str, str], timeout: float = 30.0) -> Finished:
    """Run PRELUDE + body in a fresh interpreter that imports this checkout."""
    script = PRELUDE + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    ended = time.monotonic()
    return Finished(result.returncode, result.stdout, result.stderr, ended)


def env_for(fake: FakeHumanloop, **settings: Any) -> dict[str, str]:
    return humanloop_env(fake.api_key, fake.base_url, **settings)


def test_records_queued_at_exit_are_delivered(fake_humanloop: FakeHumanloop) -> None:
    """A script that logs and exits without flush() or close() still delivers every record once."""
    result = run_script(
        """
        handler = FeedbackHandler()
        logger = make_logger(handler)
        for index in range(50):
            feedback(logger, f"dp-{index}")
        stats_line("BEFORE-EXIT", handler)
        """,
        env_for(fake_humanloop, flush_interval=60),
    )

    assert result.returncode == 0, result.stderr
    assert result.stats("BEFORE-EXIT")["pending"] == 50
    assert data_ids(fake_humanloop) == collections.Counter(f"dp-{index}" for index in range(50))
    assert "Traceback" not in result.stderr


def test_exit_with_the_server_down_stays_within_exit_timeout(
    fake_humanloop: FakeHumanloop,
) -> None:
    """Nothing listening: the process exits at its exit_timeout (the close deadline, not
    max_retry_time, ends the retries) and says what was not sent."""
    env = env_for(fake_humanloop, flush_interval=60, exit_timeout=1, max_retry_time=30)
    env["HUMANLOOP_BASE_URL"] = closed_port_base_url()
    result = run_script(
        """
        handler = FeedbackHandler()
        logger = make_logger(handler)
        for index in range(5):
            feedback(logger, f"dp-{index}")
        print("END", time.monotonic(), flush=True)
        """,
        env,
    )

    assert result.returncode == 0, result.stderr
    assert result.ended - float(result.line("END")) < EXIT_BOUND
    assert "close deadline" in result.stderr, result.stderr
    assert "5 record" in result.stderr, result.stderr


def test_exit_with_a_hanging_server_stays_within_exit_timeout(
    fake_humanloop: FakeHumanloop,
) -> None:
    """A server that never answers: the send is tried, cut at exit_timeout, and reported."""
    fake_humanloop.hang_next(100)
    env = env_for(fake_humanloop, flush_interval=60, exit_timeout=1, max_retry_time=30, timeout=30)
    result = run_script(
        """
        handler = FeedbackHandler()
        logger = make_logger(handler)
        for index in range(5):
            feedback(logger, f"dp-{index}")
        print("END", time.monotonic(), flush=True)
        """,
        env,
    )

    assert result.returncode == 0, result.stderr
    assert result.ended - float(result.line("END")) < EXIT_BOUND
    assert "close deadline" in result.stderr, result.stderr
    assert fake_humanloop.wait_for_arrivals(1, timeout=1.0)
    assert fake_humanloop.requests[0].item_count == 5
    assert "5 record" in result.stderr, result.stderr


def test_exit_reports_a_batch_that_was_in_flight(fake_humanloop: FakeHumanloop) -> None:
    """A batch stuck in a slow request at exit is reported along with the queue, within budget."""
    fake_humanloop.hang_next(100)
    env = env_for(
        fake_humanloop,
        batch_size=5,
        flush_interval=60,
        exit_timeout=1,
        max_retry_time=30,
        timeout=30,
    )
    result = run_script(
        """
        handler = FeedbackHandler()
        logger = make_logger(handler)
        for index in range(8):
            feedback(logger, f"dp-{index}")
        print("FLUSHED", handler.flush(0.5), flush=True)
        print("END", time.monotonic(), flush=True)
        """,
        env,
    )

    assert result.returncode == 0, result.stderr
    assert result.line("FLUSHED") == "False"
    assert result.ended - float(result.line("END")) < EXIT_BOUND
    assert "close deadline" in result.stderr, result.stderr
    # The first batch hangs; the rest may go beside it (flush() makes it due), in any order.
    items = [r.item_count for r in fake_humanloop.requests]
    assert max(items) >= 5
    assert sum(items) <= 8
    reported = sum(int(n) for n in re.findall(r"(\d+) record", result.stderr))
    assert reported == 8, result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_forked_child_sends_its_own_records_and_not_its_parents(
    fake_humanloop: FakeHumanloop,
) -> None:
    """After fork the child has a fresh queue: parent's records go once (from the parent)."""
    result = run_script(
        """
        handler = FeedbackHandler()
        logger = make_logger(handler)
        for index in range(3):
            feedback(logger, f"parent-{index}")
        pid = os.fork()
        if pid == 0:
            for index in range(2):
                feedback(logger, f"child-{index}")
            ok = handler.flush(5.0)
            stats_line("CHILD", handler)
            print("CHILD-FLUSHED", ok, flush=True)
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        print("CHILD-STATUS", status, flush=True)
        stats_line("PARENT", handler)
        """,
        env_for(fake_humanloop, flush_interval=60),
    )

    assert result.returncode == 0, result.stderr
    assert result.line("CHILD-STATUS") == "0"
    assert result.line("CHILD-FLUSHED") == "True"
    child = result.stats("CHILD")
    assert (child["enqueued"], child["sent"], child["pending"]) == (2, 2, 0)
    parent = result.stats("PARENT")
    assert (parent["enqueued"], parent["sent"], parent["pending"]) == (3, 0, 3)
    assert data_ids(fake_humanloop) == collections.Counter(
        ["parent-0", "parent-1", "parent-2", "child-0", "child-1"]
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_asks_the_system_for_no_proxy_settings(
    fake_humanloop: FakeHumanloop,
) -> None:
    """A forked child sends with the proxy settings its parent read when the handler was built.

    On macOS, asking for them (``urllib``'s ``_scproxy``) in a forked child of a process with
    threads can crash the child, so neither the fork hook nor the child's requests may ask.
    """
    result = run_script(
        """
        import requests.utils
        handler = FeedbackHandler()
        logger = make_logger(handler)
        asked = []
        def getproxies():
            asked.append(os.getpid())
            return {}
        def proxy_bypass(host):
            asked.append(os.getpid())
            return False
        requests.utils.getproxies = getproxies
        requests.utils.proxy_bypass = proxy_bypass
        pid = os.fork()
        if pid == 0:
            feedback(logger, "child-0")
            print("CHILD-FLUSHED", handler.flush(5.0), flush=True)
            print("CHILD-ASKED", len(asked), flush=True)
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        print("CHILD-STATUS", status, flush=True)
        """,
        env_for(fake_humanloop, flush_interval=60),
    )

    assert result.returncode == 0, result.stderr
    assert result.line("CHILD-STATUS") == "0"
    assert result.line("CHILD-FLUSHED") == "True"
    assert result.line("CHILD-ASKED") == "0"
    assert data_ids(fake_humanloop) == collections.Counter(["child-0"])


def test_root_handler_at_debug_does_not_recurse_or_send_library_records(
    fake_humanloop: FakeHumanloop,
) -> None:
    """With basicConfig(DEBUG) and the handler on root, urllib3 and library lines never become feedback."""
    fake_humanloop.fail_next(1, 503, retry_after=0)
    result = run_script(
        """
        logging.basicConfig(level=logging.DEBUG)
        handler = FeedbackHandler()
        logging.getLogger().addHandler(handler)
        log = logging.getLogger("app")
        for index in range(3):
            log.info("fb", extra={"data_id": f"dp-{index}", "type": "rating", "value": "good"})
        log.info("fb", extra={"data_id": "dp-bad", "type": "rating", "value": {"no": 1}})
        ok = handler.flush(10.0)
        print("FLUSHED", ok, flush=True)
        stats_line("STATS", handler)
        """,
        env_for(fake_humanloop, flush_interval=60),
    )

    assert result.returncode == 0, result.stderr
    assert "RecursionError" not in result.stderr
    assert "urllib3.connectionpool" in result.stderr  # debug logging really was on
    assert "humanloop_logging" in result.stderr  # and the library did log (the refused record)
    assert result.line("FLUSHED") == "True"
    stats = result.stats("STATS")
    assert (stats["enqueued"], stats["sent"], stats["rejected"], stats["pending"]) == (4, 3, 1, 0)
    assert data_ids(fake_humanloop) == collections.Counter(["dp-0", "dp-1", "dp-2"])
    assert [r.status for r in fake_humanloop.requests] == [503, 200]


def test_a_record_appended_as_the_flush_thread_stops_is_sent(
    fake_humanloop: FakeHumanloop,
) -> None:
    """The caller appends without a lock and then looks whether a flush thread runs; a closing
    thread looks at the queue and then says it stops. A record appended between the two was
    stranded: queued, with no thread to send it and none started. The record is appended here at
    exactly that moment, from a trace of the flush thread: when it is about to publish that it
    is idle, after its last look at the queue."""
    from humanloop_logging import FeedbackShipper

    shipper = FeedbackShipper(
        fake_humanloop.api_key, fake_humanloop.base_url, flush_interval=3600, batch_size=1000
    )
    injected: list[str] = []

    def trace(frame: Any, event: str, arg: object) -> Any:
        if frame.f_code.co_name != "_next_batch":
            return None
        if event == "line" and not injected:
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
            if line == "engine.idle = True":
                injected.append("late")
                hand_over(shipper, "late")
        return trace

    threading.settrace(trace)
    try:
        hand_over(shipper, "first")
        assert shipper.close(10)
    finally:
        threading.settrace(None)
    assert injected == ["late"], "the flush thread never reached the point of publishing idle"
    assert shipper.flush(10)
    assert sorted(item["data_id"] for item in fake_humanloop.received) == ["first", "late"]
    stats = shipper.stats()
    assert (stats.sent, stats.pending) == (2, 0), stats
    shipper.close()


def test_a_close_that_another_close_ended_first_leaves_a_restarted_thread_alone(
    fake_humanloop: FakeHumanloop,
) -> None:
    """Two closes from two threads, and a record logged between them: the close that ends first
    lifts the deadline, and the record starts a new flush thread. The other close, still about to
    wait, waited on a deadline that was no longer there (OverflowError from Thread.join) and
    would have taken the new thread for a stuck one. The other close and the record come here at
    exactly that moment: when this close is about to wait."""
    from humanloop_logging import FeedbackShipper

    shipper = FeedbackShipper(fake_humanloop.api_key, fake_humanloop.base_url)
    hand_over(shipper, "first")
    other: list[bool] = []

    def trace(frame: Any, event: str, arg: object) -> Any:
        if event == "call" and frame.f_code.co_name == "wait_closed" and not other:
            sys.settrace(None)
            other.append(shipper.close(5))  # the other thread's close, ending first
            hand_over(shipper, "later")
        return None

    sys.settrace(trace)
    try:
        assert shipper.close(5)
    finally:
        sys.settrace(None)
    assert other == [True]
    assert shipper.flush(10), shipper.stats()
    assert sorted(item["data_id"] for item in fake_humanloop.received) == ["first", "later"]
    assert shipper.stats().failed == 0
    shipper.close()


class RecordingTransport:
    """A Transport that accepts everything and notes which thread sent each request."""

    def __init__(self) -> None:
        self.senders: list[int] = []
        self.records: list[Any] = []

    def send(self, body: bytes, records: Any, control: Any) -> None:
        self.senders.append(threading.get_ident())
        self.records.extend(records)

    def reset_after_fork(self) -> None: ...

    def cut_off_at(self, deadline: float) -> None: ...

    def close(self) -> None: ...


@pytest.mark.parametrize("refused", ["humanloop-feedback-flush", "humanloop-feedback-send"])
def test_when_no_thread_can_start_the_caller_sends_nothing_and_a_close_sends_it_all(
    refused: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process out of threads: the logging call neither sends on the caller's thread (it
    blocked for up to max_retry_time) nor raises (a sender that could not start escaped the
    call, after its writer had started). The records wait; close() sends them, once."""
    from humanloop_logging import FeedbackShipper

    original = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if self.name == refused:
            raise RuntimeError("can't start new thread")
        original(self)

    transport = RecordingTransport()
    spool_path = str(tmp_path / "spool.db") if refused.endswith("send") else None
    monkeypatch.setattr(threading.Thread, "start", start)
    shipper = FeedbackShipper(
        "hl-key", "http://127.0.0.1:9/v4", transport=transport, spool_path=spool_path
    )
    for n in range(3):
        shipper.submit((f"d{n}", "rating", "good", None, None, None, time.time()))
    assert threading.get_ident() not in transport.senders
    assert shipper.stats().pending == 3
    monkeypatch.undo()  # threads can be started again: the close's own may run
    assert shipper.close(10)
    assert [json.loads(record)["data_id"] for record in transport.records] == ["d0", "d1", "d2"]
    stats = shipper.stats()
    assert (stats.sent, stats.pending) == (3, 0), stats
