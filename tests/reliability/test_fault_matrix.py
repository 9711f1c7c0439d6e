"""The fault matrix: 10,000 records from 8 threads through a handler while the server misbehaves.

Each case injects its fault while records flow, then checks the books: every valid record arrived
or was reported as given up on, every rejected one was reported with its reason, copies arrived
only where an answer was lost, and ``stats()`` adds up exactly.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Optional

import pytest
from reliability_support import (
    FAULT_ROWS,
    SECRET_KEY,
    Accepted,
    Background,
    Cleanup,
    ErrorLog,
    FaultRow,
    LossWindows,
    accepted_requests,
    find_duplicates,
    run_producers,
)
from support import assert_consistent

from humanloop_logging import DeliveryError, FeedbackHandler
from humanloop_logging.testing import FakeHumanloop

THREADS = 8
PER_THREAD = 1250
TOTAL = THREADS * PER_THREAD

BASE_SETTINGS: Mapping[str, float] = {
    "batch_size": 100,
    "flush_interval": 0.1,
    "max_queue_size": 2 * TOTAL,
    "timeout": 5.0,
    "max_retry_time": 30.0,
    "exit_timeout": 5.0,
}


@dataclass
class Scenario:
    """What a fault injector works with, on its own thread, while the producers log."""

    fake: FakeHumanloop
    errors: ErrorLog
    windows: LossWindows = field(default_factory=LossWindows)
    resume: threading.Event = field(default_factory=threading.Event)
    pacing: threading.Event = field(default_factory=threading.Event)

    def at_items(self, count: int) -> None:
        assert self.fake.wait_for_items(count, timeout=60), f"never reached {count} items"


def bursts_of_503(s: Scenario) -> None:
    for threshold in (1500, 4500, 7500):
        s.at_items(threshold)
        s.fake.fail_next(2, 503)


def storms_of_429(s: Scenario) -> None:
    s.at_items(2000)
    s.fake.fail_next(4, 429, retry_after=0.05)
    s.at_items(6000)
    s.fake.fail_next(2, 429, retry_after=1)


def connection_resets(s: Scenario) -> None:
    for threshold in (1500, 4500, 7500):
        s.at_items(threshold)
        s.fake.reset_next(2)


def slower_than_timeout(s: Scenario) -> None:
    s.at_items(3000)
    # The backlog built during the slow spell then goes out at once, in up to max_in_flight
    # requests of up to 5 batches each, which the stand-in (in this process, beside 8 logging
    # threads) may also answer slower than timeout=0.5: the spell's effects last a while.
    with s.windows.around(slack=0.5, after=5.0):
        s.fake.set_latency(0.8)  # timeout is 0.5: the answers come after the client gave up
        # Counted from the latency change, not from the requests recorded before it: requests
        # still in flight then are arrivals that were not yet recorded, and are not slow.
        slow_from = s.fake.arrivals
        assert s.fake.wait_for_arrivals(slow_from + 4, timeout=30)
        s.fake.set_latency(0)


DOWN_RETRY_TIME = 1.0


def down_longer_than_max_retry_time(s: Scenario) -> None:
    s.at_items(1000)
    with s.windows.around(slack=1.0):
        s.fake.stop()
    down_since = time.monotonic()
    assert s.errors.wait_for(DeliveryError, 2, timeout=60), "no batch was given up on"
    # Pace the outage so it lasts at least twice max_retry_time, whatever the give-ups took.
    s.pacing.wait(max(0.0, down_since + 2 * DOWN_RETRY_TIME - time.monotonic()))
    s.fake.start()  # the same port
    s.resume.set()


def restarts_mid_stream(s: Scenario) -> None:
    for threshold in (2500, 5000, 7500):
        s.at_items(threshold)
        with s.windows.around(slack=1.0):
            s.fake.restart()


def nothing(s: Scenario) -> None:
    """The 422 case's fault is set up front, per data_id."""


