"""``before_send``: the application changes or drops each record on the flush thread, before it is
validated, kept on disk or sent; drops and failures of the hook are counted and said once."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Optional

import pytest
from support import Rig

from humanloop_logging import BeforeSendError, FeedbackValidationError
from humanloop_logging.testing import FakeHumanloop

pytestmark = pytest.mark.usefixtures("fake_humanloop")


def redact(record: dict[str, Any]) -> dict[str, Any]:
    if record["type"] == "correction":
        record["value"] = "[redacted]"
    return record


def test_a_changed_record_is_sent_as_changed(fake_humanloop: FakeHumanloop) -> None:
    rig = Rig(fake_humanloop, before_send=redact)
    rig.send("dp-1", type="correction", value="my email is a@b.c")
    rig.send("dp-2", type="rating", value="good")
    assert rig.shipper.flush(5.0)
    sent = {item["data_id"]: item for item in fake_humanloop.received}
    assert sent["dp-1"]["value"] == "[redacted]"
    assert sent["dp-2"]["value"] == "good"
    stats = rig.stats()
    assert (stats.sent, stats.filtered, stats.failed) == (2, 0, 0)
    rig.shipper.close()


def test_the_hook_sees_the_fields_that_are_set_and_a_list_as_a_list(
    fake_humanloop: FakeHumanloop,
) -> None:
    seen: list[dict[str, Any]] = []

    def look(record: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(record))
        return record

    rig = Rig(fake_humanloop, before_send=look)
    rig.send("dp-1", type="tags", value=["a", "b"], user="u-1")
    assert rig.shipper.flush(5.0)
    assert seen == [{"data_id": "dp-1", "type": "tags", "value": ["a", "b"], "user": "u-1"}]
    assert fake_humanloop.received[0]["value"] == ["a", "b"]
    rig.shipper.close()


def test_none_drops_the_record_counted_filtered(fake_humanloop: FakeHumanloop) -> None:
    rig = Rig(fake_humanloop, before_send=lambda r: None if r["value"] == "spam" else r)
    for index, value in enumerate(["good", "spam", "bad", "spam"]):
        rig.send(f"dp-{index}", value=value)
    assert rig.shipper.flush(5.0)
    assert sorted(item["data_id"] for item in fake_humanloop.received) == ["dp-0", "dp-2"]
    stats = rig.stats()
    assert (stats.enqueued, stats.sent, stats.filtered, stats.pending) == (4, 2, 2, 0)
    assert rig.errors.errors == []  # a drop on purpose is no error
    rig.shipper.close()


def test_the_hook_runs_before_validation(fake_humanloop: FakeHumanloop) -> None:
    """A record the hook repairs is valid; one it breaks is refused and reported as usual."""

    def repair(record: dict[str, Any]) -> dict[str, Any]:
        if record["data_id"] == "dp-fix":
            record["type"] = "rating"
        if record["data_id"] == "dp-break":
            record["type"] = ""
        return record

    rig = Rig(fake_humanloop, before_send=repair)
    rig.send("dp-fix", type=42)
    rig.send("dp-break")
    assert rig.shipper.flush(5.0)
    assert [item["data_id"] for item in fake_humanloop.received] == ["dp-fix"]
    [refused] = rig.errors.of(FeedbackValidationError)
    assert refused.field == "type"
    assert (rig.stats().sent, rig.stats().rejected) == (1, 1)
    rig.shipper.close()


def test_a_raising_hook_fails_the_record_and_is_said_once_per_kind(
    fake_humanloop: FakeHumanloop, caplog: pytest.LogCaptureFixture
) -> None:
    def fragile(record: dict[str, Any]) -> Optional[dict[str, Any]]:
        if record["value"] == "key":
            return {"missing": record["nope"]}
        if record["value"] == "type":
            raise TypeError("cannot redact this")
        return record

    rig = Rig(fake_humanloop, before_send=fragile)
    caplog.set_level(logging.WARNING, logger="humanloop_logging")
    for index, value in enumerate(["key", "good", "key", "type", "key"]):
        rig.send(f"dp-{index}", value=value)
    assert rig.shipper.flush(5.0)
    assert [item["data_id"] for item in fake_humanloop.received] == ["dp-1"]
    stats = rig.stats()
    assert (stats.sent, stats.failed, stats.filtered, stats.pending) == (1, 4, 0, 0)
    said = [r.getMessage() for r in caplog.records if "before_send" in r.getMessage()]
    assert len(said) == 2, said
    assert "KeyError" in said[0]
    assert "data_id='dp-0'" in said[0]
    assert "TypeError" in said[1]
    assert "cannot redact this" in said[1]
    errors = rig.errors.of(BeforeSendError)
    assert len(errors) == 2
    assert isinstance(errors[0].__cause__, KeyError)
    rig.shipper.close()


@pytest.mark.parametrize(
    ("returned", "said"),
    [
        ("a string", "must return the record (a dict) or None, not str"),
        ({"data_id": "dp-0", "type": "rating", "valu": "good"}, "'valu'"),
    ],
)
def test_a_hook_that_returns_no_record_fails_it(
    fake_humanloop: FakeHumanloop, returned: object, said: str
) -> None:
    rig = Rig(fake_humanloop, before_send=lambda record: returned)
    rig.send("dp-0")
    assert rig.shipper.flush(5.0)
    assert fake_humanloop.received == []
    [error] = rig.errors.of(BeforeSendError)
    assert said in str(error)
    assert rig.stats().failed == 1
    rig.shipper.close()


def test_the_hook_runs_on_the_flush_thread(fake_humanloop: FakeHumanloop) -> None:
    threads: list[str] = []

    def note(record: dict[str, Any]) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        return record

    rig = Rig(fake_humanloop, before_send=note)
    rig.send("dp-0")
    assert rig.shipper.flush(5.0)
    assert threads
    assert threads[0].startswith("humanloop-feedback")
    assert threading.current_thread().name not in threads
    rig.shipper.close()


def test_with_a_spool_nothing_reaches_the_disk_unredacted(
    fake_humanloop: FakeHumanloop, tmp_path: Path
) -> None:
    """The hook runs before the spool's write: the file never holds what it took out."""
    spool = tmp_path / "spool.db"
    rig = Rig(fake_humanloop, before_send=redact, spool_path=str(spool))
    fake_humanloop.stop()  # nothing is accepted: the records wait on disk
    rig.send("dp-1", type="correction", value="secret-address@example.com")
    rig.send("dp-2", value="drop-me")
    rig.shipper.flush(0.5)
    rig.shipper.close(timeout=0.5)
    assert spool.exists()
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert b"secret-address" not in raw
    assert b"[redacted]" in raw


def test_blocking_mode_runs_the_hook_on_the_callers_thread(fake_humanloop: FakeHumanloop) -> None:
    threads: list[threading.Thread] = []

    def note(record: dict[str, Any]) -> None:
        threads.append(threading.current_thread())

    rig = Rig(fake_humanloop, before_send=note, blocking=True)
    rig.send("dp-0")
    assert threads == [threading.current_thread()]
    assert (rig.stats().filtered, rig.stats().pending) == (1, 0)
    assert fake_humanloop.received == []
    rig.shipper.close()
