"""Batch validation: ``to_payloads`` and ``encode_array`` give exactly what ``to_payload`` gives.

The batch path writes the JSON of plain records itself and hands everything else to
``to_payload``, so these tests check both halves: that every record, plain or odd, has the same
outcome either way (the same JSON text, character for character, or the same error), and that
plain records really are settled without ``to_payload`` (else the first check would prove little).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_record import Hostile

from humanloop_logging import _record
from humanloop_logging._record import (
    MAX_RECORD_BYTES,
    Captured,
    Unreadable,
    encode_array,
    to_payload,
    to_payloads,
)
from humanloop_logging.exceptions import FeedbackValidationError

pytestmark = pytest.mark.timeout(120)

MAX_DOUBLE = int(sys.float_info.max)
NOW = 1714566600.25


class Text(str):
    """A str subclass: accepted, but sent as a plain str (not as its ``str()``)."""

    def __str__(self) -> str:
        return "Text"


class Whole(int):
    """An int subclass: accepted, but sent as a plain int (not as its ``repr()`` or ``str()``)."""

    def __repr__(self) -> str:
        return "Whole"

    __str__ = __repr__


class Real(float):
    """A float subclass: accepted, but sent as a plain float (not as its ``repr()`` or ``str()``)."""

    def __repr__(self) -> str:
        return "Real"

    __str__ = __repr__


def record(
    *,
    data_id: Any = "dp-1",
    kind: Any = "rating",
    value: Any = "good",
    user: Any = None,
    created_at: Any = None,
    unset: Any = None,
    stamp: Any = NOW,
) -> Captured:
    return (data_id, kind, value, user, created_at, unset, stamp)


# -- the reference: to_payload one record at a time ----------------------------------------------


def shape(payload: dict[str, Any]) -> list[tuple[str, type, Any]]:
    """A payload with its key order and the exact type of every value, list items included."""
    return [
        (key, type(value), [(type(e), e) for e in value] if type(value) is list else value)
        for key, value in payload.items()
    ]


def error_shape(error: FeedbackValidationError) -> tuple[Any, ...]:
    return (type(error), error.field, error.reason, str(error), error.record)


def expected(
    items: Sequence[Captured], default_user: Optional[str]
) -> tuple[list[dict[str, Any]], list[bytes], list[FeedbackValidationError]]:
    payloads: list[dict[str, Any]] = []
    bodies: list[bytes] = []
    errors: list[FeedbackValidationError] = []
    for item in items:
        try:
            payload, body = to_payload(item, default_user)
        except FeedbackValidationError as error:
            errors.append(error)
        else:
            payloads.append(payload)
            bodies.append(body)
    return payloads, bodies, errors


def assert_same_as_one_by_one(items: Sequence[Captured], default_user: Optional[str]) -> None:
    texts, errors = to_payloads(items, default_user)
    want_payloads, want_bodies, want_errors = expected(items, default_user)
    assert all(type(text) is str for text in texts)
    assert texts == [body.decode("utf-8") for body in want_bodies]
    # Read back, each text is the request object itself: keys, key order, exact value types.
    assert [shape(json.loads(text)) for text in texts] == [shape(p) for p in want_payloads]
    assert [error_shape(e) for e in errors] == [error_shape(e) for e in want_errors]
    assert encode_array(texts) == b"[" + b",".join(want_bodies) + b"]"
    assert encode_array(tuple(texts)) == encode_array(texts)


@contextmanager
def one_by_one() -> Iterator[list[Captured]]:
    """The records the batch path hands to ``to_payload`` meanwhile."""
    calls: list[Captured] = []

    def counting(item: Captured, default_user: Optional[str]) -> tuple[dict[str, Any], bytes]:
        calls.append(item)
        return to_payload(item, default_user)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_record, "to_payload", counting)
        yield calls


@pytest.fixture
def one_by_one_calls() -> Iterator[list[Captured]]:
    with one_by_one() as calls:
        yield calls


# -- what the generator mixes -------------------------------------------------------------------

plain_text = st.text(max_size=12)
lone_surrogate_text = st.text(
    alphabet=st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr)),
    min_size=1,
    max_size=6,
)

# Strings near the size limit: with whatever else a record holds, some land either side of it.
LONG_TEXTS = [
    "a" * (MAX_RECORD_BYTES - 120),
    "a" * (MAX_RECORD_BYTES - 80),
    "a" * (MAX_RECORD_BYTES - 60),
    "\x01" * (MAX_RECORD_BYTES // 6 - 12),  # 6 bytes each as JSON
    "\x01" * (MAX_RECORD_BYTES // 6),
    "\U0001f600" * (MAX_RECORD_BYTES // 4 - 20),  # 4 bytes each
    '"' * (MAX_RECORD_BYTES // 2 - 40),  # 2 bytes each
]
long_text = st.sampled_from(LONG_TEXTS)


def odd_text() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.just(""),
        lone_surrogate_text,
        plain_text.map(Text),
        lone_surrogate_text.map(Text),
        st.none(),
        st.integers(-5, 5),
        st.binary(max_size=4),
        st.just(Unreadable("capture raised RuntimeError")),
        st.builds(Hostile),
        long_text,
    )


text_field = st.one_of(plain_text.filter(bool), odd_text())

plain_value = st.one_of(
    plain_text,
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(plain_text, max_size=4).map(tuple),
)
odd_value = st.one_of(
    st.integers(),
    st.sampled_from(
        [MAX_DOUBLE, -MAX_DOUBLE, MAX_DOUBLE + 1, -MAX_DOUBLE - 1, 2**1024, -(10**400), 2**53 + 1]
    ),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, sys.float_info.max]),
    st.integers(-100, 100).map(Whole),
    st.floats().map(Real),
    st.decimals(),
    st.fractions(),
    odd_text(),
    st.lists(st.one_of(plain_text, odd_text()), max_size=4).map(tuple),
    st.lists(plain_text, max_size=3),  # a list that was never frozen
    st.tuples(st.tuples(plain_text)),
    st.just({"a": 1}),
    st.just(date(2024, 5, 1)),
    st.just(tuple([""] * (MAX_RECORD_BYTES // 3))),  # 3 bytes an item, no characters
)
value_field = st.one_of(plain_value, odd_value)

offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
aware = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets
)
naive = st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2999, 12, 30))
created_at_field = st.one_of(
    st.none(),
    naive,
    st.datetimes(),  # includes years whose local time overflows
    aware,
    aware.map(lambda moment: moment.isoformat()),
    aware.map(lambda moment: moment.astimezone(timezone.utc).isoformat()[:-6] + "Z"),
    aware.map(lambda moment: moment.astimezone(timezone.utc).isoformat()[:-6] + "z"),
    naive.map(lambda moment: moment.isoformat(sep=" ")),
    st.dates().map(lambda day: day.isoformat()),
    st.dates(),
    st.integers(-(10**12), 10**12),
    st.floats(),
    st.sampled_from([1e20, -1e20, 253402300800.0, 253402300799.9999995, True, False]),
    st.text(max_size=8),
    st.just(Unreadable("capture raised ValueError")),
)
unset_field = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, 1, "yes"]), st.builds(Hostile)
)

# Capture timestamps: mostly those of time.time(), and every kind that cannot come from it.
plain_stamp = st.floats(min_value=0.0, max_value=4e9)
odd_stamp = st.one_of(
    st.floats(),
    st.integers(-(10**12), 10**12),
    st.sampled_from(
        [
            -0.0,
            -1.5,
            1e20,
            _record._FAST_STAMP_END,
            math.nextafter(_record._FAST_STAMP_END, 0.0),
            253402300799.9999995,
            253402300800.0,
        ]
    ),
)


@st.composite
def plain_records(draw: st.DrawFn) -> Captured:
    """What applications log nearly always: the batch path's own case."""
    return record(
        data_id=draw(plain_text.filter(bool)),
        kind=draw(plain_text.filter(bool)),
        value=draw(plain_value),
        user=draw(st.one_of(st.none(), plain_text)),
        stamp=draw(plain_stamp),
    )


