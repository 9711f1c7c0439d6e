"""``logging.config.dictConfig`` builds a working handler from plain configuration."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator

import pytest

from humanloop_logging import FeedbackHandler
from humanloop_logging.testing import FakeHumanloop


@pytest.fixture
def configured(fake_humanloop: FakeHumanloop) -> Iterator[FeedbackHandler]:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "humanloop": {
                    "()": "humanloop_logging.FeedbackHandler",
                    "api_key": fake_humanloop.api_key,
                    "base_url": fake_humanloop.base_url,
                    "batch_size": 7,
                    "default_user": "web-app",
                    "level": "INFO",
                }
            },
            "loggers": {"dictconfig.app": {"level": "DEBUG", "handlers": ["humanloop"]}},
        }
    )
    logger = logging.getLogger("dictconfig.app")
    (handler,) = logger.handlers
    assert isinstance(handler, FeedbackHandler)
    yield handler
    logger.removeHandler(handler)
    handler.close()


def test_dictconfig_handler_sends_with_its_settings(
    configured: FeedbackHandler, fake_humanloop: FakeHumanloop
) -> None:
    """Settings from the dict apply: batch_size 7, default_user, and the level filter."""
    log = logging.getLogger("dictconfig.app")
    log.debug("below the handler's level", extra={"data_id": "d-debug", "type": "rating"})
    for n in range(10):
        log.info("feedback", extra={"data_id": f"d{n}", "type": "rating", "value": "good"})
        if n == 6:  # a full batch goes at once
            assert fake_humanloop.wait_for_items(7)
    assert configured.flush(5.0)
    assert [r.item_count for r in fake_humanloop.requests] == [7, 3]
    assert [item["data_id"] for item in fake_humanloop.received] == [f"d{n}" for n in range(10)]
    assert {item["user"] for item in fake_humanloop.received} == {"web-app"}
