"""FeedbackSink: which loguru messages become feedback, with what fields, on which thread, and
how loguru's own lifecycle (enqueue, complete, remove, exit) drives it."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest
from loguru import logger
from support import (
    ROOT,
    assert_consistent,
    child_env,
    flush_threads,
    humanloop_env,
    own_logger,
    wait_until,
)

from humanloop_logging import (
    ConfigurationError,
    FeedbackHandler,
    FeedbackShipper,
    FeedbackSink,
    FeedbackStats,
    FeedbackValidationError,
    HumanloopLoggingError,
)
from humanloop_logging.testing import ErrorLog, FakeHumanloop

if TYPE_CHECKING:
    from loguru import Logger

pytestmark = pytest.mark.timeout(30)

SECRET = "hl-secret-loguru-123"


class Sinks:
    """Builds sinks against the stand-in and adds them to loguru's logger, which has no other
    sink during the test; at teardown removes them, closes every sink and gives loguru back its
    default stderr sink."""

    def __init__(self, fake: FakeHumanloop) -> None:
        self.fake = fake
        self.errors = ErrorLog()
        self._made: list[FeedbackSink] = []

    def sink(self, **settings: Any) -> FeedbackSink:
        options: dict[str, Any] = {
            "api_key": self.fake.api_key,
            "base_url": self.fake.base_url,
            "flush_interval": 60.0,
            "on_error": self.errors,
        }
        options.update(settings)
        made = FeedbackSink(**options)
        self._made.append(made)
        return made

    def add(self, enqueue: bool = False, **settings: Any) -> tuple[int, FeedbackSink]:
        made = self.sink(**settings)
        return logger.add(made, level="INFO", enqueue=enqueue), made

    def close(self) -> None:
        logger.remove()
        for made in self._made:
            made.close()
        logger.add(sys.stderr)


@pytest.fixture
def sinks(fake_humanloop: FakeHumanloop) -> Iterator[Sinks]:
    logger.remove()
    made = Sinks(fake_humanloop)
    yield made
    made.close()


def fields(item: dict[str, Any], *names: str) -> tuple[Any, ...]:
    return tuple(item.get(name) for name in names)


# -- recognition --------------------------------------------------------------------------------


@pytest.mark.parametrize("enqueue", [False, True], ids=["direct", "enqueue"])
def test_keyword_arguments_and_bound_fields_are_sent(sinks: Sinks, enqueue: bool) -> None:
    """A call's keyword arguments and bind()/contextualize() fields are read from extra, in both
    of loguru's modes."""
    _, sink = sinks.add(enqueue=enqueue)
    logger.info("user rated", data_id="dp-1", type="rating", value="good", user="alice")
    logger.bind(data_id="dp-2").info("copied", type="action", value="copy")
    with logger.contextualize(data_id="dp-3"):
        logger.info("cleared", type="rating", unset=True)
    logger.complete()

    assert sink.flush(5.0)

    assert [fields(item, "data_id", "type", "value", "user") for item in sinks.fake.received] == [
        ("dp-1", "rating", "good", "alice"),
        ("dp-2", "action", "copy", None),
        ("dp-3", "rating", None, None),
    ]
    assert sinks.fake.received[2]["unset"] is True
    stats = sink.stats()
    assert (stats.enqueued, stats.sent) == (3, 3)
    assert sinks.errors.errors == []


def test_untagged_messages_pass_untouched_and_are_not_sent(sinks: Sinks) -> None:
    """Messages without both data_id and type in extra are not feedback; other sinks still get
    every message."""
    _, sink = sinks.add()
    seen: list[str] = []
    logger.add(lambda message: seen.append(message.record["message"]), level="INFO")
    logger.info("plain message")
    logger.info("only data_id", data_id="dp-1", value="good")
    logger.bind(type="rating").info("only type")
    logger.info("format arguments {}", {"data_id": "dp-1", "type": "rating"})
    logger.debug("below the sink's level", data_id="dp-1", type="rating")

    assert sink.flush(5.0)

    assert sinks.fake.requests == []
    assert sink.stats() == FeedbackStats(0, 0, 0, 0, 0, 0, 0)
    assert len(seen) == 4