@st.composite
def any_records(draw: st.DrawFn) -> Any:
    """Every field may be odd, alone or with others."""
    made = record(
        data_id=draw(text_field),
        kind=draw(text_field),
        value=draw(value_field),
        user=draw(st.one_of(st.none(), text_field)),
        created_at=draw(created_at_field),
        unset=draw(unset_field),
        stamp=draw(st.one_of(plain_stamp, odd_stamp)),
    )
    if draw(st.integers(0, 30)) == 0:  # not the seven fields of a captured record
        return made[: draw(st.integers(0, 6))]
    return made


@st.composite
def nearly_plain_records(draw: st.DrawFn) -> Captured:
    """A plain record with one field odd: the closest misses of the batch path."""
    fields = list(draw(plain_records()))
    index = draw(st.integers(0, 6))
    fields[index] = draw(
        [
            odd_text(),
            odd_text(),
            odd_value,
            odd_text(),
            created_at_field.filter(lambda given: given is not None),
            unset_field.filter(lambda given: given is not None),
            odd_stamp,
        ][index]
    )
    return (
        fields[0],
        fields[1],
        fields[2],
        fields[3],
        fields[4],
        fields[5],
        fields[6],
    )


records = st.one_of(plain_records(), nearly_plain_records(), any_records())
default_users = st.one_of(
    st.none(), st.just("svc"), st.just(""), st.just(Text("svc")), lone_surrogate_text, st.just(5)
)

SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(item=records, default_user=default_users)
def test_one_record_has_the_outcome_to_payload_gives_it(item: Captured, default_user: Any) -> None:
    """Same object (keys, key order, value types) or same error (field, message, record)."""
    assert_same_as_one_by_one([item], default_user)


@SETTINGS
@given(items=st.lists(records, max_size=25), default_user=default_users)
def test_a_batch_has_the_outcomes_to_payload_gives_its_records(
    items: list[Captured], default_user: Any
) -> None:
    """Valid records in order, refusals in order, and one body equal to the joined records."""
    assert_same_as_one_by_one(items, default_user)


@SETTINGS
@given(items=st.lists(plain_records(), max_size=25), default_user=st.sampled_from([None, "svc"]))
def test_plain_records_never_take_the_one_by_one_path(
    items: list[Captured], default_user: Optional[str]
) -> None:
    with one_by_one() as calls:
        texts, errors = to_payloads(items, default_user)
    assert calls == []
    assert errors == []
    assert len(texts) == len(items)
    assert_same_as_one_by_one(items, default_user)


# Each kind of odd field, alone in an otherwise plain record, whatever the generator happens to draw.
ODD_FIELDS: dict[str, list[Any]] = {
    "data_id": ["", Text("dp"), "dp\udc80", 5, None, b"dp", Unreadable("raised"), Hostile()],
    "type": ["", Text("rating"), "\ud800", 5, None, b"rating", Unreadable("raised"), Hostile()],
    "value": [
        *(MAX_DOUBLE, -MAX_DOUBLE, MAX_DOUBLE + 1, -MAX_DOUBLE - 1, 2**1024, -(10**400)),
        *(math.nan, math.inf, -math.inf, Whole(3), Real(2.5), Real(math.nan), Text("good")),
        *(Decimal("2.5"), Decimal("NaN"), Fraction(1, 3), "\udfff", None, b"good", ["a"]),
        *(("a", Text("b")), ("a", 1), ("a", None), ("\ud83d",), (("a",),), {"a": 1}, {"a"}),
        *(Unreadable("raised"), Hostile(), date(2024, 5, 1)),
    ],
    "user": ["", Text("alice"), "al\udc00ice", 5, b"alice", Unreadable("raised"), Hostile()],
    "created_at": [
        *(datetime(2024, 5, 1, 18, 0), datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)),
        *("2024-05-01T12:30:00Z", "2024-05-01T12:30:00z", "2024-05-01T14:30:00+02:00"),
        *("2024-05-01 12:30:00", "2024-05-01", "2024-13-01T00:00:00Z", "yesterday", ""),
        *(date(2024, 5, 1), 1714566600, 1714566600.5, 1e20, -1e20, math.nan, True, [2024]),
        *(Unreadable("raised"), Hostile()),
    ],
    "unset": [True, False, 0, 1, "yes", Unreadable("raised"), Hostile()],
    "stamp": [1714566600, True, -1.5, -0.0, 1e20, math.nan, math.inf, 253402300799.9999995],
}
FIELD_INDEX = {"data_id": 0, "type": 1, "value": 2, "user": 3, "created_at": 4, "unset": 5}


