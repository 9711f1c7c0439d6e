"""The standard-library emulation answers every body exactly as pydantic itself does.

The stand-in validates with pydantic when it is installed, on models built like the service's (the
conformance tests in ``tests/fidelity`` check those answers against the real FastAPI services).
Without pydantic it falls back to its own emulation of each flavour; these property tests hold
that emulation to pydantic's answers, body for body: the same status and the same ``loc`` list in
the same order, and for the v1 flavour the same messages too.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from humanloop_logging._fake_validate import (
    ServiceAnswer,
    answer_request,
    body_validator,
    pydantic_available,
)

FEEDBACK_TYPES = ["rating", "action", "issue", "correction", "comment"]
FIELDS = ("type", "value", "data_id", "user", "created_at", "unset")
KEY = "hl-test-key"
HEADERS = {"content-type": "application/json", "x-api-key": KEY}


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


def answer(flavour: str, validator: str, body: Any) -> ServiceAnswer:
    """The stand-in's answer to ``body`` sent as JSON, without the HTTP around it."""
    return answer_request(
        flavour=flavour,
        validator=body_validator(flavour, validator)[1],
        method="POST",
        target="/v4/feedback",
        headers=HEADERS,
        body=json.dumps(body).encode("utf-8"),
        api_key=KEY,
    )


def locs(reply: ServiceAnswer) -> list[Any]:
    """The ``loc`` of each 422 entry, in order (empty for any other answer)."""
    if reply.status != 422:
        return []
    return [entry["loc"] for entry in json.loads(reply.payload)["detail"]]


def without_ids(reply: ServiceAnswer) -> Any:
    """The answer's JSON with the random ``ann_`` ids taken out."""
    if reply.content_type is None or "json" not in reply.content_type:
        return reply.payload
    content = json.loads(reply.payload)
    for item in content if isinstance(content, list) else [content]:
        if isinstance(item, dict):
            item.pop("id", None)
    return content


def flavours() -> list[Any]:
    """Both flavours, each skipped where the installed pydantic cannot be the reference."""
    return [
        pytest.param(
            flavour,
            marks=pytest.mark.skipif(
                not pydantic_available(flavour), reason=f"needs pydantic for the {flavour} flavour"
            ),
        )
        for flavour in ("v1", "v2")
    ]


@pytest.mark.parametrize("flavour", flavours())
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=bodies)
@example(body={"type": "rating", "value": None})
@example(body=[{"type": "rating", "unset": "yes"}, {"type": "rating", "unset": True}])
@example(body=[{"type": "rating", "value": ["a", 1]}, {"type": "rating", "value": 1.5}])
@example(body={"type": "rating", "value": 1, "created_at": "2023-02-29T00:00:00Z"})
@example(body=[{"type": "rating", "value": {}}])
@example(body=[[["type", "rating"], ["value", "x"]]])
@example(body=[])
@example(body=None)
def test_the_emulation_answers_like_pydantic(flavour: str, body: Any) -> None:
    """Same status, same 422 locs in the same order, same 200 body; v1 messages too."""
    reference = answer(flavour, "pydantic", body)
    emulated = answer(flavour, "stdlib", body)
    assert emulated.status == reference.status
    assert locs(emulated) == locs(reference)
    if reference.status == 200 or flavour == "v1":
        assert without_ids(emulated) == without_ids(reference)


@pytest.mark.parametrize("flavour", flavours())
@settings(max_examples=400, deadline=None)
@given(text=pick(datetime_like, st.text(max_size=30)))
@example(text="2023-02-29T00:00:00Z")
@example(text="2024-02-29T00:00:00z")
@example(text="2024-01-01T00:00:00Z\n")
@example(text="1700000000")
@example(text="2024-01-01_00:00:00")
def test_created_at_is_accepted_exactly_where_pydantic_accepts_it(flavour: str, text: str) -> None:
    """The emulation's date-time parsing agrees with pydantic's on every string."""
    body = [{"type": "rating", "value": 1, "created_at": text}]
    assert answer(flavour, "stdlib", body).status == answer(flavour, "pydantic", body).status
