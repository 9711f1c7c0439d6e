"""The ledger: every count of a shipper, and the only place any of them changes.

Each record handed to a shipper is, at any moment, in exactly one bucket: queued (in memory),
taken and unfinished (being validated or sent, or on disk), or finished as sent, rejected,
dropped or failed. ``finished`` is not a count of its own but the sum of the finished buckets,
so it cannot drift from them, and every change below moves records between buckets in one step.
The ledger holds no lock: the engine calls it with its lock held, and reads ``stats`` there too.

Epochs: a close that runs out of time writes off what is unfinished, sends in flight included,
and starts a new epoch; when such a send ends later its outcome belongs to the old epoch and is
not counted again (:meth:`Ledger.finish` returns False), so every record stays in one bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FeedbackStats", "Ledger"]


@dataclass(frozen=True)
class FeedbackStats:
    """Counters since the shipper started (or since fork, in a child).

    ``enqueued`` counts every record handed to the shipper, and each one is in exactly one of the
    other buckets at any moment: ``enqueued + replayed == sent + rejected + dropped + failed +
    filtered + withheld + pending``, where ``replayed`` counts what this process took over from the spool and
    ``spooled <= pending`` what waits there. ``retried`` counts requests sent again after a
    transient failure.
    """

    enqueued: int
    sent: int
    retried: int
    rejected: int
    dropped: int
    failed: int
    pending: int
    #: Of the pending, how many sit in the spool (0 without one).
    spooled: int = 0
    #: Records an earlier (or dead) process left in the spool that this one took over.
    replayed: int = 0
    #: Records ``before_send`` dropped (it returned None).
    filtered: int = 0
    #: Valid records not sent because the shipper is disabled (``enabled=False``).
    withheld: int = 0


class Ledger:
    """The counts, changed only by these methods (the engine's lock held)."""

    __slots__ = (
        "adopted",
        "dropped",
        "epoch",
        "evicted",
        "failed",
        "filtered",
        "flush_target",
        "rejected",
        "retried",
        "sent",
        "spooled",
        "taken",
        "unsaid",
        "withheld",
        "written_off",
    )

    def __init__(self) -> None:
        self.taken = 0  # records taken off the queue (or adopted from the spool)
        self.sent = 0
        self.retried = 0  # requests, not records
        self.rejected = 0
        self.dropped = 0  # the queue was full
        self.failed = 0
        self.filtered = 0  # before_send returned None
        self.withheld = 0  # valid, not sent: the shipper is disabled
        self.evicted = 0  # own rows the spool dropped over max_spool_bytes
        self.written_off = 0  # of the failed, those a deadline gave up on
        self.spooled = 0  # own rows unfinished, on disk or in flight from it
        self.adopted = 0  # rows taken over from other processes
        self.flush_target = 0  # flush() waits until this many taken are finished
        self.unsaid = 0  # finished records whose outcome is still being reported (see ``done``)
        self.epoch = 0

    @property
    def finished(self) -> int:
        """Taken records whose fate is settled."""
        return (
            self.sent + self.rejected + self.failed + self.evicted + self.filtered + self.withheld
        )

    @property
    def done(self) -> int:
        """Finished records whose outcome has been said too (``on_error`` called, the warning
        logged): what flush() waits for, so that it returns after the report, never before."""
        return self.finished - self.unsaid

    @property
    def unfinished(self) -> int:
        """Taken records being validated or sent; not those waiting on disk."""
        return self.taken - self.finished - self.spooled

    @property
    def flushing(self) -> bool:
        """A flush() waits for records not yet taken."""
        return self.taken < self.flush_target

    # -- into the books --------------------------------------------------------------------------

    def drop(self, count: int = 1) -> None:
        self.dropped += count

    def take(self, count: int) -> int:
        """Records leave the queue to be sent or written to disk; the epoch they belong to."""
        self.taken += count
        return self.epoch

    def retry(self) -> None:
        self.retried += 1

    # -- out of the books ------------------------------------------------------------------------

    def finish(
        self,
        epoch: int,
        *,
        sent: int = 0,
        rejected: int = 0,
        failed: int = 0,
        filtered: int = 0,
        withheld: int = 0,
        out_of_time: bool = False,
        from_disk: int = 0,
    ) -> bool:
        """Count an outcome of records taken in ``epoch``; False if a write-off already counted
        them. ``out_of_time``: a transient failure that a close's deadline ended.

        ``from_disk``: how many of them were rows of the spool. They leave ``spooled`` in the
        same step as they are counted, and whatever the epoch: a write-off leaves rows on disk,
        and in flight from it, alone.
        """
        self.spooled -= from_disk
        if epoch != self.epoch and not from_disk:
            return False
        self.sent += sent
        self.rejected += rejected
        self.failed += failed
        self.filtered += filtered
        self.withheld += withheld
        if out_of_time:
            self.written_off += failed
        return True

    def saying(self, count: int) -> None:
        """``count`` records just finished are being reported (outside the lock)."""
        self.unsaid += count

    def said(self, count: int) -> None:
        self.unsaid -= count

    def write_off(self, queued: int) -> int:
        """A deadline passed: take the ``queued`` records and fail everything unfinished, sends
        in flight included, in a new epoch. Returns how many were written off."""
        self.taken += queued
        unfinished = self.unfinished
        if unfinished <= 0:
            return 0
        self.failed += unfinished
        self.written_off += unfinished
        self.epoch += 1
        return unfinished

    # -- the spool -------------------------------------------------------------------------------

    def to_disk(self, written: int, lost: int) -> None:
        """``written`` records reached the disk, and the write evicted ``lost`` own rows that no
        send had in flight (they are dropped)."""
        self.spooled += written - lost
        self.evicted += lost

    def lost_from_disk(self, count: int) -> None:
        """Rows counted as spooled turned out to be gone (evicted while in flight, then not
        delivered; or by another process's eviction)."""
        self.spooled -= count
        self.evicted += count

    def upkeep(self, adopted: int, expired: int, on_disk: int) -> None:
        """The spool's upkeep: rows taken over, own rows expired (failed), and the number of own
        rows the spool really holds (``on_disk``, those in flight included): the difference to
        what was counted left without this process, by another's eviction."""
        self.adopted += adopted
        self.taken += adopted
        self.failed += expired
        self.spooled += adopted - expired
        if self.spooled > on_disk:
            self.evicted += self.spooled - on_disk
        self.spooled = on_disk

    # -- what it adds up to ----------------------------------------------------------------------

    def stats(self, queued: int) -> FeedbackStats:
        """A snapshot, with ``queued`` records still in memory."""
        return FeedbackStats(
            enqueued=self.taken - self.adopted + queued + self.dropped,
            sent=self.sent,
            retried=self.retried,
            rejected=self.rejected,
            dropped=self.dropped + self.evicted,
            failed=self.failed,
            pending=queued + self.taken - self.finished,
            spooled=self.spooled,
            replayed=self.adopted,
            filtered=self.filtered,
            withheld=self.withheld,
        )
