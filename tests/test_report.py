"""The library's own voice: heard on stderr when only feedback handlers listen, and problems said
at their first failure, once per kind until delivery recovers."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import tenacity
from support import Clock, Control, free_port

from humanloop_logging import DeliveryError, TransportError
from humanloop_logging._report import Reporter, _heard_elsewhere, logger
from humanloop_logging.transport import HTTPTransport

pytestmark = pytest.mark.timeout(30)

SECRET = "hl-SECRET-4b7e2a19c3"


class StubFeedbackHandler(logging.Handler):
    """Marked as a feedback handler, as FeedbackHandler is: it shows nobody anything."""

    _humanloop_feedback_handler = True

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class ListHandler(logging.Handler):
    """An ordinary handler that keeps the messages it is given."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def without_pytest(*targets: logging.Logger) -> None:
    """pytest attaches its capture handlers to loggers that do not propagate: take them off."""
    for target in targets:
        target.handlers[:] = [
            h for h in target.handlers if not type(h).__module__.startswith("_pytest")
        ]


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The library's logger on its own (no handlers, no propagation), and lastResort on a buffer."""
    stderr = io.StringIO()
    last = logging.StreamHandler(stderr)
    last.setLevel(logging.WARNING)
    monkeypatch.setattr(logging, "lastResort", last)
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "disabled", False)
    level = logger.level
    logger.setLevel(logging.NOTSET)
    try:
        yield stderr
    finally:
        logger.setLevel(level)


@pytest.fixture
def tree(monkeypatch: pytest.MonkeyPatch) -> tuple[logging.Logger, logging.Logger]:
    """A private logger ``parent.child`` whose parent does not propagate to the root."""
    parent = logging.getLogger("test_report_tree")
    child = logging.getLogger("test_report_tree.child")
    monkeypatch.setattr(parent, "propagate", False)
    monkeypatch.setattr(parent, "handlers", [])
    monkeypatch.setattr(child, "handlers", [])
    return parent, child


# -- reaching a person ---------------------------------------------------------------------------


def test_only_feedback_handlers_means_a_copy_on_stderr(isolated: io.StringIO) -> None:
    """With only a feedback handler listening, a warning is also printed by lastResort."""
    without_pytest(logger)
    feedback = StubFeedbackHandler()
    logger.addHandler(feedback)

    Reporter(None).log("cannot reach Humanloop", kind="k")

    assert isolated.getvalue() == "cannot reach Humanloop\n"
    assert [r.getMessage() for r in feedback.records] == ["cannot reach Humanloop"]


def test_an_ordinary_handler_means_no_copy(isolated: io.StringIO) -> None:
    """A non-feedback handler on the path hears the warning; nothing is printed besides."""
    without_pytest(logger)
    ordinary = ListHandler(logging.CRITICAL)  # its level is the application's choice
    logger.addHandler(StubFeedbackHandler())
    logger.addHandler(ordinary)
    plain = ListHandler()
    logger.addHandler(plain)

    Reporter(None).log("cannot reach Humanloop", kind="k")

    assert isolated.getvalue() == ""
    assert plain.messages == ["cannot reach Humanloop"]


def test_no_handler_at_all_is_left_to_logging(isolated: io.StringIO) -> None:
    """Reaching no handler at all, logging's own lastResort prints it: once, not twice."""
    without_pytest(logger)
    Reporter(None).log("cannot reach Humanloop", kind="k")

    assert isolated.getvalue() == "cannot reach Humanloop\n"


def test_a_disabled_level_prints_nothing(isolated: io.StringIO) -> None:
    """Below the logger's level, nothing reaches the handlers or stderr."""
    without_pytest(logger)
    feedback = StubFeedbackHandler()
    logger.addHandler(feedback)
    logger.setLevel(logging.ERROR)

    Reporter(None).log("a warning", kind="k")
    logger.disabled = True
    Reporter(None).log("an error", kind="e", level=logging.ERROR)

    assert isolated.getvalue() == ""
    assert feedback.records == []


def test_info_is_not_copied_to_stderr(isolated: io.StringIO) -> None:
    """lastResort's own level applies: an INFO line is not printed."""
    without_pytest(logger)
    logger.addHandler(StubFeedbackHandler())

    Reporter(None).log("feedback is reaching Humanloop again", kind="k", level=logging.INFO)

    assert isolated.getvalue() == ""


