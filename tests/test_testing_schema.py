"""The stand-in accepts exactly the bodies the vendored OpenAPI request schema accepts.

The oracle is jsonschema on the ``POST /feedback`` request schema of
``tests/data/humanloop-v4-feedback.openapi.json`` (with its date-time format checked), plus the rule
the schema states only in prose: ``value`` is required unless ``unset`` is true.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from humanloop_logging._fake_validate import is_rfc3339_datetime
from humanloop_logging.testing import FakeHumanloop

SPEC = json.loads(
    (Path(__file__).parent / "data" / "humanloop-v4-feedback.openapi.json").read_text()
)
FORMAT_CHECKER = jsonschema.FormatChecker()


def _validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    # OpenAPI 3.0 schema objects are a Draft 4 dialect; embedding ``components`` next to the schema
    # lets the document's "#/components/..." references resolve locally.
    document = {**schema, "components": SPEC["components"]}
    return jsonschema.Draft4Validator(document, format_checker=FORMAT_CHECKER)


BODY_VALIDATOR = _validator(
    SPEC["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
)
ITEM_VALIDATOR = _validator({"$ref": "#/components/schemas/FeedbackRequest"})
FEEDBACK_TYPES: list[str] = SPEC["components"]["schemas"]["FeedbackType"]["enum"]
FIELDS = ("type", "value", "data_id", "user", "created_at", "unset")


def value_rule_ok(item: dict[str, Any]) -> bool:
    """The rule in the value field's description: value is required unless unset is true."""
    return "value" in item or item.get("unset") is True


def rejected_fields(item: dict[str, Any]) -> set[str]:
    """The fields of one object the oracle finds fault with (a missing required one included)."""
    fields: set[str] = set()
    for error in ITEM_VALIDATOR.iter_errors(item):
        if error.path:
            fields.add(str(error.path[0]))
        elif error.validator == "required":
            fields.update(name for name in error.validator_value if name not in item)
    if not value_rule_ok(item):
        fields.add("value")
    return fields


def item_ok(item: Any) -> bool:
    """The oracle for one array item."""
    return isinstance(item, dict) and not rejected_fields(item)


def rejected_indices(body: list[Any]) -> set[int]:
    """Indices of the array items the oracle rejects."""
    return {index for index, item in enumerate(body) if not item_ok(item)}


def without_id(item: dict[str, Any]) -> dict[str, Any]:
    """An item minus its ``id`` (a request may carry one; the answer replaces it)."""
    return {key: value for key, value in item.items() if key != "id"}


def body_ok(body: Any) -> bool:
    """The oracle for a whole body, from the request schema itself (not from item_ok)."""
    if not BODY_VALIDATOR.is_valid(body):
        return False
    items = body if isinstance(body, list) else [body]
    return all(value_rule_ok(item) for item in items)


# -- strategies ------------------------------------------------------------------------------------
# Bodies are built from valid items, valid items with one field broken or removed, wild items and
# non-objects, so both verdicts are common and many rejections hinge on a single field.