def test_the_timestamp_is_the_records_time(sinks: Sinks) -> None:
    """created_at is the time loguru gave the record at the call, not when the sink ran."""
    _, sink = sinks.add(enqueue=True)
    times: list[datetime] = []
    logger.add(lambda message: times.append(message.record["time"]), level="INFO")
    logger.info("rated", data_id="dp-1", type="rating", value="good")
    logger.complete()

    assert sink.flush(5.0)

    [item] = sinks.fake.received
    sent = datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))
    assert abs(sent - times[0].astimezone(timezone.utc)).total_seconds() < 2e-6


def test_fields_renames_the_keys_read(sinks: Sinks) -> None:
    """fields= maps feedback fields to other extra keys; the default names then mean nothing."""
    _, sink = sinks.add(fields={"data_id": "trace_id", "type": "kind", "value": "verdict"})
    logger.bind(trace_id="dp-1").info("renamed", kind="rating", verdict="bad")
    logger.info("default names", data_id="dp-2", type="rating", value="good")

    assert sink.flush(5.0)

    assert [fields(item, "data_id", "type", "value") for item in sinks.fake.received] == [
        ("dp-1", "rating", "bad")
    ]
    assert sink.stats().enqueued == 1


def test_a_list_value_is_captured_at_the_call(sinks: Sinks) -> None:
    """Mutating a list value after the call changes nothing that is sent."""
    _, sink = sinks.add()
    labels = ["hallucination"]
    logger.info("flagged", data_id="dp-1", type="issue", value=labels)
    labels.append("rude")

    assert sink.flush(5.0)
    assert sinks.fake.received[0]["value"] == ["hallucination"]


# -- bad input ----------------------------------------------------------------------------------


def test_invalid_records_are_counted_and_reported(sinks: Sinks) -> None:
    """A record the API would refuse is rejected before batching and reported with its field,
    as FeedbackHandler's are; the others are sent."""
    _, sink = sinks.add()
    logger.info("bad", data_id="dp-bad", type="rating", value={"stars": 5})
    logger.info("good", data_id="dp-ok", type="rating", value="good")

    assert sink.flush(5.0)

    assert [item["data_id"] for item in sinks.fake.received] == ["dp-ok"]
    assert [error.field for error in sinks.errors.of(FeedbackValidationError)] == ["value"]
    stats = sink.stats()
    assert (stats.enqueued, stats.sent, stats.rejected) == (2, 1, 1)
    assert_consistent(stats)


def test_a_capture_that_raises_is_counted_and_reported_not_raised(
    sinks: Sinks, capfd: pytest.CaptureFixture[str]
) -> None:
    """A record the sink cannot read (a patcher broke its time) is counted, refused and reported
    through on_error; loguru never sees an exception from the sink."""
    sink = sinks.sink()
    logger.add(sink, level="INFO", format="{message}", catch=False)
    broken = logger.patch(lambda record: record.update(time=None))  # type: ignore[call-arg]
    broken.info("rated", data_id="dp-1", type="rating", value="good")

    assert sink.flush(5.0)

    assert sinks.fake.requests == []
    [refused] = sinks.errors.of(FeedbackValidationError)
    assert "capture raised AttributeError" in str(refused)
    stats = sink.stats()
    assert (stats.enqueued, stats.rejected) == (1, 1)
    assert "Logging error in Loguru Handler" not in capfd.readouterr().err


def test_bad_settings_raise_a_clear_error() -> None:
    """A bad setting, or settings beside a shared shipper, raise ConfigurationError at once."""
    with pytest.raises(ConfigurationError, match="base_url"):
        FeedbackSink(api_key="k", base_url="not a url")
    shipper = FeedbackShipper(api_key="k", base_url="http://127.0.0.1:9/v4")
    try:
        with pytest.raises(ConfigurationError, match="either shipper= or settings"):
            FeedbackSink(shipper=shipper, batch_size=10)
        with pytest.raises(ConfigurationError, match="fields"):
            FeedbackSink(shipper=shipper, fields={"typo": "x"})
    finally:
        shipper.close()


# -- the library's own threads ------------------------------------------------------------------


