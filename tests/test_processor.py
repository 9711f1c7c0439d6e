"""FeedbackProcessor: structlog events become feedback, alone or alongside the stdlib handler."""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Callable

import pytest
import structlog
from structlog.testing import LogCapture
from structlog.typing import EventDict, Processor, WrappedLogger
from support import own_logger

from humanloop_logging import (
    FeedbackHandler,
    FeedbackProcessor,
    FeedbackShipper,
    FeedbackValidationError,
)
from humanloop_logging.testing import ErrorLog, FakeHumanloop

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def errors() -> ErrorLog:
    return ErrorLog()


@pytest.fixture
def shipper(fake_humanloop: FakeHumanloop, errors: ErrorLog) -> Iterator[FeedbackShipper]:
    made = FeedbackShipper(
        api_key=fake_humanloop.api_key,
        base_url=fake_humanloop.base_url,
        flush_interval=60.0,
        on_error=errors,
    )
    yield made
    made.close()


@pytest.fixture
def capture() -> LogCapture:
    return LogCapture()


@pytest.fixture
def stdlib_logger() -> Iterator[logging.Logger]:
    """A stdlib logger of its own, at DEBUG, not propagating; handlers removed afterwards."""
    logger = own_logger()
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def use_structlog(processors: list[Processor]) -> None:
    structlog.configure(processors=processors, cache_logger_on_first_use=False)


def use_structlog_stdlib(processors: list[Processor]) -> None:
    structlog.configure(
        processors=processors,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def data_ids(fake: FakeHumanloop) -> list[str]:
    return [item["data_id"] for item in fake.received]


# -- on its own ---------------------------------------------------------------------------------


def test_feedback_event_is_sent_and_passed_on_unchanged(
    fake_humanloop: FakeHumanloop, shipper: FeedbackShipper, capture: LogCapture
) -> None:
    """An event with data_id and type is sent, and continues down the chain with every key."""
    use_structlog([FeedbackProcessor(shipper=shipper), capture])
    log = structlog.get_logger()

    log.info("thumbs", data_id="dp-1", type="rating", value="good", user="alice", extra_key=1)

    assert shipper.flush(5.0)
    [item] = fake_humanloop.received
    assert {key: item[key] for key in ("data_id", "type", "value", "user")} == {
        "data_id": "dp-1",
        "type": "rating",
        "value": "good",
        "user": "alice",
    }
    assert capture.entries == [
        {
            "event": "thumbs",
            "data_id": "dp-1",
            "type": "rating",
            "value": "good",
            "user": "alice",
            "extra_key": 1,
            "log_level": "info",
        }
    ]


def test_other_events_pass_through_and_are_not_sent(
    fake_humanloop: FakeHumanloop, shipper: FeedbackShipper, capture: LogCapture
) -> None:
    """Events without both data_id and type are untouched and never queued."""
    use_structlog([FeedbackProcessor(shipper=shipper), capture])
    log = structlog.get_logger()

    log.info("plain")
    log.info("only data_id", data_id="dp-1", value="good")
    log.info("only type", type="rating", value="good")

    assert shipper.flush(5.0)
    assert fake_humanloop.requests == []
    assert shipper.stats().enqueued == 0
    assert [entry["event"] for entry in capture.entries] == ["plain", "only data_id", "only type"]


def test_drop_true_ends_feedback_events_only(
    fake_humanloop: FakeHumanloop, shipper: FeedbackShipper, capture: LogCapture
) -> None:
    """With drop=True feedback events are sent but not rendered; other events still are."""
    use_structlog([FeedbackProcessor(shipper=shipper, drop=True), capture])
    log = structlog.get_logger()

    log.info("thumbs", data_id="dp-1", type="rating", value="good")
    log.info("plain")

    assert shipper.flush(5.0)
    assert data_ids(fake_humanloop) == ["dp-1"]
    assert [entry["event"] for entry in capture.entries] == ["plain"]


def test_created_at_defaults_to_the_moment_of_the_call(
    fake_humanloop: FakeHumanloop, shipper: FeedbackShipper, capture: LogCapture
) -> None:
    """Without created_at, the time of the log call is sent with a UTC offset."""
    use_structlog([FeedbackProcessor(shipper=shipper), capture])
    log = structlog.get_logger()

    before = time.time()
    log.info("thumbs", data_id="dp-1", type="rating", value="good")
    after = time.time()

    assert shipper.flush(5.0)
    [item] = fake_humanloop.received
    sent = datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))
    assert sent.utcoffset() is not None
    assert before - 1e-3 <= sent.timestamp() <= after + 1e-3


