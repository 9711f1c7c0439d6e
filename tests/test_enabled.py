"""The kill switch: ``enabled=False`` (``HUMANLOOP_FEEDBACK_ENABLED=0``) sends nothing, starts no
thread and needs no key, yet still captures, validates and counts; a missing key otherwise fails
at construction, naming both ways out."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from support import Rig, flush_threads, own_logger

from humanloop_logging import (
    ConfigurationError,
    FeedbackHandler,
    FeedbackShipper,
    FeedbackValidationError,
)
from humanloop_logging.testing import ErrorLog, FakeHumanloop


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HUMANLOOP_API_KEY", "HUMANLOOP_FEEDBACK_ENABLED"):
        monkeypatch.delenv(name, raising=False)


def test_disabled_sends_nothing_and_starts_no_thread(fake_humanloop: FakeHumanloop) -> None:
    before = set(threading.enumerate())
    rig = Rig(fake_humanloop, enabled=False)
    for index in range(5):
        rig.send(f"dp-{index}")
    rig.send("dp-bad", type="")
    assert rig.shipper.flush(1.0)
    assert flush_threads(before) == []
    assert set(threading.enumerate()) <= before
    stats = rig.stats()
    assert (stats.enqueued, stats.withheld, stats.rejected, stats.sent, stats.pending) == (
        6,
        5,
        1,
        0,
        0,
    )
    [refused] = rig.errors.of(FeedbackValidationError)
    assert refused.field == "type"
    assert rig.shipper.close()
    assert fake_humanloop.arrivals == 0


@pytest.mark.usefixtures("no_key")
def test_disabled_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUMANLOOP_FEEDBACK_ENABLED", "0")
    errors = ErrorLog()
    handler = FeedbackHandler(on_error=errors)
    logger = own_logger()
    logger.addHandler(handler)
    logger.info("fb", extra={"data_id": "dp-1", "type": "rating", "value": "good"})
    logger.info("fb", extra={"data_id": "dp-2", "type": "rating", "value": float("nan")})
    assert (handler.stats().withheld, handler.stats().rejected) == (1, 1)
    assert len(errors.of(FeedbackValidationError)) == 1
    assert not handler.shipper.settings.enabled
    handler.close()


@pytest.mark.usefixtures("no_key")
def test_a_missing_key_fails_at_once_naming_both_fixes() -> None:
    with pytest.raises(ConfigurationError) as caught:
        FeedbackHandler()
    message = str(caught.value)
    assert "HUMANLOOP_API_KEY" in message
    assert "HUMANLOOP_FEEDBACK_ENABLED=0" in message


@pytest.mark.usefixtures("no_key")
def test_a_given_key_is_still_checked_when_disabled() -> None:
    with pytest.raises(ConfigurationError, match="api_key looks like a URL"):
        FeedbackShipper("https://api.humanloop.com/v4", enabled=False)


def test_disabled_says_so_once_at_construction(
    caplog: pytest.LogCaptureFixture, fake_humanloop: FakeHumanloop
) -> None:
    caplog.set_level(logging.INFO, logger="humanloop_logging")
    rig = Rig(fake_humanloop, enabled=False, name="api")
    rig.send("dp-1")
    rig.send("dp-2")
    said = [r.getMessage() for r in caplog.records if r.name == "humanloop_logging"]
    assert len(said) == 1, said
    assert "'api' is disabled" in said[0]
    assert "HUMANLOOP_FEEDBACK_ENABLED=0" in said[0]
    assert fake_humanloop.api_key not in said[0]
    rig.shipper.close()


def test_disabled_opens_no_spool(fake_humanloop: FakeHumanloop, tmp_path: Path) -> None:
    spool = tmp_path / "spool.db"
    rig = Rig(fake_humanloop, enabled=False, spool_path=str(spool))
    rig.send("dp-1")
    assert rig.shipper.close()
    assert rig.stats().withheld == 1
    assert list(tmp_path.iterdir()) == []


def test_disabled_still_runs_before_send(fake_humanloop: FakeHumanloop) -> None:
    rig = Rig(fake_humanloop, enabled=False, before_send=lambda r: None)
    rig.send("dp-1")
    assert (rig.stats().filtered, rig.stats().withheld) == (1, 0)
    rig.shipper.close()


def test_the_name_is_in_the_repr_and_the_key_is_not(fake_humanloop: FakeHumanloop) -> None:
    rig = Rig(fake_humanloop, name="checkout")
    assert rig.shipper.name == "checkout"
    assert "name='checkout'" in repr(rig.shipper)
    assert fake_humanloop.api_key not in repr(rig.shipper)
    rig.shipper.close()