@pytest.mark.parametrize(
    ("field", "odd"),
    [(field, odd) for field, odds in ODD_FIELDS.items() for odd in odds],
    ids=lambda given: given if isinstance(given, str) and given in ODD_FIELDS else None,
)
@pytest.mark.parametrize("default_user", [None, "svc"])
def test_one_odd_field_among_plain_records(field: str, odd: Any, default_user: Any) -> None:
    fields = list(record(user="alice" if field != "user" else None))
    fields[FIELD_INDEX.get(field, 6)] = odd
    odd_record = (fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6])
    plain = [record(data_id=f"dp-{i}", value=("a", "b") if i % 2 else 4) for i in range(5)]
    assert_same_as_one_by_one([*plain[:2], odd_record, *plain[2:]], default_user)
    assert_same_as_one_by_one([odd_record], default_user)


# -- the JSON written for plain records, spelled out -------------------------------------------

AT = '"created_at":"2024-05-01T12:30:00.250000+00:00"'

# (the record, the default user, its JSON): the service's field order, json's spelling of values.
PLAIN_JSON: list[tuple[Captured, Optional[str], str]] = [
    (record(), None, f'{{"type":"rating","value":"good","data_id":"dp-1",{AT}}}'),
    (record(), "svc", f'{{"type":"rating","value":"good","data_id":"dp-1","user":"svc",{AT}}}'),
    (
        record(user="alice"),
        "svc",
        f'{{"type":"rating","value":"good","data_id":"dp-1","user":"alice",{AT}}}',
    ),
    (record(value=True), None, f'{{"type":"rating","value":true,"data_id":"dp-1",{AT}}}'),
    (record(value=False), None, f'{{"type":"rating","value":false,"data_id":"dp-1",{AT}}}'),
    (record(value=0), None, f'{{"type":"rating","value":0,"data_id":"dp-1",{AT}}}'),
    (record(value=-7), None, f'{{"type":"rating","value":-7,"data_id":"dp-1",{AT}}}'),
    (
        record(value=2**53 + 1),
        None,
        f'{{"type":"rating","value":9007199254740993,"data_id":"dp-1",{AT}}}',
    ),
    (
        record(value=-MAX_DOUBLE),
        None,
        f'{{"type":"rating","value":-{MAX_DOUBLE:d},"data_id":"dp-1",{AT}}}',
    ),
    (record(value=1.0), None, f'{{"type":"rating","value":1.0,"data_id":"dp-1",{AT}}}'),
    (record(value=100.0), None, f'{{"type":"rating","value":100.0,"data_id":"dp-1",{AT}}}'),
    (record(value=-0.0), None, f'{{"type":"rating","value":-0.0,"data_id":"dp-1",{AT}}}'),
    (
        record(value=0.1 + 0.2),
        None,
        f'{{"type":"rating","value":0.30000000000000004,"data_id":"dp-1",{AT}}}',
    ),
    (record(value=1e16), None, f'{{"type":"rating","value":1e+16,"data_id":"dp-1",{AT}}}'),
    (record(value=1e-05), None, f'{{"type":"rating","value":1e-05,"data_id":"dp-1",{AT}}}'),
    (
        record(value=123456789012345678.0),
        None,
        f'{{"type":"rating","value":1.2345678901234568e+17,"data_id":"dp-1",{AT}}}',
    ),
    (record(value=5e-324), None, f'{{"type":"rating","value":5e-324,"data_id":"dp-1",{AT}}}'),
    (
        record(value=sys.float_info.max),
        None,
        f'{{"type":"rating","value":1.7976931348623157e+308,"data_id":"dp-1",{AT}}}',
    ),
    (
        record(value=("a", "b")),
        None,
        f'{{"type":"rating","value":["a","b"],"data_id":"dp-1",{AT}}}',
    ),
    (record(value=()), None, f'{{"type":"rating","value":[],"data_id":"dp-1",{AT}}}'),
    (
        record(value=("", 'q"')),
        None,
        f'{{"type":"rating","value":["","q\\""],"data_id":"dp-1",{AT}}}',
    ),
    (
        record(value='say "hi" \\ \n\r\t\b\f\x00\x1f\x7f \u00e9 \u2028 \U0001f600'),
        None,
        '{"type":"rating","value":"say \\"hi\\" \\\\ \\n\\r\\t\\b\\f\\u0000\\u001f\x7f \u00e9 \u2028 '
        f'\U0001f600","data_id":"dp-1",{AT}}}',
    ),
    (
        record(kind='a"b', data_id="caf\u00e9\n", user="\U0001f600"),
        None,
        f'{{"type":"a\\"b","value":"good","data_id":"caf\u00e9\\n","user":"\U0001f600",{AT}}}',
    ),
    (
        record(stamp=1714566600.0),
        None,
        '{"type":"rating","value":"good","data_id":"dp-1","created_at":"2024-05-01T12:30:00+00:00"}',
    ),
    (  # rounds up into the next second
        record(stamp=1714566600.9999995),
        None,
        '{"type":"rating","value":"good","data_id":"dp-1","created_at":"2024-05-01T12:30:01+00:00"}',
    ),
    (
        record(stamp=1714566600.0000014),
        None,
        '{"type":"rating","value":"good","data_id":"dp-1",'
        '"created_at":"2024-05-01T12:30:00.000001+00:00"}',
    ),
    (
        record(stamp=0.0),
        None,
        '{"type":"rating","value":"good","data_id":"dp-1","created_at":"1970-01-01T00:00:00+00:00"}',
    ),
]