def test_explicit_created_at_is_used(
    fake_humanloop: FakeHumanloop, shipper: FeedbackShipper, capture: LogCapture
) -> None:
    """An event's own created_at (a datetime) is sent for the same instant."""
    use_structlog([FeedbackProcessor(shipper=shipper), capture])
    when = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)

    structlog.get_logger().info("x", data_id="dp-1", type="rating", value=4, created_at=when)

    assert shipper.flush(5.0)
    [item] = fake_humanloop.received
    assert datetime.fromisoformat(item["created_at"].replace("Z", "+00:00")) == when
    assert item["value"] == 4


def test_fields_and_default_user(
    fake_humanloop: FakeHumanloop, capture: LogCapture, errors: ErrorLog
) -> None:
    """fields= renames the keys read and default_user fills a missing user."""
    processor = FeedbackProcessor(
        api_key=fake_humanloop.api_key,
        base_url=fake_humanloop.base_url,
        flush_interval=60.0,
        fields={"type": "feedback_type", "value": "verdict"},
        default_user="svc",
        on_error=errors,
    )
    try:
        use_structlog([processor, capture])
        log = structlog.get_logger()
        log.info("renamed", data_id="dp-1", feedback_type="rating", verdict="bad")
        log.info("default keys", data_id="dp-2", type="rating", value="good")

        assert processor.flush(5.0)
        [item] = fake_humanloop.received
        assert (item["data_id"], item["type"], item["value"], item["user"]) == (
            "dp-1",
            "rating",
            "bad",
            "svc",
        )
        assert processor.stats().enqueued == 1
        assert errors.errors == []
    finally:
        processor.close()


def test_invalid_event_is_rejected_and_reported(
    fake_humanloop: FakeHumanloop, shipper: FeedbackShipper, capture: LogCapture, errors: ErrorLog
) -> None:
    """An event the API would refuse is rejected before batching and reported with its field."""
    use_structlog([FeedbackProcessor(shipper=shipper), capture])
    log = structlog.get_logger()

    log.info("bad", data_id="dp-bad", type="rating", value={"nested": True})
    log.info("good", data_id="dp-ok", type="rating", value="good")

    assert shipper.flush(5.0)
    assert data_ids(fake_humanloop) == ["dp-ok"]
    assert [error.field for error in errors.of(FeedbackValidationError)] == ["value"]
    stats = shipper.stats()
    assert (stats.enqueued, stats.sent, stats.rejected) == (2, 1, 1)


def test_list_value_is_captured_at_the_call(
    fake_humanloop: FakeHumanloop, shipper: FeedbackShipper, capture: LogCapture
) -> None:
    """Mutating a list value after the structlog call changes nothing that is sent."""
    use_structlog([FeedbackProcessor(shipper=shipper), capture])
    labels = ["a", "b"]

    structlog.get_logger().info("x", data_id="dp-1", type="issue", value=labels)
    labels.append("c")

    assert shipper.flush(5.0)
    assert fake_humanloop.received[0]["value"] == ["a", "b"]


def test_hostile_values_never_raise_from_the_call(
    fake_humanloop: FakeHumanloop, shipper: FeedbackShipper, capture: LogCapture, errors: ErrorLog
) -> None:
    """Objects whose __str__/__repr__/__eq__ raise are refused later, never raised at the call."""

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        __str__ = __repr__

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no eq")

        __hash__ = None  # type: ignore[assignment]

    use_structlog([FeedbackProcessor(shipper=shipper, drop=True)])
    structlog.get_logger().info("x", data_id=Hostile(), type="rating", value=Hostile())

    assert shipper.flush(5.0)
    assert fake_humanloop.requests == []
    assert len(errors.of(FeedbackValidationError)) == 1
    assert shipper.stats().rejected == 1


# -- routed on into stdlib logging --------------------------------------------------------------

Route = Callable[[WrappedLogger, str, EventDict], Any]

ROUTES: list[Any] = [
    pytest.param(structlog.stdlib.render_to_log_kwargs, id="render_to_log_kwargs"),
    pytest.param(structlog.stdlib.ProcessorFormatter.wrap_for_formatter, id="wrap_for_formatter"),
]


