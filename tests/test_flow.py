"""Requests in flight: the AIMD window, the order of feedback about one data_id, and both at work
in a shipper against the stand-in."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Collection, Iterator
from typing import Any

import pytest
from support import Rig, Rigs, flush_threads

from humanloop_logging._flow import Turns, Window
from humanloop_logging.testing import FakeHumanloop

pytestmark = pytest.mark.timeout(30)


def never() -> float:
    return math.inf


# -- the window ------------------------------------------------------------------------------------


def test_window_starts_open_and_halves_once_per_round() -> None:
    """It starts at the maximum; congestion seen by requests of one round halves it once."""
    window = Window(8)
    rounds = [window.acquire(never) for _ in range(8)]
    assert window.size == 8
    assert window.active == 8

    for seen in rounds:  # all eight meet the same 429
        window.congested(seen)

    assert window.size == 4


def test_a_request_that_keeps_failing_halves_again_down_to_one() -> None:
    """The same request failing again (nobody halved meanwhile) halves again, never below 1."""
    window = Window(8)
    seen = window.acquire(never)
    sizes = []
    for _ in range(5):
        seen = window.congested(seen)
        sizes.append(window.size)
    assert sizes == [4, 2, 1, 1, 1]


def test_window_grows_back_by_about_one_per_window_of_successes() -> None:
    """After a halving, each success adds 1/size: from 2, three successes reach 3, three more 4."""
    window = Window(4)
    window.congested(window.acquire(never))
    window.release()
    assert window.size == 2
    sizes = []
    for _ in range(6):
        window.succeeded()
        sizes.append(window.size)
    assert sizes == [2, 2, 3, 3, 3, 4]


def test_acquire_waits_for_a_release_beyond_the_window() -> None:
    """A request beyond the window waits until one in flight ends: it takes its permit only
    after the first one's is released."""
    window = Window(1)
    window.acquire(never)
    seen: list[int] = []  # requests in flight, each time the second acquire looks
    looked = threading.Event()

    def deadline() -> float:  # acquire asks for it each time it looks at the window
        seen.append(window.active)
        looked.set()
        return math.inf

    thread = threading.Thread(target=window.acquire, args=(deadline,))
    thread.start()
    assert looked.wait(5)
    window.release()
    thread.join(5)

    assert not thread.is_alive()
    assert seen[0] == 1  # it found the first in flight ...
    assert seen[-1] == 0  # ... and went only once that one was released
    assert window.active == 1


def test_acquire_gives_up_waiting_at_the_deadline() -> None:
    """A close's deadline ends the wait: the permit is taken and the send finds no time left."""
    window = Window(1)
    window.acquire(never)
    window.acquire(lambda: 0.0)  # a deadline in the past: no wait
    assert window.active == 2


# -- the order of feedback about one data_id -------------------------------------------------------


def test_a_batch_waits_only_for_earlier_batches_about_its_data_ids() -> None:
    """Turns are per data_id: a batch about other records goes at once."""
    cond = threading.Condition()
    turns = Turns(cond)
    with cond:  # the engine's lock, held by the engine around these calls
        first = turns.register(frozenset({"a", "b"}))
        second = turns.register(frozenset({"b", "c"}))
        third = turns.register(frozenset({"c", "d"}))
        other = turns.register(frozenset({"e"}))

        assert turns.mine(first)
        assert turns.mine(other)
        assert not turns.mine(second)
        assert not turns.mine(third)
        turns.done(first)
        assert turns.mine(second)
        assert not turns.mine(third)
        turns.done(second)
        assert turns.mine(third)


def test_a_chain_of_batches_about_one_data_id_goes_in_order() -> None:
    """Three batches about "a": each waits for the one before it, whatever finishes first."""
    turns = Turns(threading.Condition())
    first, second, third = (turns.register(frozenset({"a"})) for _ in range(3))
    assert [turns.mine(t) for t in (first, second, third)] == [True, False, False]
    turns.done(first)
    assert [turns.mine(t) for t in (second, third)] == [True, False]
    turns.done(second)
    assert turns.mine(third)


