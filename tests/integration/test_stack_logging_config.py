"""Logging configured after the handler exists: a later dictConfig(), and structlog's formatter."""

from __future__ import annotations

import pytest

from humanloop_logging.testing import FakeHumanloop
from integration.integration_support import assert_exactly_once
from integration.stack_scenarios import (
    DICTCONFIG_EXIT_TIMEOUT,
    DICTCONFIG_LATENCY,
    SCENARIOS,
    assert_shut_down_as_usual,
    play,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(90)]

DICTCONFIG = "dictConfig() of another logger, 100 + 100"
STRUCTLOG = [name for name in SCENARIOS if name.startswith("structlog")]


def test_a_later_dictconfig_of_another_logger_loses_nothing(fake: FakeHumanloop) -> None:
    """dictConfig() of another logger returns without draining; 200/200 records arrive once."""
    outcome = play(DICTCONFIG, fake)
    assert_exactly_once(outcome)
    assert_shut_down_as_usual(outcome)
    # Every answer of the stand-in takes DICTCONFIG_LATENCY: a dictConfig() that sent (or waited
    # for) anything took at least that long.
    took = outcome.run.measured["dictconfig_s"]
    assert took < min(DICTCONFIG_LATENCY, DICTCONFIG_EXIT_TIMEOUT), f"dictConfig() took {took} s"


@pytest.mark.parametrize("name", STRUCTLOG)
def test_structlog_through_processor_formatter_sends_each_event_once(
    name: str, fake: FakeHumanloop
) -> None:
    """structlog events rendered by ProcessorFormatter reach the root handler: N/N, exactly once."""
    outcome = play(name, fake)
    assert_exactly_once(outcome)
    assert_shut_down_as_usual(outcome)