def pick(*strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Choose among ``strategies`` with equal weight (``|`` flattens, weighting by branch count)."""
    return st.sampled_from(strategies).flatmap(lambda strategy: strategy)


finite_floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = pick(st.none(), st.booleans(), st.integers(), finite_floats, st.text(max_size=8))
json_values = st.recursive(
    scalars,
    lambda children: pick(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
wrong_values = pick(
    st.none(),
    st.booleans(),
    st.integers(),
    finite_floats,
    st.text(max_size=8),
    st.lists(scalars, min_size=1, max_size=3),
    st.dictionaries(st.text(max_size=4), scalars, max_size=2),
    json_values,
)

whole_minute_offsets = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60 - 59, 23 * 60 + 59)
)
valid_datetimes = st.builds(
    lambda moment, zone, fmt: fmt(moment.astimezone(zone)),
    st.datetimes(min_value=datetime(1, 1, 2), timezones=st.just(timezone.utc)),
    whole_minute_offsets,
    st.sampled_from(
        [
            lambda moment: moment.isoformat(),
            lambda moment: moment.isoformat(timespec="seconds").replace("T", "t"),
            lambda moment: moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            lambda moment: moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fz"),
        ]
    ),
)
# Month and day edges, leap and non-leap years: where calendar checks go wrong.
calendar_edges = st.builds(
    "{:04d}-{:02d}-{:02d}T12:00:00Z".format,
    pick(st.sampled_from([0, 1, 1900, 2000, 2023, 2024, 2100]), st.integers(0, 9999)),
    st.integers(0, 13),
    st.sampled_from([0, 1, 28, 29, 30, 31, 32, 40]),
)
tricky_datetimes = st.sampled_from(
    [
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:60:00Z",
        "2024-01-01T00:00:60Z",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:00+05:60",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00.000000001-23:59",
        "2024-01-01T00:00:00Z\n",
        "2024-01-01T00:00:00ZZ",
        "2024-01-01T00:00:00",
        "2024-01-01 00:00:00Z",
        "2024-01-01",
        "+2024-01-01T00:00:00Z",
        "\u0662024-01-01T00:00:00Z",
        "2024-01-01T00:00:00+01:00:30",
    ]
)
datetime_like = pick(
    valid_datetimes,
    calendar_edges,
    tricky_datetimes,
    st.text(alphabet="0123456789-:TZtz.+ ", max_size=26),
)

feedback_values = pick(
    st.booleans(),
    st.integers(),
    finite_floats,
    st.text(max_size=8),
    st.lists(st.text(max_size=5), max_size=3),
)
types = pick(st.sampled_from(FEEDBACK_TYPES), st.text(max_size=8))
extra_keys = st.dictionaries(
    st.sampled_from(["id", "source", "metadata", "Type", "value_"]), json_values, max_size=2
)
_OPTIONAL_FIELDS = {
    "data_id": st.text(max_size=8),
    "user": st.text(max_size=8),
    "created_at": valid_datetimes,
    "unset": st.booleans(),
}
valid_items = st.builds(
    lambda base, extra: {**extra, **base},
    pick(
        st.fixed_dictionaries({"type": types, "value": feedback_values}, optional=_OPTIONAL_FIELDS),
        st.fixed_dictionaries(
            {"type": types, "unset": st.just(True)},
            optional={key: value for key, value in _OPTIONAL_FIELDS.items() if key != "unset"},
        ),
    ),
    extra_keys,
)

REMOVE = object()
broken_values = {
    "type": wrong_values,
    "value": pick(
        wrong_values, st.lists(pick(st.text(max_size=3), scalars), min_size=1, max_size=3)
    ),
    "data_id": wrong_values,
    "user": wrong_values,
    "created_at": pick(datetime_like, wrong_values),
    "unset": wrong_values,
}
field_changes = st.sampled_from(FIELDS).flatmap(
    lambda field: st.tuples(st.just(field), pick(st.just(REMOVE), broken_values[field]))
)


def _changed(item: dict[str, Any], change: tuple[str, Any]) -> dict[str, Any]:
    field, replacement = change
    changed = dict(item)
    if replacement is REMOVE:
        changed.pop(field, None)
    else:
        changed[field] = replacement
    return changed


near_valid_items = st.builds(_changed, valid_items, field_changes)
wild_items = st.builds(
    lambda base, extra: {**extra, **base},
    st.fixed_dictionaries(
        {}, optional={field: pick(broken_values[field], feedback_values) for field in FIELDS}
    ),
    extra_keys,
)
items = pick(valid_items, near_valid_items, wild_items, scalars)
bodies = pick(
    valid_items,
    near_valid_items,
    wild_items,
    scalars,
    st.lists(pick(valid_items, near_valid_items), min_size=1, max_size=4),
    st.lists(items, max_size=5),
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeHumanloop]:
    """One stand-in for all examples: starting one per example would dominate the run time."""
    with FakeHumanloop() as server:
        yield server


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One keep-alive client for all examples."""
    with requests.Session() as client:
        yield client


# -- properties ------------------------------------------------------------------------------------


def test_the_oracle_checks_date_time_formats() -> None:
    """The oracle is real: jsonschema here has a date-time checker (rfc3339-validator installed)."""
    assert "date-time" in FORMAT_CHECKER.checkers
    assert not ITEM_VALIDATOR.is_valid({"type": "rating", "created_at": "2023-02-29T00:00:00Z"})
    assert rejected_fields({"value": None, "unset": 1}) == {"type", "value", "unset"}


@settings(max_examples=300, deadline=None)
@given(text=pick(datetime_like, st.text(max_size=30)))
@example(text="2023-02-29T00:00:00Z")
@example(text="2024-02-29T00:00:00z")
@example(text="2024-01-01T00:00:00Z\n")
def test_datetime_check_matches_jsonschema(text: str) -> None:
    """The stand-in's own date-time check agrees with jsonschema's on every string."""
    assert is_rfc3339_datetime(text) == FORMAT_CHECKER.conforms(text, "date-time")


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
@example(body={"type": "rating", "value": None})
@example(body=[{"type": "rating", "unset": "yes"}, {"type": "rating", "unset": True}])
@example(body=[{"type": "rating", "value": ["a", 1]}, {"type": "rating", "value": 1.5}])
@example(body={"type": "rating", "value": 1, "created_at": "2023-02-29T00:00:00Z"})
@example(body=[])
def test_stand_in_accepts_exactly_what_the_schema_accepts(
    fake: FakeHumanloop, session: requests.Session, body: Any
) -> None:
    """200 iff the schema accepts the body; a 422 names exactly the items and fields it rejects."""
    fake.clear()
    response = session.post(
        fake.url,
        data=json.dumps(body),
        headers={"X-API-KEY": fake.api_key, "Content-Type": "application/json"},
        timeout=10,
    )
    expected_ok = body_ok(body)
    event(f"{type(body).__name__} body, {'valid' if expected_ok else 'invalid'}")
    if isinstance(body, list):
        assert expected_ok == (not rejected_indices(body))
    assert response.status_code == (200 if expected_ok else 422), response.text
    answer = response.json()
    if expected_ok:
        sent = body if isinstance(body, list) else [body]
        got = answer if isinstance(body, list) else [answer]
        assert isinstance(answer, list) == isinstance(body, list)
        assert fake.received == sent
        # Each answer is the item as sent, with value always present and the service's own id.
        assert [without_id(item) for item in got] == [
            without_id({**item, "value": item.get("value")}) for item in sent
        ]
        assert all(item["id"].startswith("ann_") for item in got)
        return
    assert fake.received == []
    locs = [tuple(entry["loc"]) for entry in answer["detail"]]
    if isinstance(body, list):
        assert {loc[1] for loc in locs} == rejected_indices(body)
        for index, item in enumerate(body):
            named = {loc[2:] for loc in locs if loc[1] == index}
            if isinstance(item, dict):
                assert named == {(field,) for field in rejected_fields(item)}
            elif index in rejected_indices(body):
                assert named == {()}
    elif isinstance(body, dict):
        assert set(locs) == {("body", field) for field in rejected_fields(body)}
    else:
        assert set(locs) == {("body",)}
