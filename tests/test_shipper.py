"""FeedbackShipper: batching, flushing, the counters, the bounded queue, retries and 422 handling."""

from __future__ import annotations

import collections
import dataclasses
import gc
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import tenacity
from support import FLUSH_THREAD, Rigs, assert_consistent, data_ids, flush_threads, hand_over

from humanloop_logging import (
    APIError,
    AuthenticationError,
    DeliveryError,
    FeedbackHandler,
    FeedbackProcessor,
    FeedbackShipper,
    FeedbackStats,
    HumanloopLoggingError,
    QueueFullError,
    TransportError,
    UnprocessableEntityError,
)
from humanloop_logging._record import to_payloads
from humanloop_logging.testing import ErrorLog, FakeHumanloop
from humanloop_logging.transport import RETRY_AFTER_SPREAD, HTTPTransport, SendControl

pytestmark = pytest.mark.timeout(30)


Make = Rigs


@pytest.fixture
def make(fake_humanloop: FakeHumanloop) -> Iterator[Make]:
    with Rigs(fake_humanloop) as rigs:
        yield rigs


class Watched:
    """The HTTPTransport a shipper builds, with what each send asks of the shipper in view: the
    wait before every retry, and an event once a retry is announced (its wait about to begin)."""

    def __init__(self, fake: FakeHumanloop, *, timeout: float = 5.0, max_retry_time: float) -> None:
        self.http = HTTPTransport(
            api_key=fake.api_key, url=fake.url, timeout=timeout, max_retry_time=max_retry_time
        )
        self.waits: list[float] = []
        self.retried = threading.Event()

    def send(self, body: bytes, records: Sequence[Any], control: SendControl) -> None:
        self.http.send(body, records, _Told(control, self))

    def reset_after_fork(self) -> None:
        self.http.reset_after_fork()

    def cut_off_at(self, deadline: float) -> None:
        self.http.cut_off_at(deadline)

    def close(self) -> None:
        self.http.close()


class _Told:
    """The shipper's SendControl of one send, as it is, but that each retry is told to a Watched
    too (after the shipper, so its counters have it by then)."""

    def __init__(self, control: SendControl, watched: Watched) -> None:
        self._control = control
        self._watched = watched
        self.deadline = control.deadline
        self.sleep = control.sleep  # the shipper's own wait, which a close cuts short
        self.give_up_early = control.give_up_early

    def retrying(self, error: DeliveryError, wait: float) -> None:
        self._control.retrying(error, wait)
        self._watched.waits.append(wait)
        self._watched.retried.set()


def gaps(fake: FakeHumanloop) -> list[float]:
    times = [request.time for request in fake.requests]
    return [later - earlier for earlier, later in zip(times, times[1:])]


# -- the headline: exactly once through every kind of failure -----------------------------------


@pytest.mark.timeout(20)
def test_every_valid_record_arrives_exactly_once_through_faults(make: Make) -> None:
    """503s, a 429 with Retry-After, resets and a 422 mid-batch: each valid record lands once."""
    # One request in flight, and records logged in whole batches: the sequence is exact.
    rig = make(batch_size=5, timeout=2.0, max_retry_time=15.0, max_in_flight=1)
    fake = rig.fake
    fake.reset_next(1)
    fake.fail_next(2, 503, retry_after=0.05)
    fake.fail_next(1, 429, retry_after=0.2)
    fake.reject_data_ids("dp-bad-1", "dp-bad-2")

    first = ["dp-0", "dp-1", "dp-bad-1", "dp-3", "dp-4", *(f"dp-{i}" for i in range(5, 12))]
    for start in (0, 5):
        for data_id in first[start : start + 5]:
            rig.send(data_id)
        assert rig.shipper.flush(15.0)  # (a whole batch: flush() changes nothing in it)
    for data_id in first[10:]:
        rig.send(data_id)
    assert rig.shipper.flush(15.0)

    assert [r.status for r in fake.requests] == [0, 503, 503, 429, 422, 200, 200, 200]
    assert [r.item_count for r in fake.requests] == [5, 5, 5, 5, 5, 4, 5, 2]

    fake.reset_next(1)
    fake.fail_next(1, 503)
    second = ["dp-12", "dp-13", "dp-bad-2", "dp-15", "dp-16"]
    for data_id in second:
        rig.send(data_id)
    assert rig.shipper.flush(15.0)

    valid = [data_id for data_id in first + second if "bad" not in data_id]
    assert data_ids(fake) == collections.Counter(valid)
    rejected = rig.errors.of(UnprocessableEntityError)
    assert sorted(str(record["data_id"]) for e in rejected for record in e.records) == [
        "dp-bad-1",
        "dp-bad-2",
    ]
    stats = rig.stats()
    assert dataclasses.astuple(stats) == (17, 15, 6, 2, 0, 0, 0, 0, 0, 0, 0)
    assert rig.errors.of(TransportError) == []
    assert [e for e in rig.errors.errors if not isinstance(e, UnprocessableEntityError)] == []


