"""Fixtures of the reliability suite, the key-leak check run around every test, and the report."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from reliability_support import (
    SECRET_KEY,
    Cleanup,
    ErrorLog,
    assert_no_secret,
    exception_renderings,
    report_lines,
)

from humanloop_logging.testing import FakeHumanloop


class _Capture(logging.Handler):
    """Keeps every record as text, formatted the way a log file would show it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.texts.append(self.format(record))
        except Exception as exc:  # a record that cannot be formatted is not what we look for
            self.texts.append(f"<unformattable record: {type(exc).__name__}>")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "checks_secrets_itself: the test asserts on key leaks itself; skip the sweep"
    )


@pytest.fixture(autouse=True)
def _no_secret_anywhere(request: pytest.FixtureRequest) -> Iterator[None]:
    """Around every test: capture all logging at DEBUG (urllib3 included) and every on_error
    error; afterwards the API key must appear in none of it."""
    capture = _Capture()
    root = logging.getLogger()
    urllib3_logger = logging.getLogger("urllib3")
    saved = (root.level, urllib3_logger.level)
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    urllib3_logger.setLevel(logging.DEBUG)
    ErrorLog.live.clear()
    try:
        yield
    finally:
        root.removeHandler(capture)
        root.setLevel(saved[0])
        urllib3_logger.setLevel(saved[1])
        structlog.reset_defaults()
    if request.node.get_closest_marker("checks_secrets_itself"):
        ErrorLog.live.clear()
        return
    assert_no_secret(capture.texts, "the logs")
    for log in ErrorLog.live:
        for error in log.errors:
            assert_no_secret(exception_renderings(error), f"an on_error {type(error).__name__}")
    ErrorLog.live.clear()


@pytest.fixture
def fake() -> Iterator[FakeHumanloop]:
    """A started stand-in that expects this suite's API key."""
    # The standard-library validator: the same answers as the pydantic one (tests/fidelity holds
    # both to the real services), several times faster at the volumes this suite sends.
    with FakeHumanloop(api_key=SECRET_KEY, validator="stdlib") as server:
        yield server


@pytest.fixture
def errors() -> ErrorLog:
    return ErrorLog()


@pytest.fixture
def cleanup() -> Iterator[Cleanup]:
    tidy = Cleanup()
    try:
        yield tidy
    finally:
        tidy.run()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = report_lines()
    if lines:
        terminalreporter.section("reliability report")
        for line in lines:
            terminalreporter.write_line(line)
