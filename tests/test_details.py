"""Reading a 422 ``detail``: the items named, their fields without union tags, readable text.

The fixtures in ``tests/data/details-pydantic-v1.json`` and ``details-pydantic-v2.json`` are real
answers of the FastAPI services in ``tests/fidelity`` (FastAPI 0.99 on pydantic 1.10, and current
FastAPI on pydantic 2), captured with ``PYTHONPATH=tests python -m fidelity.capture --write``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from humanloop_logging._details import (
    body_errors,
    describe,
    format_rejection,
    item_errors,
    merge_messages,
)

DATA = Path(__file__).parent / "data"
TAG = "list[FeedbackRequest]"


def captured(flavour: str) -> dict[str, tuple[int, list[Any]]]:
    """name -> (items sent, detail) for one service's captured 422s."""
    entries = json.loads((DATA / f"details-pydantic-{flavour}.json").read_text())
    return {entry["name"]: (entry["n"], entry["detail"]) for entry in entries}


V1 = captured("v1")
V2 = captured("v2")
BAD = {1: [50], 5: [3, 20, 50, 77, 99], 20: list(range(0, 100, 5))}
FIELD = re.compile(r"^(|[a-z_]+(\[\d+\])*)$")


def fields(named: dict[int, list[tuple[str, str]]]) -> dict[int, list[str]]:
    """The fields alone, per item."""
    return {index: [field for field, _ in entries] for index, entries in named.items()}


@pytest.mark.parametrize("flavour", ["v1", "v2"])
@pytest.mark.parametrize("k", [1, 5, 20])
@pytest.mark.parametrize(("spoil", "field"), [("object value", "value"), ("null type", "type")])
def test_every_bad_item_of_a_batch_of_100_is_named_once(
    flavour: str, k: int, spoil: str, field: str
) -> None:
    """k bad items of 100: exactly those k indexes, each with its one field, in order."""
    n, detail = (V1 if flavour == "v1" else V2)[
        f"100 items, {k} with a{'n' if spoil[0] == 'o' else ''} {spoil}"
    ]
    named = item_errors(detail, n)
    assert fields(named) == {index: [field] for index in BAD[k]}
    assert list(named) == sorted(named)
    assert body_errors(detail, n) == []


@pytest.mark.parametrize("flavour", ["v1", "v2"])
def test_fields_never_carry_union_tags(flavour: str) -> None:
    """No field in any captured answer keeps a tag: only names and [index] parts remain."""
    for n, detail in (V1 if flavour == "v1" else V2).values():
        for index, entries in item_errors(detail, n).items():
            assert 0 <= index < n
            for field, message in entries:
                assert FIELD.match(field), field
                assert message


def test_v1_lists_a_bad_value_once_per_union_member_and_they_are_merged() -> None:
    """pydantic 1 repeats ["body", i, "value"] four times; one field with one message remains."""
    n, detail = V1["100 items, 1 with an object value"]
    assert sum(entry["loc"] == ["body", 50, "value"] for entry in detail) == 4
    assert ["body"] in [entry["loc"] for entry in detail]  # the object branch, ignored
    assert item_errors(detail, n) == {
        50: [
            (
                "value",
                "value could not be parsed to a boolean; value is not a valid float or list; "
                "str type expected",
            )
        ]
    }


def test_v2_tags_are_stripped_and_the_other_branch_is_ignored() -> None:
    """pydantic 2's list and member tags go; ["body", "FeedbackRequest"] and its echo are ignored."""
    n, detail = V2["value a list with a number"]
    locs = [entry["loc"] for entry in detail]
    assert ["body", TAG, 1, "value", "list[str]", 1] in locs
    assert ["body", "FeedbackRequest"] in locs
    assert item_errors(detail, n) == {
        1: [
            ("value", "Input should be a valid boolean, number or string"),
            ("value[1]", "Input should be a valid string"),
            ("value[3]", "Input should be a valid string"),
        ]
    }


