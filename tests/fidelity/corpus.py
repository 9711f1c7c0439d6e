"""Requests the stand-in and the real services must answer alike: valid and broken, single and batch.

Each :class:`Case` is a whole request (method, path, headers, raw body bytes), so framing faults
(Content-Type, the key, broken JSON, a trailing slash) sit next to schema faults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

API_KEY = "hl-test-key"
JSON = "application/json"


@dataclass(frozen=True)
class Case:
    """One request of the corpus."""

    name: str
    body: bytes
    content_type: Optional[str] = JSON
    api_key: Optional[str] = API_KEY
    path: str = "/v4/feedback"
    method: str = "POST"
    extra_headers: tuple[tuple[str, str], ...] = field(default=())

    def headers(self) -> dict[str, str]:
        """The request headers (no Content-Type or key where the case leaves them out)."""
        headers = dict(self.extra_headers)
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        if self.api_key is not None:
            headers["X-API-KEY"] = self.api_key
        return headers


def _dump(body: Any) -> bytes:
    return json.dumps(body).encode("utf-8")


def ok(**fields: Any) -> dict[str, Any]:
    """A valid item with ``fields`` changed (a field set to ``...`` is left out)."""
    item: dict[str, Any] = {"type": "rating", "value": "good", "data_id": "data_1"}
    item.update(fields)
    return {name: value for name, value in item.items() if value is not ...}


def _item_cases() -> list[tuple[str, dict[str, Any]]]:
    """Single items, each with one thing to look at (sent alone and as item 2 of a batch)."""
    return [
        ("valid string value", ok()),
        ("value true", ok(value=True)),
        ("value 0", ok(value=0)),
        ("value 1", ok(value=1)),
        ("value 2", ok(value=2)),
        ("value 0.5", ok(value=0.5)),
        ("value -3", ok(value=-3)),
        ("value empty list", ok(value=[])),
        ("value list of strings", ok(value=["slow", "wrong"])),
        ("value empty string", ok(value="")),
        ("value numeric string", ok(value="5")),
        ("value string true", ok(value="true")),
        ("value null", ok(value=None)),
        ("value object", ok(value={"a": 1})),
        ("value list with a number", ok(value=["a", 1])),
        ("value list with null", ok(value=["a", None])),
        ("value nested list", ok(value=[["a"]])),
        ("value list of objects", ok(value=[{}, {}])),
        ("value missing", ok(value=...)),
        ("value missing, unset true", ok(value=..., unset=True)),
        ("value missing, unset false", ok(value=..., unset=False)),
        ("value missing, unset string true", ok(value=..., unset="true")),
        ("type alone (the API page's example)", {"type": "rating"}),
        ("value and unset missing, custom type", ok(type="thumbs", value=...)),
        ("type missing", ok(type=...)),
        ("type null", ok(type=None)),
        ("type number", ok(type=5)),
        ("type boolean", ok(type=True)),
        ("type object", ok(type={})),
        ("type custom string", ok(type="thumbs")),
        ("type empty string", ok(type="")),
        ("type enum member", ok(type="correction")),
        ("data_id integer", ok(data_id=5)),
        ("data_id float", ok(data_id=5.5)),
        ("data_id boolean", ok(data_id=True)),
        ("data_id null", ok(data_id=None)),
        ("data_id list", ok(data_id=["a"])),
        ("user integer", ok(user=1)),
        ("user null", ok(user=None)),
        ("created_at utc", ok(created_at="2024-05-01T12:00:00Z")),
        ("created_at offset and fraction", ok(created_at="2024-02-29T23:59:59.123+05:30")),
        ("created_at naive", ok(created_at="2024-05-01T12:00:00")),
        ("created_at space separator", ok(created_at="2024-05-01 12:00:00Z")),
        ("created_at lowercase t and z", ok(created_at="2024-05-01t12:00:00z")),
        ("created_at epoch integer", ok(created_at=1700000000)),
        ("created_at epoch float", ok(created_at=1700000000.5)),
        ("created_at epoch milliseconds", ok(created_at=1700000000000)),
        ("created_at epoch string", ok(created_at="1700000000")),
        ("created_at date only", ok(created_at="2024-05-01")),
        ("created_at no seconds", ok(created_at="2024-05-01T12:00")),
        ("created_at one-digit month", ok(created_at="2024-5-1T12:00:00Z")),
        ("created_at offset without colon", ok(created_at="2024-05-01T12:00:00+0530")),
        ("created_at february 30", ok(created_at="2024-02-30T00:00:00Z")),
        ("created_at hour 25", ok(created_at="2024-05-01T25:00:00Z")),
        ("created_at words", ok(created_at="yesterday")),
        ("created_at null", ok(created_at=None)),
        ("created_at boolean", ok(created_at=True)),
        ("created_at object", ok(created_at={})),
        ("unset string no", ok(unset="no")),
        ("unset 2", ok(unset=2)),
        ("unset null", ok(unset=None)),
        ("unset 1", ok(unset=1)),
        ("unknown field", ok(extra_field=1)),
        ("everything wrong", {"type": 3, "value": {}, "user": None, "created_at": "x", "unset": 5}),
    ]


def _raw_cases() -> list[Case]:
    """Bodies json.dumps cannot write, and framing faults."""
    valid = _dump([ok()])
    big = 2**1024
    return [
        Case("value 2**1024", b'[{"type": "rating", "value": %d}]' % big),
        Case("value 10**400", b'[{"type": "rating", "value": 1%s}]' % (b"0" * 400)),
        Case("value 1e400 (a float that overflows)", b'[{"type": "rating", "value": 1e400}]'),
        Case("value NaN", b'[{"type": "rating", "value": NaN}]'),
        Case("data_id Infinity", b'[{"type": "rating", "value": 1, "data_id": Infinity}]'),
        Case("data_id 10**400", b'[{"type": "rating", "value": 1, "data_id": 1%s}]' % (b"0" * 400)),
        Case(
            "created_at 10**400",
            b'[{"type": "rating", "value": 1, "created_at": 1%s}]' % (b"0" * 400),
        ),
        Case("integer of 5000 digits", b'[{"type": "rating", "value": 1%s}]' % (b"0" * 5000)),
        Case(
            "2**1024 in a bad batch",
            b'[{"type": 5, "value": 1}, {"type": "rating", "value": %d}]' % big,
        ),
        Case("lone surrogate in value", b'[{"type": "rating", "value": "\\ud800"}]'),
        Case(
            "lone surrogate in data_id", b'[{"type": "rating", "value": 1, "data_id": "\\udfff"}]'
        ),
        Case("lone surrogate in an unknown key", b'[{"type": "rating", "value": 1, "\\ud800": 1}]'),
        Case("lone surrogate in a refused item", b'[{"type": 5, "value": "\\ud800"}]'),
        Case("escaped surrogate pair", b'[{"type": "rating", "value": "\\ud83d\\ude00"}]'),
        Case("non-ASCII text", '[{"type": "rating", "value": "très bien 👍"}]'.encode()),
        Case("invalid UTF-8", b'[{"type": "rating", "value": "\xff"}]'),
        Case("UTF-8 byte order mark", b"\xef\xbb\xbf" + valid),
        Case("UTF-16 body", json.dumps([ok()]).encode("utf-16")),
        Case("broken JSON", b'[{"type": "rating", '),
        Case("broken JSON, wrong key", b'[{"type": ', api_key="wrong"),
        Case("trailing comma", b'[{"type": "rating", "value": 1},]'),
        Case("single quotes", b"[{'type': 'rating', 'value': 1}]"),
        Case("duplicate key, last one valid", b'[{"type": 5, "type": "rating", "value": 1}]'),
        Case("deep nesting", b"[" * 100_000 + b"]" * 100_000),
        Case("empty body", b""),
        Case("whitespace body", b"   "),
        Case("JSON null body", b"null"),
        Case("JSON number body", b"5"),
        Case("JSON false body", b"false"),
        Case("JSON string body", b'"feedback"'),
        Case("empty object body", b"{}"),
        Case("empty array body", b"[]"),
        Case("nested array body", _dump([[ok()]])),
        Case("array of numbers", _dump([1, 2])),
        Case("array with null", _dump([ok(), None])),
        Case("array with a string", _dump(["rating"])),
        Case("array of key-value pairs", _dump([[["type", "rating"], ["value", "x"]]])),
        Case("two-key object in a bad batch", _dump([{"type": "rating", "value": {}}])),
        Case("no Content-Type", valid, content_type=None),
        Case("Content-Type text/plain", valid, content_type="text/plain"),
        Case("Content-Type with charset", valid, content_type="application/json; charset=utf-8"),
        Case("Content-Type +json", valid, content_type="application/vnd.api+json"),
        Case("Content-Type upper case", valid, content_type="Application/JSON"),
        Case("Content-Type form", valid, content_type="application/x-www-form-urlencoded"),
        Case("Content-Type garbage", valid, content_type="json"),
        Case("no Content-Type, broken JSON", b"[{", content_type=None),
        Case("wrong key", valid, api_key="wrong"),
        Case("no key", valid, api_key=None),
        Case("wrong key, invalid body", _dump([ok(type=None)]), api_key="wrong"),
        Case("wrong key, invalid object", _dump(ok(type=None, value={})), api_key="wrong"),
        Case("no key, invalid body", _dump([ok(type=5)]), api_key=None),
        Case(
            "wrong key, body not JSON typed",
            _dump([ok()]),
            content_type="text/plain",
            api_key="wrong",
        ),
        Case("wrong key, invalid UTF-8", b'[{"type": "\xff"}]', api_key="wrong"),
        Case("wrong key, value and unset missing", _dump([{"type": "rating"}]), api_key="wrong"),
        Case("wrong key, empty body", b"", api_key="wrong"),
        Case("wrong key, value missing", _dump([ok(value=...)]), api_key="wrong"),
        Case("trailing slash", valid, path="/v4/feedback/"),
        Case("trailing slash, GET", b"", path="/v4/feedback/", method="GET"),
        Case("query string", valid, path="/v4/feedback?verbose=1"),
        Case("percent-encoded path", valid, path="/v4/%66eedback"),
        Case("other path", valid, path="/v4/feedbacks"),
        Case("no version prefix", valid, path="/feedback"),
        Case("GET", b"", method="GET"),
        Case("PUT", valid, method="PUT"),
        Case("batch of 100", _dump([ok(data_id=f"data_{i}") for i in range(100)])),
        Case(
            "batch of 100 with 3 bad",
            _dump(
                [
                    ok(data_id=i) if i in (3, 50) else ok(value=...) if i == 97 else ok()
                    for i in range(100)
                ]
            ),
        ),
    ]


def cases() -> list[Case]:
    """The whole corpus: every item case alone and as item 2 of a batch, then the raw cases."""
    corpus: list[Case] = []
    for name, item in _item_cases():
        corpus.append(Case(f"{name} (object)", _dump(item)))
        corpus.append(Case(f"{name} (batch)", _dump([ok(), ok(value=True), item, ok()])))
    corpus.extend(_raw_cases())
    names = [case.name for case in corpus]
    assert len(names) == len(set(names)), "case names must be unique"
    return corpus
