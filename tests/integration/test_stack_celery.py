"""A Celery prefork worker whose children are replaced every 10 tasks, then a warm shutdown.

Every child ends through billiard's ``os._exit()`` (replaced after its 10 tasks, or at the warm
shutdown), so no ``atexit`` hook runs in it; what it queued must still arrive.
"""

from __future__ import annotations

import pytest

from humanloop_logging.testing import FakeHumanloop
from integration.integration_support import assert_exactly_once
from integration.stack_scenarios import assert_shut_down_as_usual, play

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

CELERY = "Celery prefork --max-tasks-per-child 10, warm shutdown"


def test_celery_prefork_delivers_every_task_record(fake: FakeHumanloop) -> None:
    """100 tasks over recycled prefork children: 100 records arrive exactly once; exit 0, bounded."""
    outcome = play(CELERY, fake)
    assert_exactly_once(outcome)
    assert_shut_down_as_usual(outcome)
