"""Feedback records: what is refused before batching, what is accepted, and how it is serialised."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from support import HandlerRig

from humanloop_logging import (
    FeedbackValidationError,
)
from humanloop_logging._record import Captured, encode_array, freeze, to_payload, to_payloads
from humanloop_logging.testing import FakeHumanloop

pytestmark = pytest.mark.timeout(30)


MISSING = object()
"""Marks a field left out of the record altogether."""


class Rig(HandlerRig):
    """A handler on its own logger, sending to the stand-in; only ``flush()`` sends. Fields
    given as MISSING are left out of the record."""

    def __init__(self, fake: FakeHumanloop, **settings: Any) -> None:
        super().__init__(
            fake.api_key, fake.base_url, **{"batch_size": 100, "flush_interval": 60.0, **settings}
        )
        self.fake = fake

    def log(self, **fields: Any) -> None:
        super().log(**{name: value for name, value in fields.items() if value is not MISSING})


@pytest.fixture
def rig(fake_humanloop: FakeHumanloop) -> Iterator[Rig]:
    made = Rig(fake_humanloop)
    yield made
    made.close()


@pytest.fixture
def non_utc_local_time() -> Iterator[None]:
    """Local time is UTC+05:30 for the test, so local and UTC readings differ."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX only")
    old = os.environ.get("TZ")
    os.environ["TZ"] = "HLT-05:30"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


