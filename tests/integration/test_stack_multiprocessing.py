"""multiprocessing's Process, Pool and ProcessPoolExecutor under every start method.

The children log and end normally. Under fork and forkserver they end through ``os._exit()``, so
no ``atexit`` hook runs in them; what they queued must still arrive, once.
"""

from __future__ import annotations

import multiprocessing

import pytest

from humanloop_logging.testing import FakeHumanloop
from integration.integration_support import assert_exactly_once
from integration.stack_scenarios import (
    MP_KINDS,
    START_METHODS,
    assert_shut_down_as_usual,
    play,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.mark.parametrize("kind", MP_KINDS)
@pytest.mark.parametrize("method", START_METHODS)
def test_children_of_each_start_method_deliver_everything(
    method: str, kind: str, fake: FakeHumanloop
) -> None:
    """Records logged in multiprocessing children arrive exactly once after the parent exits."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{method} is not available on this platform")
    name = f"multiprocessing {kind}, {method}"
    outcome = play(name, fake)
    assert_exactly_once(outcome)
    assert_shut_down_as_usual(outcome)