@pytest.mark.parametrize(("item", "default_user", "text"), PLAIN_JSON)
def test_plain_records_are_written_as_json_writes_them(
    item: Captured, default_user: Optional[str], text: str, one_by_one_calls: list[Captured]
) -> None:
    """Key order, ``true``/``false``, ``repr`` of numbers, escapes: character for character."""
    assert to_payloads([item], default_user) == ([text], [])
    assert one_by_one_calls == []  # written by the batch path itself
    assert to_payload(item, default_user)[1] == text.encode("utf-8")
    assert encode_array([text, text]) == f"[{text},{text}]".encode()


@pytest.mark.parametrize(
    ("value", "shown"),
    [(Whole(3), "3"), (Real(2.5), "2.5"), (Real(-0.0), "-0.0"), (Text("good"), '"good"')],
    ids=repr,
)
def test_subclassed_values_are_written_as_the_plain_value(value: Any, shown: str) -> None:
    """Never by the subclass's own ``repr()`` or ``str()``."""
    texts, errors = to_payloads([record(value=value)], None)
    assert (texts, errors) == ([f'{{"type":"rating","value":{shown},"data_id":"dp-1",{AT}}}'], [])


def test_a_shared_type_or_user_is_checked_for_every_record_that_uses_it(
    one_by_one_calls: list[Captured],
) -> None:
    """The batch path writes a type or user once per batch; each record using it still answers."""
    bad = "r\udc80"
    items = [
        record(kind=bad, data_id="a"),
        record(data_id="b", user=bad),
        record(data_id="c"),
        record(kind=bad, data_id="d"),
        record(data_id="e", user=bad),
        record(data_id="f", user="alice"),
    ]
    texts, errors = to_payloads(items, "svc")
    assert [json.loads(text)["data_id"] for text in texts] == ["c", "f"]
    assert [(error.field, error.record["data_id"]) for error in errors] == [
        ("type", "'a'"),
        ("user", "'b'"),
        ("type", "'d'"),
        ("user", "'e'"),
    ]
    assert len(one_by_one_calls) == 4
    assert_same_as_one_by_one(items, "svc")
    assert_same_as_one_by_one(items, bad)