class Hostile:
    """An object that raises from every method a library might call to describe or compare it."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    def __hash__(self) -> int:
        raise RuntimeError("no hash")

    def __bool__(self) -> bool:
        raise RuntimeError("no bool")


def parse_instant(text: str) -> datetime:
    """An RFC 3339 string as an aware datetime (fromisoformat before 3.11 does not take 'Z')."""
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


# -- refused records ---------------------------------------------------------------------------

INVALID: list[Any] = [
    pytest.param({"type": None}, "type", id="type-none"),
    pytest.param({"type": 5}, "type", id="type-int"),
    pytest.param({"type": b"rating"}, "type", id="type-bytes"),
    pytest.param({"type": "rat\ud800ing"}, "type", id="type-lone-surrogate"),
    pytest.param({"value": {"a": 1}}, "value", id="value-dict"),
    pytest.param({"value": b"good"}, "value", id="value-bytes"),
    pytest.param({"value": {"good"}}, "value", id="value-set"),
    pytest.param({"value": object()}, "value", id="value-object"),
    pytest.param({"value": math.nan}, "value", id="value-nan"),
    pytest.param({"value": math.inf}, "value", id="value-inf"),
    pytest.param({"value": -math.inf}, "value", id="value-minus-inf"),
    pytest.param({"value": 2**1024}, "value", id="value-int-beyond-double"),
    pytest.param({"value": -(10**400)}, "value", id="value-negative-int-beyond-double"),
    pytest.param({"value": ["a", 1]}, "value", id="value-list-with-int"),
    pytest.param({"value": ["a", None]}, "value", id="value-list-with-none"),
    pytest.param({"value": [["a"]]}, "value", id="value-nested-list"),
    pytest.param({"value": "go\udc00od"}, "value", id="value-lone-surrogate"),
    pytest.param({"value": ["ok", "\ud83d"]}, "value", id="value-list-lone-surrogate"),
    pytest.param({"data_id": 123}, "data_id", id="data_id-int"),
    pytest.param({"data_id": None}, "data_id", id="data_id-none"),
    pytest.param({"data_id": b"dp-1"}, "data_id", id="data_id-bytes"),
    pytest.param({"data_id": "dp\ud800"}, "data_id", id="data_id-lone-surrogate"),
    pytest.param({"user": 42}, "user", id="user-int"),
    pytest.param({"user": "u\udfff"}, "user", id="user-lone-surrogate"),
    pytest.param({"unset": "yes"}, "unset", id="unset-str"),
    pytest.param({"unset": 1}, "unset", id="unset-int"),
    pytest.param({"created_at": "yesterday"}, "created_at", id="created_at-garbage"),
    pytest.param({"created_at": "2024-13-01T00:00:00Z"}, "created_at", id="created_at-month-13"),
    pytest.param({"created_at": "2024-05-01"}, "created_at", id="created_at-date-string"),
    pytest.param({"created_at": date(2024, 5, 1)}, "created_at", id="created_at-date"),
    pytest.param({"created_at": True}, "created_at", id="created_at-bool"),
    pytest.param({"created_at": 1e20}, "created_at", id="created_at-epoch-overflow"),
    pytest.param({"created_at": math.nan}, "created_at", id="created_at-epoch-nan"),
    pytest.param({"created_at": [2024, 5, 1]}, "created_at", id="created_at-list"),
]


@pytest.mark.parametrize(("override", "field"), INVALID)
def test_invalid_record_is_rejected_and_never_joins_a_batch(
    rig: Rig, caplog: pytest.LogCaptureFixture, override: dict[str, Any], field: str
) -> None:
    """A record the API would refuse is counted rejected, reported with field and reason, not sent."""
    caplog.set_level(logging.WARNING, logger="humanloop_logging")
    bad: dict[str, Any] = {"data_id": "bad", "type": "rating", "value": "good"}
    bad.update(override)
    rig.log(data_id="valid-1", type="rating", value="good")
    rig.log(**bad)
    rig.log(data_id="valid-2", type="rating", value="good")

    assert rig.handler.flush(5.0)

    assert [r.item_count for r in rig.fake.requests] == [2]
    assert [item["data_id"] for item in rig.fake.received] == ["valid-1", "valid-2"]
    refused = rig.errors.of(FeedbackValidationError)
    assert len(refused) == 1
    assert refused[0].field == field
    assert isinstance(refused[0].reason, str)
    assert refused[0].reason
    stats = rig.handler.stats()
    assert (stats.enqueued, stats.sent, stats.rejected, stats.failed, stats.pending) == (
        3,
        2,
        1,
        0,
        0,
    )
    own = [r.getMessage() for r in caplog.records if r.name == "humanloop_logging"]
    assert any(field in message and refused[0].reason in message for message in own), own


def test_record_without_type_is_not_feedback(rig: Rig) -> None:
    """A record with data_id but no type attribute is not feedback: ignored, not rejected."""
    rig.log(data_id="dp-1", value="good")
    rig.log(type="rating", value="good")

    assert rig.handler.flush(5.0)

    assert rig.fake.requests == []
    assert rig.handler.stats().enqueued == 0
    assert rig.errors.errors == []


@pytest.mark.parametrize(
    "field", ["data_id", "type", "value", "user", "created_at", "unset"], ids=str
)
def test_hostile_object_in_any_field_never_raises_from_the_log_call(rig: Rig, field: str) -> None:
    """An object whose __str__/__repr__/__eq__/__hash__ raise is refused, and logging never raises."""
    record: dict[str, Any] = {"data_id": "dp-1", "type": "rating", "value": "good"}
    record[field] = Hostile()

    rig.log(**record)  # must not raise
    rig.log(data_id="dp-ok", type="rating", value="good")

    assert rig.handler.flush(5.0)
    assert [item["data_id"] for item in rig.fake.received] == ["dp-ok"]
    refused = rig.errors.of(FeedbackValidationError)
    assert len(refused) == 1
    assert "no repr" not in str(refused[0])
    stats = rig.handler.stats()
    assert (stats.enqueued, stats.sent, stats.rejected) == (2, 1, 1)


def test_list_subclass_that_raises_on_iteration_is_refused(rig: Rig) -> None:
    """A list value that cannot be copied at the call is refused later, not raised from logging."""

    class Broken(list[str]):
        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("no iteration")

    rig.log(data_id="dp-1", type="rating", value=Broken(["a"]))

    assert rig.handler.flush(5.0)
    assert rig.fake.requests == []
    refused = rig.errors.of(FeedbackValidationError)
    assert [error.field for error in refused] == ["value"]


# -- accepted records --------------------------------------------------------------------------

VALID_VALUES: list[Any] = [
    pytest.param("good", "good", id="str"),
    pytest.param("", "", id="empty-str"),
    pytest.param("caf\u00e9 \U0001f600", "caf\u00e9 \U0001f600", id="non-ascii"),
    pytest.param(5, 5, id="int"),
    pytest.param(0, 0, id="zero"),
    pytest.param(-2.5, -2.5, id="float"),
    pytest.param(True, True, id="true"),
    pytest.param(False, False, id="false"),
    pytest.param(["a", "b"], ["a", "b"], id="list"),
    pytest.param([], [], id="empty-list"),
]


@pytest.mark.parametrize(("value", "expected"), VALID_VALUES)
def test_supported_value_arrives_as_sent(rig: Rig, value: Any, expected: Any) -> None:
    """Strings, numbers, booleans and lists of strings arrive with the same JSON value and type."""
    rig.log(data_id="dp-1", type="rating", value=value)

    assert rig.handler.flush(5.0)

    [item] = rig.fake.received
    assert item["value"] == expected
    assert type(item["value"]) is type(expected)
    assert item["type"] == "rating"
    assert item["data_id"] == "dp-1"
    assert rig.errors.errors == []


def test_unset_true_is_sent_without_a_value(rig: Rig) -> None:
    """unset=True needs no value and is sent as unset=true without a value key."""
    rig.log(data_id="dp-1", type="rating", unset=True)

    assert rig.handler.flush(5.0)

    [item] = rig.fake.received
    assert item["unset"] is True
    assert "value" not in item
    assert rig.handler.stats().sent == 1


@pytest.mark.parametrize(
    "fields",
    [{}, {"value": None}, {"unset": False}],
    ids=["no-value", "value-none", "no-value-unset-false"],
)
def test_a_record_without_a_value_is_sent_for_the_service_to_judge(
    rig: Rig, fields: dict[str, Any]
) -> None:
    """The schema has ``value`` optional (the API page's own example sends a type alone), and the
    service accepts such an item: it is sent without a value key, not refused before sending."""
    rig.log(data_id="dp-1", type="action", **fields)

    assert rig.handler.flush(5.0)

    [item] = rig.fake.received
    assert "value" not in item
    assert (item["data_id"], item["type"]) == ("dp-1", "action")
    assert item.get("unset") is fields.get("unset")
    assert rig.errors.errors == []
    assert rig.handler.stats().sent == 1


def test_user_is_taken_when_present_and_absent_otherwise(rig: Rig) -> None:
    """user is sent when the record has one and left out when it has none (no default_user)."""
    rig.log(data_id="dp-1", type="rating", value="good", user="alice")
    rig.log(data_id="dp-2", type="rating", value="good")

    assert rig.handler.flush(5.0)

    first, second = rig.fake.received
    assert first["user"] == "alice"
    assert "user" not in second


def test_list_value_is_captured_at_the_call(rig: Rig) -> None:
    """Mutating a list value after the log call changes nothing that is sent."""
    labels = ["helpful", "concise"]
    rig.log(data_id="dp-1", type="issue", value=labels)
    labels.append("added later")
    labels[0] = "changed"

    assert rig.handler.flush(5.0)

    [item] = rig.fake.received
    assert item["value"] == ["helpful", "concise"]


class _Filter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.created: list[float] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.created.append(record.created)
        return True


def test_created_at_defaults_to_the_moment_of_the_log_call(rig: Rig) -> None:
    """Without created_at, the record's creation time is sent, in ISO 8601 with a UTC offset."""
    seen = _Filter()
    rig.handler.addFilter(seen)
    rig.log(data_id="dp-1", type="rating", value="good")

    assert rig.handler.flush(5.0)

    [item] = rig.fake.received
    [created] = seen.created
    sent = parse_instant(item["created_at"])
    assert sent.utcoffset() is not None
    assert abs(sent.timestamp() - created) < 1e-5


def test_created_at_is_the_call_time_not_the_send_time(
    fake_humanloop: FakeHumanloop,
) -> None:
    """A record queued for a while still carries the time of its log call."""
    rig = Rig(fake_humanloop, flush_interval=0.3)
    try:
        before = time.time()
        rig.log(data_id="dp-1", type="rating", value="good")
        after = time.time()
        assert fake_humanloop.wait_for_items(1, timeout=5.0)
        [item] = fake_humanloop.received
        [request] = fake_humanloop.requests
        sent = parse_instant(item["created_at"]).timestamp()
        assert before - 1e-3 <= sent <= after + 1e-3
        assert request.time - sent >= 0.25
    finally:
        rig.close()


CREATED_AT: list[Any] = [
    pytest.param(
        datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=timezone.utc),
        datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=timezone.utc),
        id="aware-utc",
    ),
    pytest.param(
        datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
        datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc),
        id="aware-plus-2",
    ),
    pytest.param(
        datetime(2024, 5, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc),
        id="aware-minus-5-30",
    ),
    pytest.param(
        "2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc), id="iso-z"
    ),
    pytest.param(
        "2024-05-01T14:30:00+02:00",
        datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc),
        id="iso-offset",
    ),
    pytest.param(1714566600, datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc), id="epoch-int"),
    pytest.param(
        1714566600.5,
        datetime(2024, 5, 1, 12, 30, 0, 500000, tzinfo=timezone.utc),
        id="epoch-float",
    ),
]


