"""A test of an app's own, with the ``fake_humanloop`` fixture that installing the package registers.

Run it with ``python -m pytest examples/test_with_the_stand_in.py``: the fixture is a started
stand-in, stopped after the test, so the handler sends to it for real.
"""

from __future__ import annotations

import logging

from humanloop_logging import FeedbackHandler
from humanloop_logging.testing import FakeHumanloop


def test_unknown_datapoint_is_reported(fake_humanloop: FakeHumanloop) -> None:
    fake_humanloop.reject_data_ids("data_gone")
    handler = FeedbackHandler(api_key=fake_humanloop.api_key, base_url=fake_humanloop.base_url)
    log = logging.getLogger("test")
    log.addHandler(handler)
    try:
        log.warning("rated", extra={"data_id": "data_gone", "type": "rating", "value": "bad"})
        handler.flush(timeout=5)
    finally:
        log.removeHandler(handler)
        handler.close()
    assert [r.status for r in fake_humanloop.requests] == [422]
    assert fake_humanloop.received == []


def test_a_rating_arrives(fake_humanloop: FakeHumanloop) -> None:
    handler = FeedbackHandler(api_key=fake_humanloop.api_key, base_url=fake_humanloop.base_url)
    log = logging.getLogger("test")
    log.addHandler(handler)
    try:
        log.warning("rated", extra={"data_id": "data_abc", "type": "rating", "value": "good"})
        assert handler.flush(timeout=5)
    finally:
        log.removeHandler(handler)
        handler.close()
    assert [(item["data_id"], item["value"]) for item in fake_humanloop.received] == [
        ("data_abc", "good")
    ]