# -- shape and thread -----------------------------------------------------------------------------


def test_stats_has_the_documented_fields() -> None:
    """FeedbackStats carries exactly the documented counters, in order (newer ones last)."""
    names = [field.name for field in dataclasses.fields(FeedbackStats)]
    assert names == [
        "enqueued",
        "sent",
        "retried",
        "rejected",
        "dropped",
        "failed",
        "pending",
        "spooled",
        "replayed",
        "filtered",
        "withheld",
    ]


def test_flush_thread_starts_with_the_first_record_and_stops_on_close(make: Make) -> None:
    """No thread until feedback arrives; then one daemon humanloop-feedback-flush, gone after
    close(), and a new one for the next record."""

    before = set(threading.enumerate())
    rig = make()
    assert flush_threads(before) == []

    rig.send("dp-0")
    new = flush_threads(before)
    assert [thread.name for thread in new] == [FLUSH_THREAD]
    assert new[0].daemon

    assert rig.shipper.close()
    new[0].join(2.0)
    assert not new[0].is_alive()

    rig.send("dp-1")
    again = flush_threads(before)
    assert [thread.name for thread in again] == [FLUSH_THREAD]
    assert again[0] is not new[0]
    assert rig.shipper.close()
    assert data_ids(rig.fake) == collections.Counter(["dp-0", "dp-1"])


# -- batching and flushing ------------------------------------------------------------------------


def test_full_batches_go_without_flush(make: Make) -> None:
    """batch_size waiting items are sent at once; a part batch waits for flush()."""
    rig = make(batch_size=5)
    for index in range(5):
        rig.send(f"dp-{index}")
    assert rig.fake.wait_for_items(5)
    for index in range(5, 7):
        rig.send(f"dp-{index}")

    assert rig.shipper.flush(5.0)
    assert [r.item_count for r in rig.fake.requests] == [5, 2]
    assert all(r.batch for r in rig.fake.requests)
    assert data_ids(rig.fake) == collections.Counter(f"dp-{index}" for index in range(7))


def test_a_part_batch_waits_for_its_interval(make: Make) -> None:
    """Fewer than batch_size records are not sent before flush_interval (60 s here): they wait,
    and go with the records that fill their batch."""
    rig = make(batch_size=5)
    for index in range(5):
        rig.send(f"dp-{index}")
    assert rig.fake.wait_for_items(5)
    assert rig.shipper.flush(5.0)  # the full batch is counted (nothing else is queued)
    rig.send("dp-5")
    rig.send("dp-6")

    stats = rig.stats()
    assert (stats.sent, stats.pending) == (5, 2)
    for index in range(7, 10):  # the batch is full now
        rig.send(f"dp-{index}")
    assert rig.fake.wait_for_items(10)
    # dp-5 and dp-6 went in the request that the batch's last record started, not before.
    assert [r.item_count for r in rig.fake.requests] == [5, 5]
    assert [item["data_id"] for item in rig.fake.requests[1].json()] == [
        f"dp-{index}" for index in range(5, 10)
    ]


def test_a_backlog_goes_in_requests_of_up_to_five_batch_sizes(make: Make) -> None:
    """While more than a batch waits, a request takes up to 5 x batch_size records, no more."""
    rig = make(batch_size=5, max_in_flight=1)
    rig.fake.hang_next(1)  # the only request in flight hangs: a backlog builds behind it
    for index in range(5):
        rig.send(f"dp-{index}")
    assert rig.fake.wait_for_arrivals(1)
    for index in range(5, 65):
        rig.send(f"dp-{index}")

    rig.fake.clear()  # the hanging request is dropped, and sent again
    assert rig.shipper.flush(10.0)
    assert [r.item_count for r in rig.fake.requests] == [5, 25, 25, 10]
    assert data_ids(rig.fake) == collections.Counter(f"dp-{index}" for index in range(65))


def test_items_are_sent_once_flush_interval_has_passed(make: Make) -> None:
    """An item waits about flush_interval after its log call, then goes without flush()."""
    rig = make(flush_interval=0.3)
    logged = time.time()
    rig.send("dp-1")

    # It goes without flush() (nothing else would send it for a minute); 5 s is only the bound
    # against never, 16 times the interval: how soon after it is the machine's speed.
    assert rig.fake.wait_for_items(1, timeout=5.0)
    waited = rig.fake.requests[0].time - logged
    assert waited >= 0.27  # not before the interval (less the stand-in's clock reading)


