"""The stand-in fixture of the stack suite and the summary table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from humanloop_logging.testing import FakeHumanloop
from integration.integration_support import API_KEY, OUTCOMES, markdown_table


@pytest.fixture
def fake() -> Iterator[FakeHumanloop]:
    """A started stand-in that expects this suite's API key."""
    with FakeHumanloop(api_key=API_KEY) as server:
        yield server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not OUTCOMES:
        return
    terminalreporter.section("stack scenarios: received/expected and shutdown time")
    for line in markdown_table([outcome.row() for outcome in OUTCOMES]):
        terminalreporter.write_line(line)