@pytest.mark.parametrize(("given", "instant"), CREATED_AT)
def test_created_at_is_serialised_to_the_same_instant(
    rig: Rig, given: Any, instant: datetime
) -> None:
    """Aware datetimes, ISO strings and epoch seconds arrive as RFC 3339 for the same instant."""
    rig.log(data_id="dp-1", type="rating", value="good", created_at=given)

    assert rig.handler.flush(5.0)

    assert rig.errors.errors == []
    [item] = rig.fake.received
    sent = parse_instant(item["created_at"])
    assert sent.utcoffset() is not None
    assert sent == instant


def test_aware_datetime_with_a_seconds_offset_is_sent_as_valid_rfc3339(rig: Rig) -> None:
    """A datetime whose zone offset has seconds (old local mean times) still reaches Humanloop."""
    lmt = timezone(timedelta(minutes=19, seconds=32))  # Amsterdam local mean time before 1937
    given = datetime(1930, 5, 1, 12, 0, tzinfo=lmt)

    rig.log(data_id="dp-1", type="rating", value="good", created_at=given)

    assert rig.handler.flush(5.0)
    assert rig.errors.errors == []
    [item] = rig.fake.received
    assert parse_instant(item["created_at"]) == given
    assert rig.handler.stats().sent == 1


@pytest.mark.usefixtures("non_utc_local_time")
def test_naive_datetime_is_local_time(rig: Rig) -> None:
    """A naive datetime is read as local time (here UTC+05:30), not as UTC."""
    rig.log(data_id="dp-1", type="rating", value="good", created_at=datetime(2024, 5, 1, 18, 0))

    assert rig.handler.flush(5.0)

    [item] = rig.fake.received
    assert parse_instant(item["created_at"]) == datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)


