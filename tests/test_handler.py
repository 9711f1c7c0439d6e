"""FeedbackHandler: which stdlib records become feedback, with what fields, and on which thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import assert_consistent, feedback, flush_threads, own_logger

from humanloop_logging import (
    ConfigurationError,
    FeedbackHandler,
    FeedbackProcessor,
    FeedbackShipper,
    FeedbackStats,
    FeedbackValidationError,
    HumanloopLoggingError,
)
from humanloop_logging.testing import ErrorLog, FakeHumanloop

pytestmark = pytest.mark.timeout(30)


class Rigs:
    """Builds handlers on their own loggers; closes and detaches all of them at teardown."""

    def __init__(self, fake: FakeHumanloop) -> None:
        self.fake = fake
        self._made: list[tuple[logging.Logger, logging.Handler]] = []

    def attach(self, handler: logging.Handler) -> logging.Logger:
        logger = own_logger()
        logger.addHandler(handler)
        self._made.append((logger, handler))
        return logger

    def handler(self, **settings: Any) -> tuple[logging.Logger, FeedbackHandler]:
        options: dict[str, Any] = {
            "api_key": self.fake.api_key,
            "base_url": self.fake.base_url,
            "flush_interval": 60.0,
        }
        options.update(settings)
        handler = FeedbackHandler(**options)
        return self.attach(handler), handler

    def close(self) -> None:
        for logger, handler in reversed(self._made):
            logger.removeHandler(handler)
            handler.close()


@pytest.fixture
def rigs(fake_humanloop: FakeHumanloop) -> Iterator[Rigs]:
    made = Rigs(fake_humanloop)
    yield made
    made.close()


# -- recognition --------------------------------------------------------------------------------


def test_record_with_data_id_and_type_is_sent_with_its_fields(rigs: Rigs) -> None:
    """A record with data_id and type (via extra=) is sent with value, user and unset taken."""
    logger, handler = rigs.handler()
    logger.info(
        "thumbs up",
        extra={"data_id": "dp-1", "type": "rating", "value": "good", "user": "alice"},
    )
    logger.info("cleared", extra={"data_id": "dp-2", "type": "comment", "unset": True})

    assert handler.flush(5.0)

    first, second = rigs.fake.received
    assert {key: first[key] for key in ("data_id", "type", "value", "user")} == {
        "data_id": "dp-1",
        "type": "rating",
        "value": "good",
        "user": "alice",
    }
    assert (second["data_id"], second["type"], second["unset"]) == ("dp-2", "comment", True)
    assert "value" not in second
    stats = handler.stats()
    assert (stats.enqueued, stats.sent) == (2, 2)


def test_other_records_are_ignored(rigs: Rigs) -> None:
    """Records without both data_id and type are not feedback: nothing queued, nothing sent."""
    logger, handler = rigs.handler()
    logger.info("plain message")
    logger.info("only data_id", extra={"data_id": "dp-1", "value": "good"})
    logger.info("only type", extra={"type": "rating", "value": "good"})
    logger.warning("dict message %s", {"data_id": "dp-1", "type": "rating"})
    logger.error("a dict as msg", extra={"value": "good"})

    assert handler.flush(5.0)

    assert rigs.fake.requests == []
    assert handler.stats() == FeedbackStats(0, 0, 0, 0, 0, 0, 0)


def test_fields_renames_the_attributes_read(rigs: Rigs) -> None:
    """fields= maps feedback fields to other record attributes; the default names then mean nothing."""
    logger, handler = rigs.handler(
        fields={"type": "feedback_type", "data_id": "trace_id", "value": "verdict"}
    )
    logger.info("renamed", extra={"trace_id": "dp-1", "feedback_type": "rating", "verdict": "bad"})
    logger.info("default names", extra={"data_id": "dp-2", "type": "rating", "value": "good"})

    assert handler.flush(5.0)

    [item] = rigs.fake.received
    assert (item["data_id"], item["type"], item["value"]) == ("dp-1", "rating", "bad")
    assert handler.stats().enqueued == 1


def test_default_user_fills_user_only_when_missing(rigs: Rigs) -> None:
    """default_user is sent for records without user; a record's own user wins."""
    logger, handler = rigs.handler(default_user="service-account")
    feedback(logger, "dp-1")
    feedback(logger, "dp-2", user="alice")

    assert handler.flush(5.0)

    users = {item["data_id"]: item["user"] for item in rigs.fake.received}
    assert users == {"dp-1": "service-account", "dp-2": "alice"}


def test_level_filters_feedback_records(rigs: Rigs) -> None:
    """A handler with level=WARNING sends WARNING feedback and ignores INFO feedback."""
    logger, handler = rigs.handler(level=logging.WARNING)
    feedback(logger, "dp-info")
    logger.warning("warn", extra={"data_id": "dp-warn", "type": "issue", "value": "slow"})

    assert handler.flush(5.0)

    assert [item["data_id"] for item in rigs.fake.received] == ["dp-warn"]
    assert handler.stats().enqueued == 1