@pytest.mark.parametrize("route", ROUTES)
def test_handler_recognises_a_structlog_event_routed_to_stdlib(
    fake_humanloop: FakeHumanloop,
    shipper: FeedbackShipper,
    stdlib_logger: logging.Logger,
    route: Route,
) -> None:
    """Without a processor, the handler alone sends a structlog event routed into stdlib."""
    stdlib_logger.addHandler(FeedbackHandler(shipper=shipper))
    use_structlog_stdlib([route])
    log = structlog.get_logger(stdlib_logger.name)

    log.info("thumbs", data_id="dp-1", type="rating", value="good", user="alice")

    assert shipper.flush(5.0)
    [item] = fake_humanloop.received
    assert (item["data_id"], item["type"], item["value"], item["user"]) == (
        "dp-1",
        "rating",
        "good",
        "alice",
    )
    assert shipper.stats().enqueued == 1


@pytest.mark.parametrize("route", ROUTES)
def test_processor_and_handler_sharing_a_shipper_send_each_event_once(
    fake_humanloop: FakeHumanloop,
    shipper: FeedbackShipper,
    stdlib_logger: logging.Logger,
    route: Route,
) -> None:
    """An event shipped by the processor and then seen by the handler is sent exactly once."""
    stdlib_logger.addHandler(FeedbackHandler(shipper=shipper))
    use_structlog_stdlib([FeedbackProcessor(shipper=shipper), route])
    log = structlog.get_logger(stdlib_logger.name)

    for index in range(5):
        log.info("thumbs", data_id=f"dp-{index}", type="rating", value="good")
    stdlib_logger.info("plain", extra={"data_id": "dp-stdlib", "type": "rating", "value": "ok"})

    assert shipper.flush(5.0)
    assert sorted(data_ids(fake_humanloop)) == [
        "dp-0",
        "dp-1",
        "dp-2",
        "dp-3",
        "dp-4",
        "dp-stdlib",
    ]
    stats = shipper.stats()
    assert (stats.enqueued, stats.sent) == (6, 6)


def test_event_handled_on_a_queue_listener_thread_is_sent_once(
    fake_humanloop: FakeHumanloop,
    shipper: FeedbackShipper,
    stdlib_logger: logging.Logger,
) -> None:
    """Behind a QueueHandler/QueueListener the handler runs on another thread: still sent once."""
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, FeedbackHandler(shipper=shipper))
    stdlib_logger.addHandler(logging.handlers.QueueHandler(records))
    use_structlog_stdlib(
        [FeedbackProcessor(shipper=shipper), structlog.stdlib.render_to_log_kwargs]
    )
    listener.start()
    try:
        for index in range(3):
            structlog.get_logger(stdlib_logger.name).info(
                "x", data_id=f"dp-{index}", type="rating", value="good"
            )
    finally:
        listener.stop()

    assert shipper.flush(5.0)
    assert sorted(data_ids(fake_humanloop)) == ["dp-0", "dp-1", "dp-2"]
    assert shipper.stats().enqueued == 3


def test_equal_but_separate_stdlib_record_after_a_routed_event_is_still_sent(
    fake_humanloop: FakeHumanloop,
    shipper: FeedbackShipper,
    stdlib_logger: logging.Logger,
) -> None:
    """A later stdlib record with equal values is a new log call: sent, not taken for a duplicate."""
    stdlib_logger.addHandler(FeedbackHandler(shipper=shipper))
    use_structlog_stdlib(
        [FeedbackProcessor(shipper=shipper), structlog.stdlib.render_to_log_kwargs]
    )

    structlog.get_logger(stdlib_logger.name).info("x", data_id="dp-1", type="rating", value="a")
    stdlib_logger.info("y", extra={"data_id": "dp-1", "type": "rating", "value": "b"})

    assert shipper.flush(5.0)
    assert [item["value"] for item in fake_humanloop.received] == ["a", "b"]


def test_dropped_event_does_not_hide_a_later_stdlib_record(
    fake_humanloop: FakeHumanloop,
    shipper: FeedbackShipper,
    stdlib_logger: logging.Logger,
) -> None:
    """With drop=True on a stdlib-backed chain, a later stdlib record with the same ids is sent."""
    stdlib_logger.addHandler(FeedbackHandler(shipper=shipper))
    use_structlog_stdlib(
        [FeedbackProcessor(shipper=shipper, drop=True), structlog.stdlib.render_to_log_kwargs]
    )
    data_id, type_ = "dp-1", "rating"

    structlog.get_logger(stdlib_logger.name).info("x", data_id=data_id, type=type_, value="a")
    stdlib_logger.info("y", extra={"data_id": data_id, "type": type_, "value": "b"})

    assert shipper.flush(5.0)
    assert [item["value"] for item in fake_humanloop.received] == ["a", "b"]
    assert shipper.stats().enqueued == 2