@pytest.mark.usefixtures("non_utc_local_time")
def test_naive_iso_string_is_local_time(rig: Rig) -> None:
    """An ISO string without an offset is read as local time (here UTC+05:30)."""
    rig.log(data_id="dp-1", type="rating", value="good", created_at="2024-05-01T18:00:00")

    assert rig.handler.flush(5.0)

    [item] = rig.fake.received
    assert parse_instant(item["created_at"]) == datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)


# -- the same records validated as a batch -----------------------------------------------------


def captured(fields: dict[str, Any], timestamp: float = 1714566600.123456) -> Captured:
    """The record a log call with these extra fields captures."""
    read = {name: freeze(value) for name, value in fields.items() if value is not MISSING}
    return (
        read.get("data_id"),
        read.get("type"),
        read.get("value"),
        read.get("user"),
        read.get("created_at"),
        read.get("unset"),
        timestamp,
    )


@pytest.mark.parametrize(("override", "field"), INVALID)
def test_batch_validation_refuses_the_same_records_for_the_same_reason(
    override: dict[str, Any], field: str
) -> None:
    """to_payloads refuses what to_payload refuses, with the same field and message."""
    bad = captured({"data_id": "bad", "type": "rating", "value": "good", **override})
    good = captured({"data_id": "good", "type": "rating", "value": "good"})
    with pytest.raises(FeedbackValidationError) as refused:
        to_payload(bad, None)

    texts, errors = to_payloads([good, bad, good], None)

    assert [json.loads(text)["data_id"] for text in texts] == ["good", "good"]
    [error] = errors
    assert (error.field, error.reason, error.record) == (
        field,
        refused.value.reason,
        refused.value.record,
    )


@pytest.mark.parametrize(
    "fields",
    [
        *({"value": param.values[0]} for param in VALID_VALUES),
        *({"created_at": param.values[0]} for param in CREATED_AT),
        {"unset": True, "value": MISSING},
        {"unset": False},
        {"user": "alice"},
    ],
)
@pytest.mark.parametrize("default_user", [None, "svc"])
def test_batch_validation_sends_the_same_json(
    fields: dict[str, Any], default_user: str | None
) -> None:
    """to_payloads and encode_array give the JSON to_payload gives, and so the same object."""
    item = captured({"data_id": "dp-1", "type": "rating", "value": "good", **fields})
    payload, data = to_payload(item, default_user)

    texts, errors = to_payloads([item, item], default_user)

    assert errors == []
    assert texts == [data.decode("utf-8")] * 2
    assert [list(json.loads(text).items()) for text in texts] == [list(payload.items())] * 2
    assert encode_array(texts) == b"[" + data + b"," + data + b"]"