@dataclass(frozen=True)
class Case:
    name: str
    inject: Callable[[Scenario], None]
    settings: Mapping[str, float] = field(default_factory=dict)
    #: Responses may be lost (the server took the items but the client never heard).
    lossy: bool = False
    #: Producers wait at this index until the injector says the server is back.
    pause_at: Optional[int] = None
    reject_a_tenth: bool = False
    gives_up: bool = False
    #: Every retry is of a request the stand-in saw (no refused connections, no cut-off reads).
    retries_visible: bool = True


CASES = [
    Case("503 bursts", bursts_of_503),
    Case("429 storms with Retry-After", storms_of_429),
    Case("connection resets", connection_resets),
    # retries_visible: a request cut off at 0.5 s while the stand-in (in this process, beside 8
    # logging threads and up to 4 requests of up to 500 records) had not yet read it all is
    # retried, and the stand-in never records the one it gave up reading.
    Case(
        "slower than timeout",
        slower_than_timeout,
        {"timeout": 0.5},
        lossy=True,
        retries_visible=False,
    ),
    Case(
        "down > max_retry_time, then back",
        down_longer_than_max_retry_time,
        {"max_retry_time": DOWN_RETRY_TIME, "timeout": 2.0},
        lossy=True,
        pause_at=750,
        gives_up=True,
        retries_visible=False,
    ),
    Case("restarts mid-stream", restarts_mid_stream, lossy=True, retries_visible=False),
    Case("422 for a random tenth", nothing, reject_a_tenth=True),
]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=[slug(c.name) for c in CASES])
def test_fault(case: Case, fake: FakeHumanloop, errors: ErrorLog, cleanup: Cleanup) -> None:
    """Under each fault: no valid record silently lost, copies only of lost answers, exact stats."""
    prefix = slug(case.name)
    ids = [[f"{prefix}-{t}-{i}" for i in range(PER_THREAD)] for t in range(THREADS)]
    all_ids = {data_id for row in ids for data_id in row}
    rejected_ids: set[str] = set()
    if case.reject_a_tenth:
        rejected_ids = set(random.Random(422).sample(sorted(all_ids), TOTAL // 10))
        fake.reject_data_ids(*rejected_ids)
    valid = all_ids - rejected_ids

    settings = {**BASE_SETTINGS, **case.settings}
    handler = FeedbackHandler(
        api_key=SECRET_KEY,
        base_url=fake.base_url,
        on_error=errors,
        batch_size=int(settings["batch_size"]),
        flush_interval=settings["flush_interval"],
        max_queue_size=int(settings["max_queue_size"]),
        timeout=settings["timeout"],
        max_retry_time=settings["max_retry_time"],
        exit_timeout=settings["exit_timeout"],
    )
    logger = cleanup.attach(f"reliability.fault.{prefix}", handler)
    scenario = Scenario(fake, errors)
    cleanup.later(scenario.pacing.set)

    def log_one(thread: int, index: int) -> None:
        logger.info(
            "feedback", extra={"data_id": ids[thread][index], "type": "rating", "value": "good"}
        )

    started = time.monotonic()
    injector = Background(lambda: case.inject(scenario), "fault-injector").start()
    run_producers(log_one, THREADS, PER_THREAD, pause_at=case.pause_at, resume=scenario.resume)
    injector.join(90)
    assert handler.flush(60.0), handler.stats()
    wall = time.monotonic() - started
    stats = handler.stats()
    closed_clean = handler.shipper.close()  # the handler's close() returns None

    accepted = accepted_requests(fake)
    counts = collections.Counter(i for request in accepted for i in request.data_ids)
    delivered = set(counts)
    duplicates = find_duplicates(accepted)
    failed_ids = errors.failed_ids()
    failed = set(failed_ids)
    statuses = collections.Counter(request.status for request in fake.requests)
    FAULT_ROWS[case.name] = FaultRow(
        case=case.name,
        sent=TOTAL,
        delivered=len(delivered),
        duplicated=duplicates.extra_copies,
        rejected=stats.rejected,
        dropped=stats.dropped,
        failed=stats.failed,
        retried=stats.retried,
        requests=len(fake.requests),
        wall=wall,
    )

    # The counters add up exactly, and nothing is left behind.
    assert stats.enqueued == TOTAL
    assert (stats.pending, stats.dropped) == (0, 0)
    assert_consistent(stats)
    # Every rejected record is reported once, with the service's reason, and never delivered.
    assert errors.refused() == []
    rejected = errors.rejected()
    assert sorted(data_id for data_id, _ in rejected) == sorted(rejected_ids)
    for data_id, reason in rejected:
        assert reason == f"data_id: Datapoint {data_id} not found"
    assert stats.rejected == len(rejected_ids)
    assert not delivered & rejected_ids
    # Every record given up on is reported once and counted; the rest were delivered.
    assert len(failed_ids) == len(failed) == stats.failed
    assert (stats.failed > 0) == case.gives_up
    assert delivered | failed == valid, "records neither delivered nor reported as failed"
    assert delivered <= valid
    assert stats.sent == len(delivered - failed)
    # Copies (and records taken but given up on) only where an answer was lost.
    unanswered = [r for r in accepted if r in duplicates.lost or failed & set(r.data_ids)]
    for request in unanswered:
        assert scenario.windows.contains(request.time), "a copy without a lost answer"
    if not case.lossy:
        assert duplicates.extra_copies == 0
    if case.retries_visible:
        visible_failures = statuses[0] + statuses[429] + statuses[503]
        assert stats.retried == visible_failures + len(duplicates.lost)
    assert closed_clean  # flushed first, so the close itself gave up on nothing
    check_case_specifics(
        case=case,
        fake=fake,
        scenario=scenario,
        ids=ids,
        delivered=delivered,
        failed=failed,
        lost=duplicates.lost,
    )


def check_case_specifics(
    *,
    case: Case,
    fake: FakeHumanloop,
    scenario: Scenario,
    ids: list[list[str]],
    delivered: set[str],
    failed: set[str],
    lost: list[Accepted],
) -> None:
    """That each fault really happened, and what is particular to it."""
    requests = fake.requests
    statuses = collections.Counter(request.status for request in requests)
    if case.inject is bursts_of_503:
        assert statuses[503] == 6
    elif case.inject is storms_of_429:
        assert statuses[429] == 6
        throttled = [i for i, r in enumerate(requests) if r.status == 429]
        first_storm, second_storm = throttled[:4], throttled[4:]

        def until_retried(index: int) -> float:
            """From a throttled request to the next try of the same batch (the same body):
            other batches, in flight at the same time, may arrive in between."""
            body = requests[index].body
            retry = next(r for r in requests[index + 1 :] if r.body == body)
            return retry.time - requests[index].time

        # A short Retry-After is a lower bound, not a licence to hammer: the backoff still grows
        # (0.25 s doubling, before jitter) between the tries of one batch.
        for index in first_storm:
            attempt = sum(
                requests[i].body == requests[index].body for i in first_storm if i < index
            )
            gap = until_retried(index)
            assert gap >= 0.25 * 2**attempt - 0.01, (attempt, gap)
        # Honoured: a first retry's backoff is at most 0.75 s, Retry-After asked for 1 s.
        for index in second_storm:
            assert until_retried(index) >= 1.0
    elif case.inject is connection_resets:
        assert statuses[0] == 6
    elif case.inject is slower_than_timeout:
        assert lost, "no answer came after the client gave up"
    elif case.inject is down_longer_than_max_retry_time:
        after_restart = {row[i] for row in ids for i in range(case.pause_at or 0, PER_THREAD)}
        assert after_restart <= delivered - failed
    elif case.inject is restarts_mid_stream:
        assert len({request.connection for request in requests}) >= 4