def test_a_written_off_batch_stops_waiting() -> None:
    """A batch waiting for its turn ends the wait when told to (a close wrote it off)."""
    cond = threading.Condition()
    turns = Turns(cond)
    turns.register(frozenset({"a"}))
    second = turns.register(frozenset({"a"}))
    assert turns.wait(second, until=lambda: True) is False


# -- in a shipper ----------------------------------------------------------------------------------


@pytest.fixture
def make(fake_humanloop: FakeHumanloop) -> Iterator[Rigs]:
    with Rigs(fake_humanloop, max_retry_time=20.0) as rigs:
        yield rigs
        fake_humanloop.clear()  # let hanging requests go


def in_flight(
    fake: FakeHumanloop, rig: Rig, expected: int, before: Collection[threading.Thread]
) -> int:
    """Log a backlog while the stand-in holds every request: how many requests reach it, once
    ``expected`` have (``before``: the flush threads there were before the rig's)."""
    fake.hang_next(10_000)
    # Batches of a backlog hold up to 5 batch sizes: enough for 8 of those.
    for n in range(40 * rig.shipper.settings.batch_size):
        rig.send(f"dp-{n}")
    assert fake.wait_for_arrivals(expected, timeout=10)
    # A flush thread has one request in flight at a time, and another starts only while the
    # window has room (docs/delivery.md). As many threads as held requests: each is in one of
    # them, and none is left to start another before one of them is answered.
    assert len(flush_threads(before)) == expected
    return len(fake.requests)


@pytest.mark.parametrize("max_in_flight", [1, 3, None], ids=["one", "three", "default-4"])
def test_requests_in_flight_are_bounded_by_max_in_flight(
    fake_humanloop: FakeHumanloop, make: Rigs, max_in_flight: Any
) -> None:
    """With a backlog, exactly max_in_flight requests (default 4) are in flight, never more;
    when they are answered, everything arrives once."""
    before = flush_threads()
    rig = make(batch_size=5, max_in_flight=max_in_flight)

    expected = max_in_flight or 4
    assert in_flight(fake_humanloop, rig, expected, before) == expected

    fake_humanloop.clear()  # the held requests are dropped, and sent again
    assert rig.shipper.flush(15)
    received = [item["data_id"] for item in fake_humanloop.received]
    assert sorted(received) == sorted(f"dp-{n}" for n in range(200))
    stats = rig.shipper.stats()
    assert (stats.sent, stats.failed, stats.pending) == (200, 0, 0)


def test_a_second_request_starts_only_for_more_than_one_request_carries(
    fake_humanloop: FakeHumanloop, make: Rigs
) -> None:
    """While a request is in flight, a full batch waiting starts no second request: against a
    fast service the first is back at once, and another thread would only share the GIL. A
    full request's worth (5 batch sizes) waiting does start one, and it carries all of it."""
    before = flush_threads()
    rig = make(batch_size=5, max_in_flight=4)
    fake_humanloop.hang_next(1)
    for n in range(5):
        rig.send(f"dp-{n}")
    assert fake_humanloop.wait_for_arrivals(1, timeout=10)

    for n in range(5, 29):  # 24 wait: more than four batches, less than one request
        rig.send(f"dp-{n}")
    # No second flush thread (docs/delivery.md), so none to send a second request: the one
    # thread is in the held request.
    assert len(flush_threads(before)) == 1
    assert fake_humanloop.arrivals == 1

    rig.send("dp-29")  # 25 wait
    assert fake_humanloop.wait_for_items(25, timeout=10)
    # The held request and one more, with all 25: none of them went before the 25th was logged.
    requests = fake_humanloop.requests
    assert [(r.status, r.item_count) for r in requests] == [(0, 5), (200, 25)]
    received = [item["data_id"] for item in fake_humanloop.received]

    fake_humanloop.clear()  # the held request is dropped, and sent again
    assert rig.shipper.flush(15)
    received += [item["data_id"] for item in fake_humanloop.received]
    assert sorted(received) == sorted(f"dp-{n}" for n in range(30))