def drop_every_event(_logger: WrappedLogger, _method: str, _event: EventDict) -> EventDict:
    """A processor after FeedbackProcessor that ends every event (a sampler, a filter)."""
    raise structlog.DropEvent


@pytest.mark.parametrize("route", ROUTES)
def test_event_dropped_by_a_later_processor_does_not_hide_a_later_stdlib_record(
    fake_humanloop: FakeHumanloop,
    shipper: FeedbackShipper,
    stdlib_logger: logging.Logger,
    route: Route,
) -> None:
    """An event a later processor drops never reaches stdlib: a stdlib record right after it, with
    the same data_id and type objects, is a call of its own and is sent."""
    stdlib_logger.addHandler(FeedbackHandler(shipper=shipper))
    use_structlog_stdlib([FeedbackProcessor(shipper=shipper), drop_every_event, route])
    data_id, type_ = "dp-1", "rating"

    structlog.get_logger(stdlib_logger.name).info("x", data_id=data_id, type=type_, value="a")
    stdlib_logger.info("y", extra={"data_id": data_id, "type": type_, "value": "b"})

    assert shipper.flush(5.0)
    assert [item["value"] for item in fake_humanloop.received] == ["a", "b"]
    assert shipper.stats().enqueued == 2


class Lines(logging.Handler):
    """Keeps what its formatter makes of each record."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class Extras(logging.Formatter):
    """Prints a record's extra attributes as JSON, as JSON formatters for stdlib logging do."""

    STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        extras = {key: value for key, value in vars(record).items() if key not in self.STANDARD}
        return json.dumps({"msg": record.getMessage(), **extras}, default=repr)


RENDERINGS: list[Any] = [
    pytest.param(
        [structlog.processors.JSONRenderer()], logging.Formatter("%(message)s"), id="JSONRenderer"
    ),
    pytest.param(
        [structlog.dev.ConsoleRenderer(colors=False)],
        logging.Formatter("%(message)s"),
        id="ConsoleRenderer",
    ),
    pytest.param([structlog.stdlib.render_to_log_kwargs], Extras(), id="render_to_log_kwargs"),
    pytest.param(
        [structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer()),
        id="wrap_for_formatter",
    ),
]


@pytest.mark.parametrize(("rest", "formatter"), RENDERINGS)
def test_the_event_renders_as_it_would_without_the_processor(
    fake_humanloop: FakeHumanloop,
    shipper: FeedbackShipper,
    stdlib_logger: logging.Logger,
    rest: list[Processor],
    formatter: logging.Formatter,
) -> None:
    """Whatever renders the event, structlog or stdlib logging, it shows no trace of the
    processor: the same text as without it."""
    lines = Lines(formatter)
    stdlib_logger.addHandler(lines)
    log = structlog.get_logger(stdlib_logger.name)
    with_processor: list[Processor] = [FeedbackProcessor(shipper=shipper), *rest]
    for processors in (rest, with_processor):
        use_structlog_stdlib(processors)
        log.info("thumbs", data_id="dp-1", type="rating", value="good")

    assert shipper.flush(5.0)
    assert len(fake_humanloop.received) == 1
    plain, processed = lines.lines
    assert processed == plain
    assert "dp-1" in plain


def test_event_filtered_out_by_stdlib_level_does_not_hide_a_later_record(
    fake_humanloop: FakeHumanloop,
    shipper: FeedbackShipper,
    stdlib_logger: logging.Logger,
) -> None:
    """An event the stdlib logger's level discards leaves nothing behind to suppress a later record."""
    stdlib_logger.addHandler(FeedbackHandler(shipper=shipper))
    stdlib_logger.setLevel(logging.WARNING)
    use_structlog_stdlib(
        [FeedbackProcessor(shipper=shipper), structlog.stdlib.render_to_log_kwargs]
    )
    data_id, type_ = "dp-1", "rating"

    structlog.get_logger(stdlib_logger.name).debug("x", data_id=data_id, type=type_, value="a")
    stdlib_logger.warning("y", extra={"data_id": data_id, "type": type_, "value": "b"})

    assert shipper.flush(5.0)
    assert [item["value"] for item in fake_humanloop.received] == ["a", "b"]
    assert shipper.stats().enqueued == 2