def test_handler_filters_are_applied(rigs: Rigs) -> None:
    """A filter added to the handler can keep a feedback record from being sent."""
    logger, handler = rigs.handler()
    handler.addFilter(lambda record: getattr(record, "data_id", None) != "dp-secret")
    feedback(logger, "dp-secret")
    feedback(logger, "dp-public")

    assert handler.flush(5.0)

    assert [item["data_id"] for item in rigs.fake.received] == ["dp-public"]


def test_records_logged_from_the_flush_thread_are_not_sent(rigs: Rigs) -> None:
    """Feedback logged by an on_error callback (on the flush thread) is ignored, so no loop."""
    reported = threading.Event()
    loggers: list[logging.Logger] = []

    def on_error(error: HumanloopLoggingError) -> None:
        feedback(loggers[0], "from-on-error")
        reported.set()

    handler = FeedbackHandler(
        api_key=rigs.fake.api_key,
        base_url=rigs.fake.base_url,
        flush_interval=60.0,
        on_error=on_error,
    )
    logger = rigs.attach(handler)
    loggers.append(logger)
    feedback(logger, "dp-bad", value={"not": "allowed"})

    assert handler.flush(5.0)
    assert reported.wait(5.0)
    assert handler.flush(5.0)

    assert rigs.fake.requests == []
    stats = handler.stats()
    assert (stats.enqueued, stats.rejected, stats.pending) == (1, 1, 0)


@pytest.mark.parametrize("spooled", [False, True], ids=["in-memory", "spool"])
def test_a_flush_from_on_error_returns_at_once(rigs: Rigs, tmp_path: Path, spooled: bool) -> None:
    """on_error runs on the thread that sends (with a spool, the send thread), which is known as
    the shipper's own there: a flush() there returns False at once instead of waiting for the
    very thread it runs on."""
    flushed: list[bool] = []
    handlers: list[FeedbackHandler] = []

    def on_error(error: HumanloopLoggingError) -> None:
        flushed.append(handlers[0].flush(5.0))

    spool = {"spool_path": str(tmp_path / "feedback.db")} if spooled else {}
    logger, handler = rigs.handler(on_error=on_error, **spool)
    handlers.append(handler)
    rigs.fake.fail_next(1, 400)
    feedback(logger, "dp-1")

    assert handler.flush(3.0)  # not held up by a callback waiting 5 s
    assert flushed == [False]
    assert handler.stats().failed == 1


def test_feedback_from_threads_started_after_a_close_is_sent(rigs: Rigs) -> None:
    """A thread ident is reused once its thread ends: an application thread started after a
    close may get the ident the flush thread had, and its feedback is still the application's."""
    logger, handler = rigs.handler()
    feedback(logger, "dp-main")
    handler.close()
    for index in range(5):
        thread = threading.Thread(target=feedback, args=(logger, f"dp-{index}"))
        thread.start()
        thread.join()
        handler.close()

    assert sorted(item["data_id"] for item in rigs.fake.received) == [
        "dp-0",
        "dp-1",
        "dp-2",
        "dp-3",
        "dp-4",
        "dp-main",
    ]
    stats = handler.stats()
    assert (stats.enqueued, stats.sent) == (6, 6)
    assert_consistent(stats)


# -- sharing, flushing, closing -----------------------------------------------------------------


def test_handler_and_processor_with_one_shipper_share_queue_and_thread(
    fake_humanloop: FakeHumanloop,
) -> None:
    """Given one shipper, handler and processor add no thread and their records share a batch."""
    before = len(flush_threads())
    shipper = FeedbackShipper(
        api_key=fake_humanloop.api_key, base_url=fake_humanloop.base_url, flush_interval=60.0
    )
    logger = own_logger()
    try:
        handler = FeedbackHandler(shipper=shipper)
        processor = FeedbackProcessor(shipper=shipper)
        logger.addHandler(handler)
        feedback(logger, "from-handler")
        for data_id in ("p1", "p2"):
            event = {"event": "x", "data_id": data_id, "type": "rating", "value": "good"}
            processor(None, "info", event)
        assert len(flush_threads()) == before + 1

        assert handler.flush(5.0)

        assert [r.item_count for r in fake_humanloop.requests] == [3]
        assert shipper.stats().enqueued == 3
        assert handler.stats() == processor.stats() == shipper.stats()
    finally:
        logger.removeHandler(handler)
        handler.close()
        processor.close()
        shipper.close()


def test_closing_a_handler_leaves_a_shared_shipper_running(fake_humanloop: FakeHumanloop) -> None:
    """close() on a handler that was given a shipper does not close that shipper."""
    shipper = FeedbackShipper(
        api_key=fake_humanloop.api_key, base_url=fake_humanloop.base_url, flush_interval=60.0
    )
    logger = own_logger()
    try:
        first = FeedbackHandler(shipper=shipper)
        first.close()
        second = FeedbackHandler(shipper=shipper)
        logger.addHandler(second)
        feedback(logger, "dp-1")

        assert second.flush(5.0)
        assert [item["data_id"] for item in fake_humanloop.received] == ["dp-1"]
    finally:
        logger.removeHandler(second)
        second.close()
        shipper.close()