def test_v2_names_a_field_the_v1_service_coerced() -> None:
    """data_id 5.5 is "5.5" to pydantic 1 (no 422 captured) and refused by pydantic 2."""
    assert "data_id a number" not in V1
    n, detail = V2["data_id a number"]
    assert item_errors(detail, n) == {1: [("data_id", "Input should be a valid string")]}


@pytest.mark.parametrize(
    ("flavour", "message"), [("v1", "field required"), ("v2", "Field required")]
)
def test_a_missing_field_is_read_like_the_other_errors(flavour: str, message: str) -> None:
    """A "field required" entry names its item and field in either flavour."""
    n, detail = (V1 if flavour == "v1" else V2)["type missing"]
    assert item_errors(detail, n) == {1: [("type", message)]}


@pytest.mark.parametrize("flavour", ["v1", "v2"])
def test_an_item_that_is_not_an_object_has_the_empty_field(flavour: str) -> None:
    """["body", 2] names item 2 as a whole: the field is "", and describe() shows the reason alone."""
    n, detail = (V1 if flavour == "v1" else V2)["an item that is not an object"]
    named = item_errors(detail, n)
    assert fields(named) == {1: [""], 2: [""]}
    assert describe(named[1]) == named[1][0][1]


def test_several_fields_of_one_item_keep_the_services_order() -> None:
    """Fields come in the order the service named them first (the model's field order)."""
    n, detail = V2["everything wrong in one item"]
    assert fields(item_errors(detail, n)) == {0: ["type", "value", "user", "unset"]}
    n, detail = V1["type missing and created_at bad"]
    assert fields(item_errors(detail, n)) == {0: ["type", "created_at"]}


def test_a_422_that_names_no_item_leaves_its_reason_in_body_errors() -> None:
    """An entry at ``["body"]`` alone names no item: its reason is left in body_errors. (pydantic 1
    reads ``[{"type": ..., "value": ...}]`` as one object, ``{"type": "value"}``, which the
    service accepts; pydantic 2 names the item.)"""
    detail = [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}]
    assert item_errors(detail, 1) == {}
    assert body_errors(detail, 1) == ["field required"]
    assert "a two-key object" not in V1  # a 200 from the pydantic 1 service: nothing captured
    n, detail = V2["a two-key object"]
    assert fields(item_errors(detail, n)) == {0: ["value"]}
    assert body_errors(detail, n) == []


def test_indexes_outside_the_batch_and_other_locations_are_ignored() -> None:
    """Only ["body", i, ...] with 0 <= i < n counts; headers, bools and strings are not indexes."""
    detail = [
        {"loc": ["body", 5, "type"], "msg": "field required", "type": "value_error.missing"},
        {"loc": ["body", -1, "type"], "msg": "m", "type": "t"},
        {"loc": ["body", True, "type"], "msg": "m", "type": "t"},
        {"loc": ["body", "0", "type"], "msg": "m", "type": "t"},
        {"loc": ["header", 0, "x-api-key"], "msg": "m", "type": "t"},
        {"loc": "body", "msg": "m", "type": "t"},
        "not an entry",
        {"msg": "no loc"},
        {"loc": ["body", 1, "user"], "msg": "str type expected", "type": "type_error.str"},
    ]
    assert item_errors(detail, 2) == {1: [("user", "str type expected")]}
    assert item_errors({"detail": detail}, 2) == {}
    assert item_errors("Not Found", 2) == {}


def test_a_json_error_is_about_the_body_not_an_item() -> None:
    """["body", 28] of a JSON error is a character offset: body_errors says so, no item is named."""
    v1 = [
        {
            "loc": ["body", 1],
            "msg": "Expecting value: line 1 column 2 (char 1)",
            "type": "value_error.jsondecode",
            "ctx": {"msg": "Expecting value", "doc": "[", "pos": 1, "lineno": 1, "colno": 2},
        }
    ]
    v2 = [
        {
            "type": "json_invalid",
            "loc": ["body", 1],
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": "Expecting value"},
        }
    ]
    for detail in (v1, v2):
        assert item_errors(detail, 3) == {}
        assert body_errors(detail, 3) == [
            "body is not valid JSON: Expecting value (at character 1)"
        ]