@pytest.mark.parametrize("enqueue", [False, True], ids=["direct", "enqueue"])
def test_feedback_logged_by_on_error_is_not_sent(sinks: Sinks, enqueue: bool) -> None:
    """Feedback an on_error callback logs through loguru (on the flush thread) is not sent, so a
    failure cannot loop: known by the thread's mark, or with enqueue=True, where loguru's writer
    thread runs the sink, by the thread the message was logged on."""
    reported = threading.Event()

    def on_error(error: HumanloopLoggingError) -> None:
        logger.warning("refused", data_id="from-on-error", type="rating", value="good")
        reported.set()

    _, sink = sinks.add(enqueue=enqueue, on_error=on_error)
    logger.info("bad", data_id="dp-bad", type="rating", value={"not": "allowed"})
    logger.complete()

    assert sink.flush(5.0)
    assert reported.wait(5.0)
    logger.complete()  # with enqueue=True: on_error's message has reached the sink
    assert sink.flush(5.0)

    assert sinks.fake.requests == []
    stats = sink.stats()
    assert (stats.enqueued, stats.rejected, stats.pending) == (1, 1, 0)


def test_feedback_from_an_application_thread_is_sent_with_enqueue(sinks: Sinks) -> None:
    """With enqueue=True the sink runs on loguru's writer thread: feedback logged on any
    application thread is still the application's."""
    _, sink = sinks.add(enqueue=True)
    threads = [
        threading.Thread(
            target=lambda n=n: logger.info("rated", data_id=f"dp-{n}", type="rating", value="ok")
        )
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.complete()

    assert sink.flush(5.0)
    assert sorted(item["data_id"] for item in sinks.fake.received) == [f"dp-{n}" for n in range(4)]


# -- loguru's lifecycle -------------------------------------------------------------------------


def test_complete_hands_every_enqueued_message_to_the_sink(sinks: Sinks) -> None:
    """After logger.complete(), every message logged with enqueue=True has reached the sink, so
    its stats count them and flush() waits for them."""
    _, sink = sinks.add(enqueue=True)
    for n in range(200):
        logger.info("rated", data_id=f"dp-{n}", type="rating", value="good")
    logger.complete()

    assert sink.stats().enqueued == 200
    assert sink.flush(10.0)
    assert len(sinks.fake.received) == 200


@pytest.mark.parametrize("enqueue", [False, True], ids=["direct", "enqueue"])
def test_remove_closes_an_owned_shipper_which_sends_what_is_queued(
    sinks: Sinks, enqueue: bool
) -> None:
    """logger.remove() stops the sink: its own shipper sends what is queued at once (well before
    the 60 s flush_interval), messages still in loguru's queue included, and its thread ends."""
    before = flush_threads()
    handler_id, sink = sinks.add(enqueue=enqueue)
    for n in range(3):
        logger.info("rated", data_id=f"dp-{n}", type="rating", value="good")

    logger.remove(handler_id)

    assert sinks.fake.wait_for_items(3, timeout=10.0)
    assert wait_until(lambda: flush_threads(before) == [], timeout=10.0)
    stats = sink.stats()
    assert (stats.enqueued, stats.sent, stats.pending) == (3, 3, 0)


def test_remove_returns_while_on_error_needs_loguru(sinks: Sinks) -> None:
    """loguru holds its lock while it stops a sink; an on_error that needs it during the close
    (logger.contextualize takes it) is not held up: remove() does not wait for the close."""
    done = threading.Event()

    def on_error(error: HumanloopLoggingError) -> None:
        with logger.contextualize(reported=type(error).__name__):
            logger.warning("feedback refused")
        done.set()

    handler_id, sink = sinks.add(on_error=on_error, exit_timeout=60.0)
    sinks.fake.reject_data_ids("dp-missing")
    logger.info("rated", data_id="dp-missing", type="rating", value="good")

    logger.remove(handler_id)  # the close sends the batch now; the stand-in answers 422

    assert done.wait(10.0)
    assert sink.flush(10.0)
    stats = sink.stats()
    assert (stats.enqueued, stats.rejected, stats.failed) == (1, 1, 0)


def test_remove_leaves_a_shared_shipper_running(sinks: Sinks) -> None:
    """Removing a sink that was given a shipper does not close the shipper, which would give up
    on what it could not send by the close's deadline: here a first attempt that hangs past it
    is retried and the record sent."""
    shipper = FeedbackShipper(
        api_key=sinks.fake.api_key,
        base_url=sinks.fake.base_url,
        flush_interval=60.0,
        exit_timeout=0.2,
        timeout=0.5,
        on_error=sinks.errors,
    )
    try:
        handler_id = logger.add(FeedbackSink(shipper=shipper), level="INFO")
        logger.info("rated", data_id="dp-1", type="rating", value="good")
        sinks.fake.hang_next(1)

        logger.remove(handler_id)

        assert shipper.flush(10.0)
        stats = shipper.stats()
        assert (stats.sent, stats.failed, stats.retried) == (1, 0, 1)
        assert [item["data_id"] for item in sinks.fake.received] == ["dp-1"]
    finally:
        shipper.close()


def test_a_sink_and_a_handler_share_one_shipper(sinks: Sinks) -> None:
    """Given one shipper, FeedbackSink and FeedbackHandler add no thread and share batches."""
    before = flush_threads()
    handler = FeedbackHandler(api_key=sinks.fake.api_key, base_url=sinks.fake.base_url)
    stdlib_logger = own_logger()
    stdlib_logger.addHandler(handler)
    try:
        sink = FeedbackSink(shipper=handler.shipper)
        logger.add(sink, level="INFO")
        stdlib_logger.info("rated", extra={"data_id": "dp-1", "type": "rating", "value": "good"})
        logger.info("rated", data_id="dp-2", type="rating", value="good")
        assert len(flush_threads(before)) == 1

        assert sink.flush(5.0)

        assert [request.item_count for request in sinks.fake.requests] == [2]
        assert sink.stats() == handler.stats() == handler.shipper.stats()
        sink.close()  # not the sink's to close: the handler still sends
        stdlib_logger.info("rated", extra={"data_id": "dp-3", "type": "rating", "value": "ok"})
        assert handler.flush(5.0)
        assert len(sinks.fake.received) == 3
    finally:
        stdlib_logger.removeHandler(handler)
        handler.close()


def test_flush_without_a_timeout_returns_at_once_and_close_drains(sinks: Sinks) -> None:
    """flush() with no timeout is loguru's call after every message: it returns None without
    sending; close() sends what is queued and is safe twice."""
    _, sink = sinks.add()
    logger.info("rated", data_id="dp-1", type="rating", value="good")

    assert sink.flush() is None
    assert sink.stats().pending == 1

    sink.close()
    sink.close()
    assert [item["data_id"] for item in sinks.fake.received] == ["dp-1"]
    logger.info("rated", data_id="dp-2", type="rating", value="good")  # starts it again
    assert sink.flush(5.0)
    assert len(sinks.fake.received) == 2


# -- copies, pickles, reprs ---------------------------------------------------------------------


def test_the_api_key_is_in_no_repr(fake_humanloop: FakeHumanloop) -> None:
    """Neither the sink's repr nor loguru's, which names each sink by it, shows the API key."""
    sink = FeedbackSink(api_key=SECRET, base_url=fake_humanloop.base_url)
    handler_id = logger.add(sink, level="INFO")
    try:
        assert "FeedbackSink" in repr(sink)
        assert SECRET not in repr(sink)
        assert SECRET not in repr(logger)
    finally:
        logger.remove(handler_id)
        sink.close()


def test_a_copied_logger_shares_the_sink_and_pickling_says_what_to_do(sinks: Sinks) -> None:
    """copy.deepcopy(logger), loguru's way to independent loggers, keeps one sink; pickling a
    logger whose sink is not enqueued fails with the fix in the message."""
    _, sink = sinks.add()
    copied: Logger = copy.deepcopy(logger)
    copied.info("rated", data_id="dp-1", type="rating", value="good")
    assert sink.flush(5.0)
    assert len(sinks.fake.received) == 1

    with pytest.raises(TypeError, match=r"enqueue=True"):
        pickle.dumps(logger)
    assert SECRET not in repr(copied)


def log_in_child(child_logger: Logger, count: int) -> None:
    """A spawned process's work: loguru's logger came pickled, its enqueued sink left behind."""
    for n in range(count):
        child_logger.info("rated", data_id=f"child-{n}", type="rating", value="good")
    child_logger.complete()


@pytest.mark.slow
def test_enqueue_carries_a_spawned_processs_feedback_to_the_sink(sinks: Sinks) -> None:
    """With enqueue=True a spawned child gets a pickled logger without the sink; its messages
    come back over loguru's queue and this process sends them."""
    spawn = multiprocessing.get_context("spawn")
    sink = sinks.sink()
    logger.add(sink, level="INFO", enqueue=True, context=spawn)
    child = spawn.Process(target=log_in_child, args=(logger, 5))
    child.start()
    child.join(30.0)
    assert child.exitcode == 0
    logger.complete()

    assert sink.flush(5.0)
    assert sorted(item["data_id"] for item in sinks.fake.received) == [
        f"child-{n}" for n in range(5)
    ]


# -- whole processes ----------------------------------------------------------------------------


def run_child(script: str, fake: FakeHumanloop) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=child_env(**humanloop_env(fake.api_key, fake.base_url)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_importing_the_package_does_not_import_loguru(fake_humanloop: FakeHumanloop) -> None:
    """loguru is an optional extra: the package, and the sink itself, never import it."""
    done = run_child(
        """
        import sys
        from humanloop_logging import FeedbackSink
        FeedbackSink()
        print(sorted(name for name in sys.modules if name.split(".")[0] == "loguru"))
        """,
        fake_humanloop,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


EXIT_SCRIPTS = {
    # loguru imported first (the usual order): the library's exit hook runs before loguru's.
    "loguru first": """
        from loguru import logger
        from humanloop_logging import FeedbackSink
        logger.add(FeedbackSink(), level="INFO")
        """,
    # The sink made before loguru is imported: loguru's exit hook (logger.remove) runs first.
    "sink first": """
        from humanloop_logging import FeedbackSink
        sink = FeedbackSink()
        from loguru import logger
        logger.add(sink, level="INFO")
        """,
    "enqueue": """
        from loguru import logger
        from humanloop_logging import FeedbackSink
        logger.add(FeedbackSink(), level="INFO", enqueue=True)
        """,
}


@pytest.mark.slow
@pytest.mark.parametrize("setup", list(EXIT_SCRIPTS))
def test_a_script_delivers_everything_at_exit(fake_humanloop: FakeHumanloop, setup: str) -> None:
    """A script with loguru's default settings that logs and just ends delivers every record
    once, whichever of loguru's exit hook and the library's runs first."""
    done = run_child(
        EXIT_SCRIPTS[setup]
        + """
        for n in range(500):
            logger.info("rated", data_id=f"dp-{n}", type="rating", value="good")
        """,
        fake_humanloop,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(item["data_id"] for item in fake_humanloop.received) == sorted(
        f"dp-{n}" for n in range(500)
    )


@pytest.mark.slow
def test_messages_still_in_loguru_s_queue_after_the_exit_hook_are_delivered(
    fake_humanloop: FakeHumanloop,
) -> None:
    """With enqueue=True, messages loguru's writer thread has not handed over when the library's
    exit hook has drained are sent when loguru's own exit hook hands them over."""
    done = run_child(
        """
        import atexit
        import threading
        from loguru import logger

        held = threading.Event()
        # Runs after the library's exit hook (registered later, so run earlier) and before
        # loguru's logger.remove(), which hands over what its queue still holds.
        atexit.register(held.set)
        from humanloop_logging import FeedbackSink

        class HeldSink(FeedbackSink):
            def write(self, message):
                held.wait()
                super().write(message)

        sink = HeldSink()
        logger.remove()
        logger.add(sink, level="INFO", enqueue=True)
        for n in range(50):
            logger.info("rated", data_id=f"dp-{n}", type="rating", value="good")
        print(sink.stats().enqueued)
        """,
        fake_humanloop,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "0"), done.stderr
    assert sorted(item["data_id"] for item in fake_humanloop.received) == sorted(
        f"dp-{n}" for n in range(50)
    )


# -- the example --------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_example_app_delivers_its_feedback(fake_humanloop: FakeHumanloop) -> None:
    """examples/loguru_app.py, run as it is against the stand-in, delivers all its feedback."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "loguru_app.py")],
        env=child_env(**humanloop_env(fake_humanloop.api_key, fake_humanloop.base_url)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted((item["data_id"], item["type"]) for item in fake_humanloop.received) == [
        ("data_1", "action"),
        ("data_1", "rating"),
        ("data_2", "action"),
        ("data_2", "correction"),
        ("data_2", "rating"),
        ("data_3", "action"),
        ("data_3", "rating"),
    ]