def test_a_long_type_shared_by_records_counts_toward_each() -> None:
    """Written once for the batch, a type still makes each of its records as long as it is."""
    kind = "k" * (MAX_RECORD_BYTES // 2)
    fits = record(kind=kind, data_id="fits", value="v" * (MAX_RECORD_BYTES // 2 - 200))
    over = record(kind=kind, data_id="over", value="v" * (MAX_RECORD_BYTES // 2))
    texts, errors = to_payloads([fits, over, fits], "svc")
    assert (len(texts), [error.field for error in errors]) == (2, ["record"])
    assert_same_as_one_by_one([fits, over, fits], "svc")


# -- created_at from the capture timestamp ------------------------------------------------------


def halfway_stamps() -> list[float]:
    """Timestamps whose fraction is exactly halfway between two microseconds, as CPython sees it."""
    found: list[float] = []
    for second in (0, 1, 1714566600, 2**31, 4102444800):
        for micros in range(0, 2000):
            stamp = second + (micros + 0.5) / 1e6
            if math.modf(stamp)[0] * 1e6 % 1 == 0.5:
                found.append(stamp)
    return found


def edge_stamps() -> list[float]:
    stamps = [0.0, -0.0, 5e-324, 1.0, 0.5, 1e-6, 0.5e-6, 1.5e-6, 2.5e-6, 0.9999995, 0.9999994999]
    for second in (0.0, 59.0, 86399.0, 951782399.0, 1714566599.0, 2**31 - 1.0, 32503679999.0):
        for fraction in (0.0, 0.4999995, 0.5, 0.9999994, 0.9999995, 0.9999996, 0.99999999):
            stamp = second + fraction
            stamps += [stamp, math.nextafter(stamp, 0.0), math.nextafter(stamp, math.inf)]
    return [stamp for stamp in stamps if stamp < _record._FAST_STAMP_END]


def test_created_at_from_the_capture_timestamp_is_what_fromtimestamp_writes(
    one_by_one_calls: list[Captured],
) -> None:
    """Byte for byte, with round-half-even microseconds, carries into the next second, no .000000."""
    rng = random.Random(20240501)
    halfway = halfway_stamps()
    assert len(halfway) > 10  # the rounding rule is really exercised
    stamps = (
        edge_stamps()
        + halfway
        + [rng.uniform(0.0, 4e9) for _ in range(3000)]
        + [time.time() + rng.uniform(-1.0, 1.0) for _ in range(1000)]
        + [rng.uniform(0.0, _record._FAST_STAMP_END) for _ in range(1000)]
        + [float(rng.randrange(0, 4 * 10**9)) for _ in range(200)]
        + [rng.randrange(0, 4 * 10**9) + rng.randrange(10**6) / 1e6 for _ in range(2000)]
    )
    rng.shuffle(stamps)
    items = [record(data_id=f"dp-{i}", stamp=stamp) for i, stamp in enumerate(stamps)]

    texts, errors = to_payloads(items, None)

    assert one_by_one_calls == []
    assert errors == []
    sent = [json.loads(text)["created_at"] for text in texts]
    assert sent == [datetime.fromtimestamp(s, timezone.utc).isoformat() for s in stamps]
    # Both ways of rounding to a whole second were met: up into the next one, and down.
    whole = [s for s, text in zip(stamps, sent) if "." not in text]
    assert any(s != math.floor(s) and round(s) > s for s in whole)
    assert any(s != math.floor(s) and round(s) < s for s in whole)


@SETTINGS
@given(stamps=st.lists(st.floats(min_value=0.0, max_value=4e10), min_size=1, max_size=50))
def test_created_at_matches_fromtimestamp_for_any_timestamp(stamps: list[float]) -> None:
    items = [record(stamp=stamp) for stamp in stamps]
    texts, errors = to_payloads(items, None)
    want = [to_payload(item, None)[0]["created_at"] for item in items]
    assert errors == []
    assert [json.loads(text)["created_at"] for text in texts] == want


# -- the size limit and lone surrogates, settled once per batch --------------------------------


def body_size(item: Captured) -> int:
    return len(to_payload(item, "svc")[1])


@pytest.mark.parametrize(
    ("unit", "field"),
    [
        ("a", "value"),
        ("\x1f", "value"),
        ("\n", "value"),
        ("\u00e9", "value"),
        ("\u20ac", "value"),
        ("\U0001f600", "value"),
        ("a", "data_id"),
        ("\x01", "user"),
        ("\x01", "type"),
    ],
    ids=repr,
)
def test_a_record_of_exactly_the_limit_is_sent_and_one_byte_more_is_refused(
    unit: str, field: str
) -> None:
    """Whatever its characters cost as JSON, the limit is the exact size of the record's JSON."""
    index = ["data_id", "type", "value", "user"].index(field)

    def with_text(text: str) -> Captured:
        fields = list(record(user="alice"))
        fields[index] = text
        return (fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6])

    base = body_size(with_text("a")) - 1  # the record with that string empty
    per_unit = body_size(with_text("a" + unit)) - base - 1
    units, rest = divmod(MAX_RECORD_BYTES - base - 1, per_unit)
    at_limit = with_text("a" * (rest + 1) + unit * units)
    over = with_text("a" * (rest + 2) + unit * units)
    assert body_size(at_limit) == MAX_RECORD_BYTES

    for items in ([at_limit], [over], [at_limit, over, record()], [record(), over, at_limit]):
        assert_same_as_one_by_one(items, "svc")
    texts, errors = to_payloads([at_limit, over], "svc")
    assert len(texts) == 1
    assert [(error.field, error.reason) for error in errors] == [
        (
            "record",
            f"is {MAX_RECORD_BYTES + 1} bytes as JSON; the limit is {MAX_RECORD_BYTES} bytes",
        )
    ]


def test_a_list_of_many_empty_strings_counts_toward_the_limit() -> None:
    """An empty string costs nothing in characters but three bytes in a JSON array."""
    base = body_size(record(value=()))  # "[]"
    items = MAX_RECORD_BYTES - base  # the first item costs 2 bytes, each further one 3
    fits = record(value=("",) * ((items + 1) // 3))
    over = record(value=fits[2] + ("",))
    assert body_size(fits) > MAX_RECORD_BYTES - 3
    texts, errors = to_payloads([fits, over], "svc")
    assert (len(texts), [error.field for error in errors]) == (1, ["record"])
    assert_same_as_one_by_one([fits, over], "svc")


def test_the_bound_on_a_record_covers_its_largest_json() -> None:
    """Every byte a record takes beyond 6 per character and 3 per list item is in the overhead."""
    stamp = math.nextafter(_record._FAST_STAMP_END, 0.0)
    for value in (-MAX_DOUBLE, MAX_DOUBLE, -sys.float_info.max, 5e-324, False, ("",), ("\x00",)):
        for text in ("", "\x00", "\x1f" * 3):
            item = record(
                data_id=text or "x", kind=text or "x", value=value, user=text, stamp=stamp
            )
            chars = sum(len(s) for s in item[:4] if isinstance(s, str))
            elements = 0
            if isinstance(value, tuple):
                chars += sum(len(s) for s in value)
                elements = len(value)
            assert body_size(item) <= 6 * chars + 3 * elements + _record._RECORD_OVERHEAD


def test_long_texts_that_fit_are_checked_record_by_record_not_one_by_one(
    one_by_one_calls: list[Captured],
) -> None:
    """A batch whose texts add up past the bound is measured per record, without to_payload."""
    items = [record(data_id=f"dp-{i}", value="\u00e9" * 4000) for i in range(100)]

    texts, errors = to_payloads(items, "svc")

    assert one_by_one_calls == []
    assert (len(texts), errors) == (100, [])
    assert_same_as_one_by_one(items, "svc")


def test_a_lone_surrogate_refuses_only_its_record(one_by_one_calls: list[Captured]) -> None:
    """One bad string costs its own record, the same error as ever; the rest are still sent."""
    for field in range(4):
        bad = list(record(data_id="bad", user="alice"))
        bad[field] = "x\udc80" if field != 2 else ("ok", "\ud83d")
        items = [record(data_id=f"dp-{i}") for i in range(50)]
        items.insert(17, (bad[0], bad[1], bad[2], bad[3], bad[4], bad[5], bad[6]))
        one_by_one_calls.clear()

        texts, errors = to_payloads(items, "svc")

        assert len(texts) == 50
        assert [error.field for error in errors] == [["data_id", "type", "value", "user"][field]]
        assert len(one_by_one_calls) == 1
        assert_same_as_one_by_one(items, "svc")


def test_surrogates_split_across_strings_do_not_pair_up() -> None:
    """A high surrogate ending one string and a low one starting the next are both still lone."""
    items = [record(data_id="dp-1", value="a\ud83d"), record(data_id="\ude00b")]
    texts, errors = to_payloads(items, None)
    assert texts == []
    assert [error.field for error in errors] == ["value", "data_id"]
    assert_same_as_one_by_one(items, None)


def test_encode_array_of_nothing_is_an_empty_array() -> None:
    assert encode_array([]) == b"[]"
    assert to_payloads([], "svc") == ([], [])