def test_close_drains_and_is_safe_twice(rigs: Rigs) -> None:
    """close() sends what is queued and stops the thread; a second close() is harmless."""
    logger, handler = rigs.handler()
    for index in range(3):
        feedback(logger, f"dp-{index}")

    handler.close()
    handler.close()

    assert sorted(item["data_id"] for item in rigs.fake.received) == ["dp-0", "dp-1", "dp-2"]
    stats = handler.stats()
    assert (stats.enqueued, stats.sent, stats.pending) == (3, 3, 0)


def test_logging_after_close_is_delivered(rigs: Rigs) -> None:
    """A feedback record logged after close() is sent, as FileHandler reopens its file."""
    logger, handler = rigs.handler()
    handler.close()

    feedback(logger, "late")
    assert handler.flush(5.0)

    stats = handler.stats()
    assert (stats.enqueued, stats.dropped, stats.sent) == (1, 0, 1)
    assert_consistent(stats)
    assert [item["data_id"] for item in rigs.fake.received] == ["late"]


def test_a_close_under_logging_lock_does_not_wait(rigs: Rigs) -> None:
    """close() and flush() called with logging's module lock held (dictConfig) return at once
    and keep the shipper running: waiting could only deadlock with the flush thread."""
    logger, handler = rigs.handler(flush_interval=60.0)
    feedback(logger, "queued")
    rigs.fake.hang_next(1)
    with logging._lock:  # type: ignore[attr-defined]
        assert not handler.flush()
        handler.close()
        # Still running: the hanging request holds the flush thread, nothing was given up.
        assert handler.stats().failed == 0
    rigs.fake.clear()
    feedback(logger, "after")
    assert handler.flush(15.0)
    assert sorted(item["data_id"] for item in rigs.fake.received) == ["after", "queued"]


def test_a_configuration_error_leaves_no_handler_behind() -> None:
    """A bad setting raises before the handler joins logging's list, so shutdown() never sees a
    half-built handler."""
    import weakref

    before = list(logging._handlerList)  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError) as raised:  # its traceback keeps the frames alive
        FeedbackHandler(api_key="k", base_url="not a url")
    after = [ref for ref in logging._handlerList if ref not in before]  # type: ignore[attr-defined]
    assert [ref() for ref in after if isinstance(ref, weakref.ref) and ref() is not None] == []
    assert "base_url" in str(raised.value)


# -- blocking mode ------------------------------------------------------------------------------


def test_blocking_mode_sends_before_the_log_call_returns(rigs: Rigs) -> None:
    """With blocking=True the item is at the server when the logging call returns; no thread."""
    before = len(flush_threads())
    logger, handler = rigs.handler(blocking=True)
    assert len(flush_threads()) == before

    feedback(logger, "dp-1")

    assert [item["data_id"] for item in rigs.fake.received] == ["dp-1"]
    stats = handler.stats()
    assert (stats.enqueued, stats.sent, stats.pending) == (1, 1, 0)
    assert rigs.fake.requests[0].item_count == 1
    assert rigs.fake.requests[0].batch


def test_blocking_close_waits_for_the_send_in_flight(rigs: Rigs) -> None:
    """close() in blocking mode waits for a send still running on another thread, instead of
    writing off records the server is about to accept."""
    logger, handler = rigs.handler(blocking=True, exit_timeout=30.0)
    rigs.fake.set_latency(1.0)
    caller = threading.Thread(target=feedback, args=(logger, "in-flight"))
    caller.start()
    try:
        assert rigs.fake.wait_for_arrivals(1)
        assert handler.shipper.close()
    finally:
        caller.join(30.0)
    stats = handler.stats()
    assert (stats.sent, stats.failed, stats.pending) == (1, 0, 0)
    assert [item["data_id"] for item in rigs.fake.received] == ["in-flight"]


def test_blocking_mode_retries_on_the_callers_thread(rigs: Rigs) -> None:
    """In blocking mode a 503 is retried before the call returns, through the same retry path."""
    logger, handler = rigs.handler(blocking=True, max_retry_time=5.0)
    rigs.fake.fail_next(1, 503, retry_after=0)

    feedback(logger, "dp-1")

    assert [r.status for r in rigs.fake.requests] == [503, 200]
    assert [item["data_id"] for item in rigs.fake.received] == ["dp-1"]
    stats = handler.stats()
    assert (stats.sent, stats.retried) == (1, 1)


def test_blocking_mode_reports_invalid_records_at_once(rigs: Rigs) -> None:
    """In blocking mode an invalid record is rejected and reported before the call returns."""
    errors = ErrorLog()
    logger, handler = rigs.handler(blocking=True, on_error=errors)

    feedback(logger, "dp-1", value=float("nan"))

    refused = errors.of(FeedbackValidationError)
    assert [error.field for error in refused] == ["value"]
    stats = handler.stats()
    assert (stats.enqueued, stats.rejected) == (1, 1)
    assert rigs.fake.requests == []