def test_a_503_narrows_the_window_for_what_follows(
    fake_humanloop: FakeHumanloop, make: Rigs
) -> None:
    """After a 503, the next burst has half as many requests in flight (AIMD), not four."""
    before = flush_threads()
    rig = make(batch_size=1)
    fake_humanloop.fail_next(1, 503, retry_after=0.01)
    rig.send("dp-first")
    assert rig.shipper.flush(10)
    assert [r.status for r in fake_humanloop.requests] == [503, 200]
    fake_humanloop.clear()

    # 4 halved to 2, and one success since widens it by 1/2 only.
    assert in_flight(fake_humanloop, rig, 2, before) == 2


def test_feedback_about_one_data_id_is_never_reordered(
    fake_humanloop: FakeHumanloop, make: Rigs
) -> None:
    """An unset waits for the rating it unsets, even while that one's request hangs; feedback
    about other records goes past both meanwhile."""
    rig = make(batch_size=2, max_in_flight=4)
    fake_humanloop.hang_next(1)  # the first request, with the rating, hangs
    rig.send("dp-x", value="good")
    rig.send("dp-a")
    assert fake_humanloop.wait_for_arrivals(1, timeout=10)

    # Feedback about other records goes past the hanging request ...
    others = [f"dp-{n}" for n in range(8)]
    for data_id in others:
        rig.send(data_id)
    # flush() makes them due (and can only return False: the rating's request hangs).
    assert not rig.shipper.flush(0)
    assert fake_humanloop.wait_for_items(len(others), timeout=10)

    # ... but the unset waits for the rating to be answered.
    rig.send("dp-x", unset=True, value=None)
    assert not rig.shipper.flush(0)  # due now too
    received = {item["data_id"] for item in fake_humanloop.received}
    assert received == set(others)

    fake_humanloop.clear()  # the hanging request is dropped: the rating is sent again
    assert rig.shipper.flush(15)
    # An unset that had gone before the rating was answered would be missing here (what arrived
    # before clear() is forgotten), or come first.
    about_x = [item for item in fake_humanloop.received if item["data_id"] == "dp-x"]
    assert [item.get("unset") for item in about_x] == [None, True]
    assert rig.shipper.stats().sent == 11


def test_a_pause_the_service_asked_for_holds_back_new_requests() -> None:
    """After a 429 with Retry-After, no new request starts before the pause ends; then it does."""
    window = Window(4)
    asked = time.monotonic()
    window.pause(0.3)
    window.acquire(never)
    assert time.monotonic() >= asked + 0.3
    assert window.active == 1


def test_a_close_deadline_ends_a_pause() -> None:
    """A pause never holds a request past the close deadline."""
    window = Window(4)
    window.pause(3600)
    window.acquire(lambda: 0.0)
    assert window.active == 1


def test_while_narrowed_a_batch_waits_to_be_fuller(
    fake_humanloop: FakeHumanloop, make: Rigs
) -> None:
    """After a 503 halves the window (4 to 2), a batch is due at twice batch_size: a process
    behind a rate limit sends fewer, bigger requests."""
    rig = make(batch_size=5)
    fake_humanloop.fail_next(1, 503, retry_after=0.01)
    rig.send("dp-first")
    assert rig.shipper.flush(10)
    fake_humanloop.clear()

    for n in range(5):
        rig.send(f"dp-{n}")
    # One batch is not enough now: the five wait, unsent ...
    assert fake_humanloop.arrivals == 0
    assert rig.stats().pending == 5
    for n in range(5, 10):
        rig.send(f"dp-{n}")
    # ... for the five that make the batch due, and go with them.
    assert fake_humanloop.wait_for_items(10, timeout=10)
    assert [r.item_count for r in fake_humanloop.requests] == [10]
