"""uvicorn, gunicorn and Django as users start them, stopped by SIGTERM.

Records are logged in request handlers and still queued when the signal arrives (the flush
interval is longer than the test), so only the shutdown path can deliver them.
"""

from __future__ import annotations

import signal

import pytest

from humanloop_logging.testing import FakeHumanloop
from integration.integration_support import Outcome, assert_exactly_once
from integration.stack_scenarios import SCENARIOS, assert_shut_down_as_usual, play

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

#: Killed by the SIGTERM uvicorn >= 0.29 raises again with Python's default action once it has shut
#: down: no exit hook runs, so what is still queued is lost unless the application closes the
#: handler in its lifespan, calls exit_on_sigterm() first, or has a spool (docs/lifecycle.md, "SIGTERM").
LOST_AT_SIGTERM = ["uvicorn CLI, SIGTERM", "uvicorn.run(), SIGTERM"]
UVICORN = [name for name in SCENARIOS if "uvicorn" in name and name not in LOST_AT_SIGTERM]
GUNICORN = [name for name in SCENARIOS if name.startswith(("gunicorn", "Django"))]

#: The start of the warning a process under uvicorn gives once when nothing will drain it.
SIGTERM_WARNING = "uvicorn ends this process by raising SIGTERM again after its shutdown"


def sigterm_warnings(outcome: Outcome) -> int:
    return sum(SIGTERM_WARNING in line for line in outcome.run.output.splitlines())


#: Backend-down runs kept in the suite (the table script runs all of them).
DOWN = [
    "uvicorn CLI, SIGTERM, close() in lifespan",
    "gunicorn sync, SIGTERM",
    "Django LOGGING under gunicorn, SIGTERM",
]


@pytest.mark.parametrize("name", UVICORN)
def test_uvicorn_delivers_every_record_logged_before_sigterm(
    name: str, fake: FakeHumanloop
) -> None:
    """SIGTERM to uvicorn: every record logged before it arrives exactly once; exit is bounded."""
    outcome = play(name, fake)
    assert_exactly_once(outcome)
    assert_shut_down_as_usual(outcome)
    # exit_on_sigterm() before uvicorn.run(): uvicorn restores that handler, so nothing is lost.
    if "exit_on_sigterm()" in name:
        assert sigterm_warnings(outcome) == 0, outcome.run.output


@pytest.mark.parametrize("name", LOST_AT_SIGTERM)
def test_uvicorn_killed_by_its_sigterm_loses_only_what_is_queued(
    name: str, fake: FakeHumanloop
) -> None:
    """Without a lifespan close, exit_on_sigterm() or a spool, uvicorn's re-raised SIGTERM kills
    the process: records queued then are lost (as docs/lifecycle.md says), nothing is sent twice."""
    outcome = play(name, fake)
    assert outcome.run.exit_code == -signal.SIGTERM
    assert outcome.delivered == 0
    assert sum(outcome.received.values()) == 0
    assert sigterm_warnings(outcome) == 1, outcome.run.output


@pytest.mark.parametrize("name", GUNICORN)
def test_gunicorn_delivers_every_record_logged_before_sigterm(
    name: str, fake: FakeHumanloop
) -> None:
    """SIGTERM to the gunicorn master: every worker's records arrive exactly once; exit is bounded."""
    outcome = play(name, fake)
    assert_exactly_once(outcome)
    assert_shut_down_as_usual(outcome)


@pytest.mark.parametrize("name", DOWN)
def test_server_shutdown_is_bounded_with_the_backend_down(name: str) -> None:
    """With the backend refusing connections, the server still ends as usual within the bound."""
    outcome = play(name, None)
    assert_shut_down_as_usual(outcome)