def test_without_last_resort_nothing_is_printed(
    isolated: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An application that set logging.lastResort to None gets no copy, and no error."""
    without_pytest(logger)
    feedback = StubFeedbackHandler()
    logger.addHandler(feedback)
    monkeypatch.setattr(logging, "lastResort", None)

    Reporter(None).log("cannot reach Humanloop", kind="k")

    assert len(feedback.records) == 1
    assert isolated.getvalue() == ""


def test_the_walk_follows_propagation(tree: tuple[logging.Logger, logging.Logger]) -> None:
    """Handlers count up the hierarchy until a logger that does not propagate."""
    parent, child = tree
    without_pytest(parent, child)
    assert _heard_elsewhere(child) is None  # no handler: logging uses lastResort itself

    child.addHandler(StubFeedbackHandler())
    assert _heard_elsewhere(child) is False

    parent.addHandler(ListHandler())
    assert _heard_elsewhere(child) is True

    child.propagate = False
    try:
        assert _heard_elsewhere(child) is False
    finally:
        child.propagate = True


# -- problems, said at once ----------------------------------------------------------------------


@pytest.fixture
def heard(isolated: io.StringIO) -> ListHandler:
    logger.setLevel(logging.DEBUG)
    handler = ListHandler()
    logger.addHandler(handler)
    return handler


def refused(port: int = 8123) -> TransportError:
    error = TransportError(
        f"cannot reach Humanloop at 127.0.0.1:{port} (connection refused)",
        category="refused",
    )
    error.retry_for = 60.0
    return error


def test_a_problem_is_said_at_its_first_failure_and_once(heard: ListHandler) -> None:
    """The first failure of a kind is logged at once with the retry notice; repeats are not."""
    reporter = Reporter(None)
    for _ in range(5):
        reporter.problem(refused())

    assert heard.messages == [
        "cannot reach Humanloop at 127.0.0.1:8123 (connection refused); retrying for up to 60s;"
        " records are kept meanwhile"
    ]


def test_each_kind_of_problem_is_said(heard: ListHandler) -> None:
    """A different category is a different problem: it is said too."""
    reporter = Reporter(None)
    reporter.problem(refused())
    reporter.problem(TransportError("timed out in total", category="timeout"))
    reporter.problem(refused())

    assert len(heard.messages) == 2
    assert heard.messages[1].startswith("timed out in total")


def test_after_recovery_a_problem_is_said_again(heard: ListHandler) -> None:
    """recovered() ends the problem; its next failure is said again (outside the window)."""
    reporter = Reporter(None, window=0.0)
    reporter.problem(refused())
    reporter.problem(refused())
    reporter.recovered()
    reporter.problem(refused())

    assert [m.startswith("cannot reach") for m in heard.messages] == [True, False, True]
    assert heard.messages[1] == "feedback is reaching Humanloop again"


def test_a_flapping_problem_stays_collapsed(heard: ListHandler) -> None:
    """A problem that comes back within the window is held back, not said at each return."""
    reporter = Reporter(None)
    for _ in range(4):
        reporter.problem(refused())
        reporter.recovered()

    assert [m for m in heard.messages if m.startswith("cannot reach")] == [
        "cannot reach Humanloop at 127.0.0.1:8123 (connection refused); retrying for up to 60s;"
        " records are kept meanwhile"
    ]


def test_a_problem_given_up_at_once_has_no_retry_notice(heard: ListHandler) -> None:
    """A failure that is not retried is said as it is, without promising retries."""
    Reporter(None).problem(DeliveryError("Humanloop refused the API key", category="auth"))

    assert heard.messages == ["Humanloop refused the API key"]


class ReportingControl(Control):
    """The engine's part: tells the reporter of each retry; a sleep moves the clock."""

    def __init__(self, clock: Clock, reporter: Reporter) -> None:
        super().__init__(clock=clock)
        self._reporter = reporter

    def retrying(self, error: DeliveryError, wait: float) -> None:
        super().retrying(error, wait)
        self._reporter.problem(error)


def test_a_closed_port_is_announced_at_the_first_failure(heard: ListHandler) -> None:
    """Nothing listening: one warning at the first failure naming host, port and the fix."""
    port = free_port()
    clock = Clock()
    reporter = Reporter(None)
    control = ReportingControl(clock, reporter)
    transport = HTTPTransport(
        api_key=SECRET,
        url=f"http://127.0.0.1:{port}/v4/feedback",
        timeout=2.0,
        max_retry_time=60.0,
        wait=tenacity.wait_fixed(10.0),
        clock=clock,
    )
    try:
        with pytest.raises(TransportError) as raised:
            transport.send(b"[]", [], control)
    finally:
        transport.close()

    assert len(control.retries) == 5  # attempts at 0, 10, 20, 30, 40, 50 s; 60 s is past the limit
    assert raised.value.category == "refused"
    assert heard.messages == [
        f"cannot reach Humanloop at 127.0.0.1:{port} (connection refused) for POST "
        f"http://127.0.0.1:{port}/v4/feedback: is the service running, and are host and port in "
        "base_url right? Retrying for up to 60s; records are kept meanwhile"
    ]
    assert all(SECRET not in message for message in heard.messages)
