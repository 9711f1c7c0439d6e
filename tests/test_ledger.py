"""The ledger and the batching decisions as plain code: no threads, sockets or clocks.

A hypothesis state machine plays the engine: records are submitted (or dropped when the queue is
full), taken in batches, answered, written to and evicted from a spool, claimed from it, kept on
it through an outage, written off by a close, and forgotten by a fork. After every step the
counters must balance, ``enqueued + replayed == sent + rejected + dropped + failed + filtered +
withheld + pending``, none may be negative, and they must say what is true of the model: how many
records wait in memory, on disk and in requests still counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from support import assert_consistent

from humanloop_logging import _batching as batching
from humanloop_logging._ledger import Ledger
from humanloop_logging._spool_sender import outage_wait

MAX_QUEUE = 50


@dataclass
class Batch:
    """Records in flight: ``count`` of them, taken in ``epoch``; ``rows`` of them from the spool,
    and of those, ``gone`` evicted from the disk meanwhile."""

    count: int
    epoch: int
    rows: int = 0
    gone: int = 0


class Engine(RuleBasedStateMachine):
    """What the engine does to the ledger, rule by rule, as its code does it."""

    def __init__(self) -> None:
        super().__init__()
        self.books = Ledger()
        self.queued = 0
        self.in_flight: list[Batch] = []
        self.on_disk = 0  # own rows on disk, not in flight

    # -- the caller's path ---------------------------------------------------------------------

    @rule(n=st.integers(1, 20))
    def submit(self, n: int) -> None:
        room = MAX_QUEUE - self.queued
        self.queued += min(n, room)
        self.books.drop(max(0, n - room))

    # -- memory -------------------------------------------------------------------------------

    @precondition(lambda self: self.queued > 0)
    @rule(data=st.data())
    def take(self, data: st.DataObject) -> None:
        count = data.draw(st.integers(1, self.queued))
        self.queued -= count
        self.in_flight.append(Batch(count, self.books.take(count)))

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        """A request ends: accepted, partly rejected, or given up on (or, before it, records
        were dropped by before_send or withheld by a disabled shipper). Rows from the spool leave
        it as they are counted, whatever a close wrote off meanwhile (it leaves them alone)."""
        batch = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        sent = data.draw(st.integers(0, batch.count))
        rejected = data.draw(st.integers(0, batch.count - sent))
        filtered = data.draw(st.integers(0, batch.count - sent - rejected))
        withheld = data.draw(st.integers(0, batch.count - sent - rejected - filtered))
        failed = batch.count - sent - rejected - filtered - withheld
        counted = self.books.finish(
            batch.epoch,
            sent=sent,
            rejected=rejected,
            failed=failed,
            filtered=filtered,
            withheld=withheld,
            out_of_time=failed > 0,
            from_disk=batch.rows,
        )
        assert counted == (batch.epoch == self.books.epoch or batch.rows > 0)

    @rule()
    def close_deadline_passes(self) -> None:
        """What is queued and what is in flight is written off; late answers no longer count.
        Rows on disk stay there (and in the counts)."""
        before = self.books.failed
        written_off = self.books.write_off(self.queued)
        assert self.books.failed - before == written_off
        self.queued = 0

    # -- the spool ----------------------------------------------------------------------------

    @precondition(lambda self: self.queued > 0)
    @rule(data=st.data())
    def to_disk(self, data: st.DataObject) -> None:
        """The writer moves records to disk; the write evicts the oldest rows, some of them
        perhaps in flight (those are settled by their answer, not lost)."""
        count = data.draw(st.integers(1, self.queued))
        self.queued -= count
        self.books.take(count)
        rows = self.on_disk + count
        lost = data.draw(st.integers(0, rows))
        for batch in self.in_flight:
            if batch.rows > batch.gone and data.draw(st.booleans()):
                batch.gone += 1
        self.on_disk = rows - lost
        self.books.to_disk(count, lost)

    @precondition(lambda self: self.on_disk > 0)
    @rule(data=st.data())
    def claim(self, data: st.DataObject) -> None:
        count = data.draw(st.integers(1, self.on_disk))
        self.on_disk -= count
        self.in_flight.append(Batch(count, self.books.epoch, rows=count))

    @precondition(lambda self: any(batch.rows for batch in self.in_flight))
    @rule(data=st.data())
    def keep_on_disk(self, data: st.DataObject) -> None:
        """An outage outlasted the retries: the rows go back to the disk to be tried later;
        those evicted meanwhile are lost after all."""
        spooled = [batch for batch in self.in_flight if batch.rows]
        batch = data.draw(st.sampled_from(spooled))
        self.in_flight.remove(batch)
        self.on_disk += batch.rows - batch.gone
        self.books.lost_from_disk(batch.gone)

    @rule(data=st.data())
    def upkeep(self, data: st.DataObject) -> None:
        """Rows taken over from a dead process, own rows expired, and the real count of own rows
        (another process's eviction may have taken some)."""
        adopted = data.draw(st.integers(0, 10))
        self.on_disk += adopted
        expired = data.draw(st.integers(0, self.on_disk))
        self.on_disk -= expired
        taken_by_others = data.draw(st.integers(0, self.on_disk))
        self.on_disk -= taken_by_others
        in_flight_rows = sum(batch.rows for batch in self.in_flight)
        self.books.upkeep(adopted, expired, self.on_disk + in_flight_rows)

    @rule()
    def fork(self) -> None:
        """A forked child starts with fresh books; the parent's records are the parent's."""
        self.books = Ledger()
        self.queued = 0
        self.in_flight = []
        self.on_disk = 0

    # -- after every step ---------------------------------------------------------------------

    @invariant()
    def balanced_and_never_negative(self) -> None:
        stats = self.books.stats(self.queued)
        assert_consistent(stats)
        assert 0 <= stats.spooled <= stats.pending, stats
        assert self.books.unfinished >= 0
        # And they say what is true: what waits in memory, on disk and in live requests.
        live = [b for b in self.in_flight if b.rows or b.epoch == self.books.epoch]
        assert stats.pending == self.queued + sum(b.count for b in live) + self.on_disk, stats
        assert stats.spooled == self.on_disk + sum(b.rows for b in self.in_flight), stats


Engine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestLedgerThroughEverythingTheEngineDoes = Engine.TestCase


def test_finished_is_the_sum_of_its_buckets() -> None:
    """Nothing counts finished records on its own: they are sent, rejected, failed, evicted,
    filtered or withheld."""
    books = Ledger()
    epoch = books.take(12)
    assert books.finish(epoch, sent=4, rejected=3, failed=2, filtered=1, withheld=1)
    assert books.finished == 11
    assert books.stats(queued=5).pending == 6


def test_a_write_off_ends_the_epoch_of_what_was_in_flight() -> None:
    books = Ledger()
    old = books.take(3)
    assert books.write_off(queued=2) == 5
    assert not books.finish(old, sent=3)  # its answer came after the close gave up on it
    assert (books.sent, books.failed, books.written_off) == (0, 5, 5)
    assert books.finish(books.take(1), sent=1)


# -- batching ---------------------------------------------------------------------------------


def test_a_batch_is_full_at_batch_size_times_the_narrowing_up_to_a_backlog() -> None:
    assert batching.full(100, 500, max_in_flight=4, window=4) == 100
    assert batching.full(100, 500, max_in_flight=4, window=2) == 200
    assert batching.full(100, 500, max_in_flight=4, window=1) == 400
    assert batching.full(100, 300, max_in_flight=4, window=1) == 300


def test_a_batch_is_due_when_full_or_when_a_close_or_flush_waits() -> None:
    assert batching.due(100, 100, hurry=False)
    assert not batching.due(99, 100, hurry=False)
    assert batching.due(1, 100, hurry=True)


def test_a_helper_is_called_for_by_a_full_request_or_a_hurry() -> None:
    assert batching.backlog(500, 500, hurry=False)
    assert not batching.backlog(499, 500, hurry=False)
    assert batching.backlog(1, 500, hurry=True)
    assert not batching.backlog(0, 500, hurry=True)


def test_a_request_takes_a_batch_or_a_backlog_up_to_its_limit() -> None:
    assert batching.take(30, 100, 500) == 30
    assert batching.take(100, 100, 500) == 100
    assert batching.take(101, 100, 500) == 101
    assert batching.take(2000, 100, 500) == 500


def test_a_batch_waits_until_its_oldest_record_is_flush_interval_old() -> None:
    assert batching.wait_to_fill(oldest=100.0, now=100.5, flush_interval=1.0) == 0.5
    assert batching.wait_to_fill(oldest=100.0, now=101.5, flush_interval=1.0) < 0
    # A wall clock stepped back never makes a batch wait longer than flush_interval.
    assert batching.wait_to_fill(oldest=100.0, now=50.0, flush_interval=1.0) == 1.0


def test_rows_kept_through_an_outage_wait_a_second_doubling_to_a_minute() -> None:
    waits = [0.0]
    for _ in range(8):
        waits.append(outage_wait(waits[-1]))
    assert waits[1:] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