def test_body_errors_skip_the_object_branch_but_keep_the_array_branch() -> None:
    """A body that is no array: the array branch's complaint stays, the object branch's goes."""
    v1 = [
        {"loc": ["body"], "msg": "value is not a valid list", "type": "type_error.list"},
        {"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"},
    ]
    v2 = [
        {"type": "list_type", "loc": ["body", TAG], "msg": "Input should be a valid list"},
        {
            "type": "model_attributes_type",
            "loc": ["body", "FeedbackRequest"],
            "msg": "Input should be a valid dictionary or object to extract fields from",
        },
    ]
    assert body_errors(v1, 0) == ["value is not a valid list"]
    assert body_errors(v2, 0) == ["Input should be a valid list"]
    assert body_errors("Invalid API key", 1) == ["Invalid API key"]
    assert body_errors(None, 1) == []


def test_merge_messages() -> None:
    """Duplicates collapse; messages differing in their last word share the rest."""
    assert merge_messages(["field required", "field required"]) == "field required"
    assert (
        merge_messages(
            [
                "Input should be a valid boolean",
                "Input should be a valid number",
                "Input should be a valid list",
                "Input should be a valid string",
            ]
        )
        == "Input should be a valid boolean, number, list or string"
    )
    assert merge_messages(["str type expected", "bad"]) == "str type expected; bad"
    assert merge_messages(["", ""]) == "invalid"
    assert merge_messages([]) == "invalid"


def test_an_entry_without_msg_falls_back_to_its_type() -> None:
    """A detail entry lacking msg is described by its type rather than dropped."""
    detail = [{"loc": ["body", 0, "value"], "type": "value_error.custom"}]
    assert item_errors(detail, 1) == {0: [("value", "value_error.custom")]}


def test_describe_and_format_rejection_are_one_readable_line_per_item() -> None:
    """``field: reason`` joined by "; ", one line per item, no status and no JSON."""
    n, detail = V2["100 items, 5 with a null type"]
    named = item_errors(detail, n)
    text = format_rejection(named, label=lambda index: f"data_id='data_{index}'")
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[0] == (
        "data_id='data_3': type: Input should be 'rating', 'action', 'issue', 'correction' or "
        "'comment'; Input should be a valid string"
    )
    assert "422" not in text
    assert "{" not in text
    assert format_rejection({2: [("value", "field required")], 0: [("", "not a dict")]}) == (
        "item 0: not a dict\nitem 2: value: field required"
    )
    assert describe([("data_id", "str type expected"), ("value", "field required")]) == (
        "data_id: str type expected; value: field required"
    )


def test_single_reads_the_answer_to_one_object_sent_alone() -> None:
    """single=True: the object branch's fields are item 0 and the array branch is ignored."""
    v1 = [
        {"loc": ["body"], "msg": "value is not a valid list", "type": "type_error.list"},
        {"loc": ["body", "type"], "msg": "field required", "type": "value_error.missing"},
    ]
    v2 = [
        {"type": "list_type", "loc": ["body", TAG], "msg": "Input should be a valid list"},
        {
            "type": "string_type",
            "loc": ["body", "FeedbackRequest", "user"],
            "msg": "Input should be a valid string",
        },
    ]
    assert item_errors(v1, 1, single=True) == {0: [("type", "field required")]}
    assert item_errors(v2, 1, single=True) == {0: [("user", "Input should be a valid string")]}
    assert item_errors(v1, 1) == {}
    assert body_errors(v1, 1, single=True) == []