def test_flush_returns_true_once_sent(make: Make) -> None:
    """flush() returns True only after the server has everything queued before the call."""
    rig = make()
    for index in range(3):
        rig.send(f"dp-{index}")

    assert rig.shipper.flush(5.0)

    assert len(rig.fake.received) == 3
    assert dataclasses.astuple(rig.stats()) == (3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def test_flush_returns_false_when_time_runs_out(make: Make) -> None:
    """flush(timeout) gives up after timeout, returning False, while the server does not answer."""
    rig = make(timeout=5.0)
    rig.fake.hang_next(1)
    rig.send("dp-1")

    started = time.monotonic()
    # False: it ended at its own timeout, not at an answer (the hang lasts until clear(), and
    # the 5 s request timeout would end in a retry that succeeds, and True).
    assert not rig.shipper.flush(0.3)
    assert time.monotonic() - started >= 0.25  # it did wait for its timeout
    assert rig.stats().pending == 1

    rig.fake.clear()  # releases the hung request: the retry then succeeds
    assert rig.shipper.flush(5.0)
    assert rig.stats().sent == 1


def test_flush_counts_given_up_records_as_done(make: Make) -> None:
    """flush() returns True when records were given up on, not only when sent."""
    rig = make()
    rig.fake.fail_next(1, 400, body={"detail": "nope"})
    rig.send("dp-1")

    assert rig.shipper.flush(5.0)
    assert dataclasses.astuple(rig.stats()) == (1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0)


def test_stats_invariant_holds_under_concurrent_logging(make: Make) -> None:
    """enqueued == sent + rejected + dropped + failed + pending at every moment, under load."""
    rig = make(batch_size=20, max_queue_size=100, flush_interval=0.05)
    rig.fake.set_latency(0.002)

    def produce(worker: int) -> None:
        for index in range(250):
            rig.send(f"w{worker}-{index}")
            if index % 97 == 3:
                rig.send(f"w{worker}-invalid-{index}", value=float("nan"))

    workers = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    samples = 0
    while any(worker.is_alive() for worker in workers) or samples < 50:
        assert_consistent(rig.shipper.stats())
        samples += 1
    for worker in workers:
        worker.join()

    assert rig.shipper.flush(10.0)
    stats = rig.stats()
    assert stats.enqueued == 4 * (250 + 3)
    assert (stats.pending, stats.failed) == (0, 0)
    assert sum(data_ids(rig.fake).values()) == stats.sent
    assert max(data_ids(rig.fake).values()) == 1


# -- the bounded queue ----------------------------------------------------------------------------


def test_full_queue_drops_new_records_and_warns_once_per_burst(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """Beyond max_queue_size new records are dropped and counted, with one warning per burst."""
    caplog.set_level(logging.WARNING, logger="humanloop_logging")
    rig = make(batch_size=1000, max_queue_size=5)
    for index in range(20):
        rig.send(f"dp-{index}")

    assert rig.shipper.flush(5.0)
    assert sorted(data_ids(rig.fake)) == [f"dp-{index}" for index in range(5)]
    full = rig.errors.of(QueueFullError)
    assert [error.dropped for error in full] == [15]
    assert full[0].max_queue_size == 5
    warnings = [r for r in caplog.records if r.name == "humanloop_logging"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert dataclasses.astuple(rig.stats()) == (20, 5, 0, 0, 15, 0, 0, 0, 0, 0, 0)

    for index in range(20, 32):
        rig.send(f"dp-{index}")
    assert rig.shipper.flush(5.0)
    assert [error.dropped for error in rig.errors.of(QueueFullError)] == [15, 7]
    assert dataclasses.astuple(rig.stats()) == (32, 10, 0, 0, 22, 0, 0, 0, 0, 0, 0)


# -- close ------------------------------------------------------------------------------------------


def test_close_drains_and_is_safe_twice(make: Make) -> None:
    """close() sends what is queued, returns True; a second close() is harmless."""
    rig = make()
    for index in range(3):
        rig.send(f"dp-{index}")

    assert rig.shipper.close()
    assert rig.shipper.close()

    assert data_ids(rig.fake) == collections.Counter(["dp-0", "dp-1", "dp-2"])
    assert dataclasses.astuple(rig.stats()) == (3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def test_records_after_close_are_delivered(make: Make, caplog: pytest.LogCaptureFixture) -> None:
    """Records handed over after close() start the shipper again and are sent: a close by
    someone else (dictConfig) must not lose what is logged later."""
    caplog.set_level(logging.WARNING, logger="humanloop_logging")
    rig = make()
    rig.send("early")
    assert rig.shipper.close()

    for n in range(3):
        rig.send(f"late-{n}")
    assert rig.shipper.flush(5.0)

    assert data_ids(rig.fake) == collections.Counter(["early", "late-0", "late-1", "late-2"])
    assert dataclasses.astuple(rig.stats()) == (4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert [r for r in caplog.records if r.name == "humanloop_logging"] == []
    assert rig.shipper.close()


def test_a_record_racing_close_is_never_left_pending(make: Make) -> None:
    """Records appended while close() drains are all sent or given up on, none left in limbo."""
    rig = make(batch_size=7)
    stop = threading.Event()
    sent = [0]

    def produce() -> None:
        while not stop.is_set() and sent[0] < 20_000:
            rig.send(f"race-{sent[0]}")
            sent[0] += 1

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        for _ in range(20):
            rig.shipper.close(timeout=5.0)
    finally:
        stop.set()
        producer.join()
    assert rig.shipper.flush(10.0)
    stats = rig.stats()
    assert stats.pending == 0
    # A close that cannot empty the queue before its deadline (the producer keeps it full) gives
    # up on what is left, and says so: every record is sent, dropped or given up on, none lost.
    assert stats.enqueued == sent[0] == stats.sent + stats.dropped + stats.failed
    # At most the one batch cut off at a deadline after the stand-in took it arrives unaccounted.
    assert stats.sent <= sum(data_ids(rig.fake).values()) <= stats.sent + 7
    assert rig.shipper.close()


def test_close_cuts_a_retry_wait_short(make: Make) -> None:
    """close() interrupts a long Retry-After wait: the record is resent at once, not in 30 s."""
    watched = Watched(make.fake, max_retry_time=60.0)
    rig = make(batch_size=1, max_retry_time=60.0, transport=watched)
    rig.fake.fail_next(1, 503, retry_after=30)
    rig.send("dp-1")
    assert watched.retried.wait(5.0)  # the 30 s wait begins

    # True: the record was sent within the close's 3 s. A wait left to run its 30 s would end
    # past the deadline, and the close would give the record up and return False.
    assert rig.shipper.close(timeout=3.0)

    assert [r.status for r in rig.fake.requests] == [503, 200]
    assert len(watched.waits) == 1
    assert watched.waits[0] >= 30.0
    assert dataclasses.astuple(rig.stats()) == (1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)


def test_close_defaults_to_exit_timeout(make: Make) -> None:
    """close() without a timeout waits at most exit_timeout for a server that does not answer."""
    rig = make(batch_size=1, exit_timeout=0.5, timeout=30.0)
    rig.fake.hang_next(1)
    rig.send("dp-1")
    assert rig.fake.wait_for_arrivals(1)

    started = time.monotonic()
    assert not rig.shipper.close()
    # Bounds far apart, so only the setting used decides: exit_timeout 0.5 s, not timeout 30 s.
    # The upper one only tells a close bounded by exit_timeout from one that waits for the 30 s
    # request timeout: 30 times the 0.5 s, it is no claim about speed.
    assert 0.4 <= time.monotonic() - started < 15.0
    stats = rig.stats()
    assert (stats.pending, stats.failed) == (0, 1)  # closed means settled: nothing left in limbo


def test_dropped_shipper_drains_and_its_thread_ends(fake_humanloop: FakeHumanloop) -> None:
    """A shipper garbage collected without close() still sends its queue, and its thread ends."""
    before = set(threading.enumerate())
    shipper = FeedbackShipper(
        api_key=fake_humanloop.api_key, base_url=fake_humanloop.base_url, flush_interval=60.0
    )
    processor = FeedbackProcessor(shipper=shipper)
    for index in range(3):
        processor(
            None, "info", {"event": "x", "data_id": f"dp-{index}", "type": "rating", "value": 1}
        )
    [thread] = flush_threads(before)

    del processor, shipper
    gc.collect()

    assert fake_humanloop.wait_for_items(3)
    thread.join(5.0)
    assert not thread.is_alive()
    assert data_ids(fake_humanloop) == collections.Counter(["dp-0", "dp-1", "dp-2"])


def test_close_gives_up_within_its_timeout_when_the_server_keeps_failing(make: Make) -> None:
    """close(timeout) returns False within the timeout when a batch cannot be delivered."""
    rig = make(batch_size=1, max_retry_time=60.0)
    rig.fake.fail_next(1000, 503)
    rig.send("dp-1")
    assert rig.fake.wait_for_requests(1)

    started = time.monotonic()
    assert not rig.shipper.close(timeout=0.5)
    # The close's 0.5 s, not max_retry_time's 60 s: a bound against the long wait only, 30 times
    # the expected time, and no claim about speed.
    assert time.monotonic() - started < 15.0

    assert dataclasses.astuple(rig.stats())[3:] == (0, 0, 1, 0, 0, 0, 0, 0)
    assert rig.errors.wait_for(APIError)


def test_what_a_close_gives_up_on_is_written_out_only_when_asked_for(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A close that runs out of time reports every record it gives up on at once, by count; their
    bodies are validated and written out only when ``records`` is read, so a close with a large
    queue does not spend time past its deadline on bodies nobody reads."""
    rig = make(batch_size=1, max_in_flight=1, timeout=30.0)
    rig.fake.hang_next(1)
    rig.send("dp-0")  # its request hangs, and with one request in flight the rest wait
    assert rig.fake.wait_for_arrivals(1)
    for index in range(1, 50):
        rig.send(f"dp-{index}")
    validated: list[int] = []

    def counting(items: Any, default_user: Any) -> Any:
        validated.append(len(items))
        return to_payloads(items, default_user)

    monkeypatch.setattr("humanloop_logging._giving_up.to_payloads", counting)

    assert not rig.shipper.close(timeout=0.3)

    # The 49 queued records, and the hanging one unless its cut-off request reported it itself.
    [error] = [e for e in rig.errors.of(DeliveryError) if "gave up on feedback" in e.message]
    in_flight = 1 if "1 were in a request that did not end" in error.message else 0
    assert str(error) == f"{error.message} ({49 + in_flight} record(s))"
    assert validated == []  # reported, counted, and not one body written out
    assert [record["data_id"] for record in error.records] == [f"dp-{i}" for i in range(1, 50)]
    assert validated == [49]
    assert error.records is error.records  # written out once
    assert validated == [49]
    assert error.count == 49 + in_flight
    assert dataclasses.astuple(rig.stats())[1:7] == (0, 0, 0, 0, 50, 0)


def test_a_send_that_a_close_gave_up_on_makes_no_further_attempt(
    fake_humanloop: FakeHumanloop,
) -> None:
    """A request that close() cut off and wrote off is not tried again, even once the close has
    returned and lifted its deadline: its record was reported as given up on, and the cut-off
    attempt may have landed, so a retry would deliver it after all, or twice."""
    before = set(threading.enumerate())
    cut_off, go_on = threading.Event(), threading.Event()

    def backoff(state: tenacity.RetryCallState) -> float:
        cut_off.set()
        assert go_on.wait(10.0)  # whether to retry is decided after close() has returned
        return 0.0

    transport = HTTPTransport(
        api_key=fake_humanloop.api_key,
        url=f"{fake_humanloop.base_url}/feedback",
        timeout=30.0,
        max_retry_time=30.0,
        wait=backoff,
    )
    errors = ErrorLog()
    shipper = FeedbackShipper(
        api_key=fake_humanloop.api_key,
        base_url=fake_humanloop.base_url,
        batch_size=1,
        flush_interval=60.0,
        on_error=errors,
        transport=transport,
    )
    fake_humanloop.hang_next(1)
    hand_over(shipper, "dp-0")
    assert fake_humanloop.wait_for_arrivals(1)
    [thread] = flush_threads(before)

    assert not shipper.close(timeout=0.3)
    assert cut_off.wait(10.0)  # the hanging attempt was cut off, and its send waits to retry
    go_on.set()
    thread.join(10.0)

    assert not thread.is_alive()
    assert fake_humanloop.received == []
    assert len(fake_humanloop.requests) == 1
    assert dataclasses.astuple(shipper.stats())[1:7] == (0, 0, 0, 0, 1, 0)
    [error] = errors.of(DeliveryError)
    assert str(error) == (
        "gave up on feedback: the close deadline passed; 1 were in a request that did not end "
        "(1 record(s))"
    )


# -- 422 and 413 ------------------------------------------------------------------------------------


def test_422_removes_only_the_named_item_and_resends_the_rest(make: Make) -> None:
    """A 422 naming one item rejects that item alone; the others are resent at once."""
    rig = make()
    rig.fake.reject_data_ids("dp-bad")
    for data_id in ("dp-0", "dp-bad", "dp-2"):
        rig.send(data_id)

    assert rig.shipper.flush(5.0)

    assert [(r.status, r.item_count) for r in rig.fake.requests] == [(422, 3), (200, 2)]
    assert data_ids(rig.fake) == collections.Counter(["dp-0", "dp-2"])
    [error] = rig.errors.of(UnprocessableEntityError)
    assert error.status == 422
    assert [record["data_id"] for record, _ in error.rejected] == ["dp-bad"]
    assert any("not found" in reason for reason in error.rejected[0][1]), error.rejected
    assert any(entry.get("loc") == ["body", 1, "data_id"] for entry in error.details), error.details
    assert dataclasses.astuple(rig.stats()) == (3, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0)


def test_422_naming_several_items_rejects_each_once(make: Make) -> None:
    """A 422 naming two items rejects both, each reported, and the rest is sent in one request."""
    rig = make()
    rig.fake.reject_data_ids("dp-bad-a", "dp-bad-b")
    for data_id in ("dp-bad-a", "dp-1", "dp-2", "dp-bad-b"):
        rig.send(data_id)

    assert rig.shipper.flush(5.0)

    assert [(r.status, r.item_count) for r in rig.fake.requests] == [(422, 4), (200, 2)]
    rejected = rig.errors.of(UnprocessableEntityError)
    assert sorted(str(record["data_id"]) for e in rejected for record, _ in e.rejected) == [
        "dp-bad-a",
        "dp-bad-b",
    ]
    assert dataclasses.astuple(rig.stats()) == (4, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0)


def test_422_naming_no_item_is_bisected(make: Make) -> None:
    """A 422 that names no item splits the batch in halves until the halves go through."""
    rig = make()
    rig.fake.fail_next(2, 422, body={"detail": "bad"})
    for index in range(4):
        rig.send(f"dp-{index}")

    assert rig.shipper.flush(5.0)

    assert [r.item_count for r in rig.fake.requests] == [4, 2, 1, 1, 2]
    assert [r.status for r in rig.fake.requests] == [422, 422, 200, 200, 200]
    assert data_ids(rig.fake) == collections.Counter(f"dp-{index}" for index in range(4))
    assert dataclasses.astuple(rig.stats()) == (4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def test_unnamed_422_on_a_single_item_rejects_it(make: Make) -> None:
    """Bisection ends at one item: an unnamed 422 for it rejects it with the server's message."""
    rig = make()
    rig.fake.fail_next(1, 422, body={"detail": "bad thing"})
    rig.send("dp-1")

    assert rig.shipper.flush(5.0)

    [error] = rig.errors.of(UnprocessableEntityError)
    assert [record["data_id"] for record, _ in error.rejected] == ["dp-1"]
    assert "bad thing" in str(error)
    assert dataclasses.astuple(rig.stats()) == (1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0)


def test_413_is_bisected(make: Make) -> None:
    """A 413 splits the batch in halves, which are then sent."""
    rig = make()
    rig.fake.fail_next(1, 413)
    for index in range(4):
        rig.send(f"dp-{index}")

    assert rig.shipper.flush(5.0)

    assert [(r.status, r.item_count) for r in rig.fake.requests] == [(413, 4), (200, 2), (200, 2)]
    assert dataclasses.astuple(rig.stats()) == (4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0)


# -- errors that are not retried -----------------------------------------------------------------


def test_401_is_reported_once_not_once_per_batch(
    fake_humanloop: FakeHumanloop, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """With a refused key every batch fails, but AuthenticationError is reported a single time."""
    caplog.set_level(logging.WARNING, logger="humanloop_logging")
    rig = make(api_key="hl-wrong-key", batch_size=1)
    for index in range(3):
        rig.send(f"dp-{index}")
        assert rig.shipper.flush(5.0)

    assert [r.status for r in fake_humanloop.requests] == [401, 401, 401]
    [error] = rig.errors.of(AuthenticationError)
    assert error.status == 401
    assert rig.errors.errors == [error]
    assert len([r for r in caplog.records if r.name == "humanloop_logging"]) == 1
    assert dataclasses.astuple(rig.stats()) == (3, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0)


def test_401_says_how_many_records_it_dropped_and_what_becomes_of_later_ones(
    fake_humanloop: FakeHumanloop, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """The one report of a refused key counts the records of the refused request, says they are
    dropped rather than kept, and that every later record goes the same way: three records in
    one refused request are "3 records dropped", not "(1 record(s))"."""
    caplog.set_level(logging.WARNING, logger="humanloop_logging")
    rig = make(api_key="hl-wrong-key", batch_size=10, flush_interval=60.0)
    for index in range(3):
        rig.send(f"dp-{index}")
    assert rig.shipper.flush(5.0)
    rig.shipper.close(5.0)  # the flush thread has ended: its report is made, not on its way

    assert [(r.status, r.item_count) for r in fake_humanloop.requests] == [(401, 3)]
    [error] = rig.errors.of(AuthenticationError)
    assert error.count == 3
    assert str(error) == (
        f"{error.message}; 3 records dropped, not retried, and so is every record sent with this "
        "key until it is fixed (stats().failed counts each)"
    )
    [logged] = [r.getMessage() for r in caplog.records if r.name == "humanloop_logging"]
    assert logged == str(error)
    assert "hl-wrong-key" not in logged
    assert rig.stats().failed == 3


@pytest.mark.parametrize("status", [400, 404, 409])
def test_other_4xx_fail_at_once_with_the_servers_message(make: Make, status: int) -> None:
    """A 4xx other than 401/408/413/422/429 is not retried: failed, with the server's words."""
    rig = make()
    rig.fake.fail_next(1, status, body={"detail": f"server says no ({status})"})
    rig.send("dp-1")

    assert rig.shipper.flush(5.0)

    assert len(rig.fake.requests) == 1
    [error] = rig.errors.of(APIError)
    assert error.status == status
    assert f"server says no ({status})" in str(error)
    assert [record["data_id"] for record in error.records] == ["dp-1"]
    assert dataclasses.astuple(rig.stats()) == (1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0)


def test_on_error_that_raises_does_not_stop_delivery(make: Make) -> None:
    """A raising on_error callback is contained: later records are still sent."""
    calls: list[HumanloopLoggingError] = []

    def on_error(error: HumanloopLoggingError) -> None:
        calls.append(error)
        raise RuntimeError("callback bug")

    rig = make(on_error=on_error)
    rig.send("dp-bad", value=b"bytes")
    rig.send("dp-ok")

    assert rig.shipper.flush(5.0)
    assert len(calls) == 1
    assert data_ids(rig.fake) == collections.Counter(["dp-ok"])


# -- retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(make: Make, status: int) -> None:
    """408, 429 and the transient 5xx are sent again and then delivered."""
    rig = make()
    rig.fake.fail_next(1, status, retry_after=0)
    rig.send("dp-1")

    assert rig.shipper.flush(5.0)

    assert [r.status for r in rig.fake.requests] == [status, 200]
    assert dataclasses.astuple(rig.stats()) == (1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
    assert rig.errors.errors == []


def test_retry_without_retry_after_backs_off(make: Make) -> None:
    """Without Retry-After the retry waits a backoff: the first step, a quarter second plus up to
    half a second of jitter."""
    watched = Watched(make.fake, max_retry_time=10.0)
    rig = make(transport=watched)
    rig.fake.fail_next(1, 503)
    rig.send("dp-1")

    assert rig.shipper.flush(5.0)

    assert [r.status for r in rig.fake.requests] == [503, 200]
    [wait] = watched.waits
    assert 0.25 <= wait <= 0.75
    [gap] = gaps(rig.fake)
    assert gap >= 0.2  # and it was waited


def test_retry_after_is_honoured(make: Make) -> None:
    """A 429 with Retry-After: 0.8 is retried after 0.8 s (stretched by up to a fifth), longer
    than the first backoff step."""
    watched = Watched(make.fake, max_retry_time=10.0)
    rig = make(transport=watched)
    rig.fake.fail_next(1, 429, retry_after=0.8)
    rig.send("dp-1")

    assert rig.shipper.flush(5.0)

    assert [r.status for r in rig.fake.requests] == [429, 200]
    [wait] = watched.waits
    assert 0.8 <= wait <= 0.8 * (1 + RETRY_AFTER_SPREAD)
    [gap] = gaps(rig.fake)
    assert gap >= 0.78  # and it was waited


def test_retry_after_beyond_max_retry_time_gives_up_at_once(make: Make) -> None:
    """A Retry-After past the retry budget fails the batch now instead of waiting to fail."""
    watched = Watched(make.fake, max_retry_time=1.0)
    rig = make(max_retry_time=1.0, transport=watched)
    rig.fake.fail_next(1, 503, retry_after=30)
    rig.send("dp-1")

    assert rig.shipper.flush(5.0)

    assert watched.waits == []  # no wait began: given up on at the answer
    assert len(rig.fake.requests) == 1
    assert dataclasses.astuple(rig.stats()) == (1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0)
    [error] = rig.errors.of(APIError)
    assert error.status == 503


def test_retries_stop_within_max_retry_time(make: Make) -> None:
    """A server that keeps failing is given up on within max_retry_time: no wait is begun that
    would end past it, and the error says that this was the limit."""
    watched = Watched(make.fake, max_retry_time=0.8)
    rig = make(max_retry_time=0.8, transport=watched)
    rig.fake.fail_next(1000, 503)
    rig.send("dp-1")

    assert rig.shipper.flush(5.0)

    assert watched.waits
    assert sum(watched.waits) < 0.8
    [error] = rig.errors.of(APIError)
    assert "(max_retry_time)" in str(error)
    stats = rig.stats()
    assert (stats.sent, stats.failed) == (0, 1)
    assert stats.retried == len(rig.fake.requests) - 1 >= 1


def test_reset_connection_is_retried(make: Make) -> None:
    """A connection reset without an answer is retried and the record is delivered once."""
    rig = make()
    rig.fake.reset_next(1)
    rig.send("dp-1")

    assert rig.shipper.flush(5.0)

    assert [r.status for r in rig.fake.requests] == [0, 200]
    assert data_ids(rig.fake) == collections.Counter(["dp-1"])
    assert dataclasses.astuple(rig.stats()) == (1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)


def test_timeout_is_retried(make: Make) -> None:
    """A request unanswered for `timeout` seconds is abandoned and retried."""
    rig = make(timeout=0.3)
    rig.fake.hang_next(1)
    rig.send("dp-1")

    assert rig.shipper.flush(5.0)

    assert [r.status for r in rig.fake.requests] == [0, 200]
    assert data_ids(rig.fake) == collections.Counter(["dp-1"])
    assert dataclasses.astuple(rig.stats()) == (1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)


class SendAndCloseOnly:
    """A transport of the application's with only the two required methods of ``Transport``."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.closed = 0

    def send(self, body: bytes, records: Sequence[Any], control: SendControl) -> None:
        self.bodies.append(body)

    def close(self) -> None:
        self.closed += 1


def test_a_transport_needs_only_send_and_close() -> None:
    """``cut_off_at`` and ``reset_after_fork`` are optional hooks of ``Transport``: a transport
    without them sends, flushes and closes (close() used to fail on the missing hook)."""
    transport = SendAndCloseOnly()
    shipper = FeedbackShipper("hl-key", "http://127.0.0.1:9/v4", transport=transport)
    handler = FeedbackHandler(shipper=shipper)
    log = logging.getLogger("test_a_transport_needs_only_send_and_close")
    log.addHandler(handler)
    try:
        log.warning("fb", extra={"data_id": "d-1", "type": "rating", "value": "good"})
        assert shipper.flush(5.0)
        assert shipper.close(5.0)
    finally:
        log.removeHandler(handler)
    [[item]] = [json.loads(body) for body in transport.bodies]
    assert (item["data_id"], item["type"], item["value"]) == ("d-1", "rating", "good")
    assert transport.closed >= 1
    assert shipper.stats().sent == 1


#: How long the on_error below keeps a report open, unless flush() returns meanwhile.
REPORT_OPEN = 1.0


@pytest.mark.parametrize(
    "outcome",
    ["given up (400)", "rejected (422)", "refused before sending", "given up, blocking=True"],
)
def test_flush_returns_after_on_error_has_heard_of_it(make: Make, outcome: str) -> None:
    """flush() returns only once ``on_error`` has returned for what it waited for: a caller that
    flushes and then looks at what it was told has been told everything.

    The callback holds its report open for REPORT_OPEN seconds unless flush() returns first, and
    notes which came first: a flush() that returned on the count alone, before the report, is
    seen at once."""
    returned = threading.Event()
    flush_returned_first: list[bool] = []
    heard: list[HumanloopLoggingError] = []

    def on_error(error: HumanloopLoggingError) -> None:
        flush_returned_first.append(returned.wait(REPORT_OPEN))
        heard.append(error)

    rig = make(on_error=on_error, blocking=outcome.endswith("blocking=True"))
    if outcome == "rejected (422)":
        rig.fake.reject_data_ids("dp-1")
    elif outcome.startswith("given up"):
        rig.fake.fail_next(1, 400)
    if outcome == "refused before sending":
        rig.send("dp-1", value={"not": "a feedback value"})
    else:
        rig.send("dp-1")

    assert rig.shipper.flush(10.0)
    returned.set()

    assert flush_returned_first == [False]
    [error] = heard
    assert isinstance(error, DeliveryError) or outcome == "refused before sending"


@pytest.mark.parametrize("nested", [False, True], ids=["alone", "after logging feedback"])
def test_flush_from_on_error_on_the_logging_thread_does_not_wait_for_itself(
    make: Make, nested: bool
) -> None:
    """With ``blocking=True`` the report is made on the logging call's thread; a flush() from that
    on_error cannot wait for the report it is part of, and answers from the counts at once, also
    after the callback logged feedback that was refused and reported in turn."""
    flushed: list[bool] = []

    def on_error(error: HumanloopLoggingError) -> None:
        if isinstance(error, APIError):
            if nested:
                rig.send("dp-2", value={"not": "a feedback value"})  # reported inside this one
            flushed.append(rig.shipper.flush(2.0))

    rig = make(on_error=on_error, blocking=True)
    rig.fake.fail_next(1, 400)
    rig.send("dp-1")

    assert flushed == [True]
    assert rig.shipper.flush(10.0)
