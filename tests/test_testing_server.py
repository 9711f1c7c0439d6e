"""The local Humanloop stand-in: routing, auth, validation answers, faults, lifecycle, threads."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional, Union

import pytest
import requests
from support import Clock, child_env

from humanloop_logging.testing import FLAVOURS, FakeHumanloop

FIELDS = ("type", "value", "data_id", "user", "created_at", "unset")

pytestmark = pytest.mark.timeout(60)

#: How long stop() may take with something it must not wait for (an idle keep-alive client that
#: never hangs up, a request held until clear(), a 30 s latency): a bound against waiting for it,
#: many times what stopping takes on any machine, and no claim about speed.
STOP_BOUND = 10.0


def post(
    fake: FakeHumanloop,
    body: Any,
    *,
    api_key: Optional[str] = None,
    session: Optional[requests.Session] = None,
    timeout: Union[float, tuple[float, float]] = 10.0,
) -> requests.Response:
    """POST ``body`` as JSON to the stand-in with its API key (or ``api_key``)."""
    headers = {"X-API-KEY": fake.api_key if api_key is None else api_key}
    sender = session or requests
    return sender.post(fake.url, json=body, headers=headers, timeout=timeout)


def post_raw(
    fake: FakeHumanloop,
    data: bytes,
    *,
    api_key: Optional[str] = None,
    content_type: Optional[str] = "application/json",
    url: Optional[str] = None,
) -> requests.Response:
    """POST raw bytes, for bodies ``json.dumps`` would never produce."""
    headers = {"X-API-KEY": fake.api_key if api_key is None else api_key}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return requests.post(
        url or fake.url, data=data, headers=headers, timeout=10, allow_redirects=False
    )


def clean_env() -> dict[str, str]:
    """The environment for child interpreters: this checkout importable, plugins autoloaded."""
    env = child_env()
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    return env


# -- lifecycle -------------------------------------------------------------------------------------


def test_start_serves_on_an_ephemeral_port_once_it_returns() -> None:
    """start() binds a free port on 127.0.0.1 and returns serving: a request right after it is
    answered."""
    fake = FakeHumanloop().start()
    try:
        assert fake.running
        assert fake.port != 0
        assert fake.base_url == f"http://127.0.0.1:{fake.port}/v4"
        assert fake.url == fake.base_url + "/feedback"
        assert post(fake, {"type": "rating", "value": "good"}).status_code == 200
    finally:
        fake.stop()
    assert not fake.running


def test_start_and_stop_are_idempotent() -> None:
    """start() twice returns the same running server; stop() twice is harmless."""
    fake = FakeHumanloop()
    assert fake.start() is fake
    port = fake.port
    assert fake.start() is fake
    assert fake.port == port
    fake.stop()
    fake.stop()
    assert not fake.running


def test_context_manager_starts_and_stops() -> None:
    """``with FakeHumanloop() as fake`` serves inside the block and not after it."""
    with FakeHumanloop() as fake:
        running_inside = fake.running
        url = fake.url
    assert running_inside
    assert not fake.running
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json={"type": "rating", "value": 1}, timeout=5)


def test_restart_keeps_the_port_and_the_records(fake_humanloop: FakeHumanloop) -> None:
    """restart() serves again on the same port, and what was received before is kept."""
    session = requests.Session()
    assert post(fake_humanloop, {"type": "rating", "value": 1}, session=session).status_code == 200
    port = fake_humanloop.port
    fake_humanloop.restart()
    assert fake_humanloop.running
    assert fake_humanloop.port == port
    # The pooled connection died with the restart; the session reconnects to the same port.
    assert post(fake_humanloop, {"type": "rating", "value": 2}, session=session).status_code == 200
    first, second = fake_humanloop.requests
    assert first.connection != second.connection
    assert [item["value"] for item in fake_humanloop.received] == [1, 2]


def test_stop_closes_open_keep_alive_connections(fake_humanloop: FakeHumanloop) -> None:
    """stop() returns promptly even with an idle keep-alive connection, and that client sees EOF."""
    conn = http.client.HTTPConnection(fake_humanloop.host, fake_humanloop.port, timeout=5)
    body = json.dumps({"type": "rating", "value": 1})
    conn.request("POST", "/v4/feedback", body, {"X-API-KEY": fake_humanloop.api_key})
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    assert not response.will_close
    sock = conn.sock
    assert sock is not None
    started = time.monotonic()
    fake_humanloop.stop()  # the client keeps its connection open, and never sends on it
    assert time.monotonic() - started < STOP_BOUND
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        data = b""
    assert data == b""
    conn.close()


def test_start_on_a_busy_port_raises() -> None:
    """A port already taken is an OSError from start(), leaving the stand-in stopped."""
    with FakeHumanloop() as running:
        clash = FakeHumanloop(port=running.port)
        with pytest.raises(OSError, match="in use"):
            clash.start()
        assert not clash.running


def test_base_url_needs_a_port() -> None:
    """base_url of an unstarted stand-in on port 0 is an error, not a URL with port 0."""
    with pytest.raises(RuntimeError):
        _ = FakeHumanloop().base_url
    assert FakeHumanloop(port=8123).base_url == "http://127.0.0.1:8123/v4"


def test_constructor_and_fault_arguments_are_checked() -> None:
    """Bad arguments raise ValueError at once rather than misbehaving later on a server thread."""
    with pytest.raises(ValueError, match="api_key"):
        FakeHumanloop(api_key="")
    with pytest.raises(ValueError, match="port"):
        FakeHumanloop(port=70000)
    fake = FakeHumanloop()
    with pytest.raises(ValueError, match="non-negative"):
        fake.fail_next(-1)
    with pytest.raises(ValueError, match="status"):
        fake.fail_next(1, 99)
    with pytest.raises(ValueError, match="non-negative"):
        fake.reset_next(-1)
    with pytest.raises(ValueError, match="latency"):
        fake.set_latency(-0.1)
    with pytest.raises(ValueError, match="latency"):
        fake.set_latency(float("inf"))
    with pytest.raises(ValueError, match="retry_after"):
        fake.fail_next(1, retry_after=float("nan"))


def test_repr_does_not_reveal_the_api_key() -> None:
    """The API key never shows up in a repr that could land in a log or a test report."""
    fake = FakeHumanloop(api_key="hl-secret-123")
    assert "hl-secret-123" not in repr(fake)


# -- accepted feedback -----------------------------------------------------------------------------


def test_object_body_is_answered_with_an_object(fake_humanloop: FakeHumanloop) -> None:
    """One object in, one object out: the item as sent plus an ``ann_`` id."""
    item = {"type": "rating", "value": "good", "data_id": "dp_1", "user": "u@example.com"}
    response = post(fake_humanloop, item)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    answer = response.json()
    assert isinstance(answer, dict)
    assert answer["id"].startswith("ann_")
    # FastAPI echoes the validated model: every field, null where the item left it out.
    assert {key: value for key, value in answer.items() if key != "id"} == {
        **dict.fromkeys(FIELDS),
        **item,
    }
    assert fake_humanloop.received == [item]
    (recorded,) = fake_humanloop.requests
    assert (recorded.method, recorded.path, recorded.status) == ("POST", "/v4/feedback", 200)
    assert (recorded.item_count, recorded.batch) == (1, False)
    assert recorded.json() == item


def test_array_body_is_answered_with_an_array_in_order(fake_humanloop: FakeHumanloop) -> None:
    """An array in, an array out, item by item in order, each with its own ``ann_`` id."""
    items: list[dict[str, Any]] = [
        {"type": "rating", "value": True, "data_id": "dp_1"},
        {"type": "issue", "value": ["slow", "wrong"], "created_at": "2024-05-01T12:00:00Z"},
        {"type": "comment", "unset": True, "data_id": "dp_2"},
        {"type": "my-own-type", "value": 0.5, "extra": {"dropped": True}},
    ]
    response = post(fake_humanloop, items)
    assert response.status_code == 200
    answer = response.json()
    assert isinstance(answer, list)
    assert [entry["type"] for entry in answer] == [item["type"] for item in items]
    assert all(entry["id"].startswith("ann_") for entry in answer)
    assert len({entry["id"] for entry in answer}) == len(items)
    assert answer[2]["value"] is None  # an unset item still has a value in the answer
    assert answer[1]["created_at"] == "2024-05-01T12:00:00+00:00"  # as pydantic 1 writes it
    assert "extra" not in answer[3]  # unknown fields are ignored, as pydantic does
    assert fake_humanloop.received == items  # what was sent, unknown fields included
    (recorded,) = fake_humanloop.requests
    assert (recorded.item_count, recorded.batch) == (4, True)


def test_empty_array_is_valid(fake_humanloop: FakeHumanloop) -> None:
    """``[]`` satisfies the schema, so it is answered 200 ``[]`` and records no item."""
    response = post(fake_humanloop, [])
    assert response.status_code == 200
    assert response.json() == []
    assert fake_humanloop.received == []
    assert fake_humanloop.requests[0].item_count == 0


def test_received_keeps_arrival_order_across_requests(fake_humanloop: FakeHumanloop) -> None:
    """Items from successive requests appear in the order they were sent."""
    post(fake_humanloop, {"type": "rating", "value": 1})
    post(fake_humanloop, [{"type": "rating", "value": 2}, {"type": "rating", "value": 3}])
    post(fake_humanloop, {"type": "rating", "value": 4})
    assert [item["value"] for item in fake_humanloop.received] == [1, 2, 3, 4]


def test_received_and_requests_are_copies(fake_humanloop: FakeHumanloop) -> None:
    """Mutating what a test got back cannot change what the stand-in recorded."""
    post(fake_humanloop, {"type": "issue", "value": ["a"]})
    received = fake_humanloop.received
    received[0]["value"].append("b")
    received.clear()
    fake_humanloop.requests.clear()
    assert fake_humanloop.received == [{"type": "issue", "value": ["a"]}]
    assert len(fake_humanloop.requests) == 1


def test_recorded_headers_are_lower_cased(fake_humanloop: FakeHumanloop) -> None:
    """Recorded headers can be looked up by lower-case name, whatever case the client sent."""
    requests.post(
        fake_humanloop.url,
        json={"type": "rating", "value": 1},
        headers={"X-API-KEY": fake_humanloop.api_key, "User-Agent": "probe/1.0"},
        timeout=10,
    )
    headers = fake_humanloop.requests[0].headers
    assert headers["x-api-key"] == fake_humanloop.api_key
    assert headers["user-agent"] == "probe/1.0"
    assert headers["content-type"] == "application/json"


def test_chunked_body_is_read(fake_humanloop: FakeHumanloop) -> None:
    """A chunked request body (no Content-Length) is decoded like any other."""

    def chunks() -> Any:
        yield b'[{"type": "rating",'
        yield b' "value": 5}]'

    response = requests.post(
        fake_humanloop.url,
        data=chunks(),
        headers={"X-API-KEY": fake_humanloop.api_key},
        timeout=10,
    )
    assert response.status_code == 200
    assert fake_humanloop.received == [{"type": "rating", "value": 5}]


def test_keep_alive_reuses_one_connection(fake_humanloop: FakeHumanloop) -> None:
    """Requests over one client session share one TCP connection; another session gets its own."""
    with requests.Session() as session:
        for value in (1, 2, 3):
            assert post(fake_humanloop, {"type": "rating", "value": value}, session=session).ok
    with requests.Session() as other:
        assert post(fake_humanloop, {"type": "rating", "value": 4}, session=other).ok
    connections = [recorded.connection for recorded in fake_humanloop.requests]
    assert connections[0] == connections[1] == connections[2]
    assert connections[3] != connections[0]


# -- routing and auth ------------------------------------------------------------------------------


@pytest.mark.parametrize("api_key", [None, "hl-wrong-key", ""])
def test_missing_or_wrong_api_key_is_401(
    fake_humanloop: FakeHumanloop, api_key: Optional[str]
) -> None:
    """Without the right X-API-KEY the answer is 401 with a JSON detail and nothing is accepted."""
    headers = {} if api_key is None else {"X-API-KEY": api_key}
    response = requests.post(
        fake_humanloop.url, json={"type": "rating", "value": 1}, headers=headers, timeout=10
    )
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Invalid API key"}
    assert fake_humanloop.received == []
    assert [recorded.status for recorded in fake_humanloop.requests] == [401]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_key_is_checked_before_the_body_is_validated(flavour: str) -> None:
    """As in the FastAPI service, whose key is a security dependency: FastAPI parses the JSON
    first (broken JSON with a wrong key is a 422), then solves the dependency, then validates the
    body, so an invalid body with a wrong key is a 401: a client with a bad key is told so, not
    that its records are bad."""
    with FakeHumanloop(api_key="k", flavour=flavour) as fake:
        assert post_raw(fake, b"[{", api_key="nope").status_code == 422
        invalid = post(fake, [{"type": None, "value": 1}], api_key="nope")
        assert (invalid.status_code, invalid.json()) == (401, {"detail": "Invalid API key"})
        no_key = requests.post(fake.url, json={"type": None}, timeout=10)
        assert no_key.status_code == 401
        assert post_raw(fake, b"", api_key="nope").status_code == 401
        assert post(fake, {"type": None, "value": 1}, api_key="k").status_code == 422
        assert fake.received == []


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_refuse_key_answers_401_to_the_right_key_until_switched_off(flavour: str) -> None:
    """refuse_key() answers the right key as a wrong one (401, nothing accepted), after body
    parsing as with a wrong key; refuse_key(False) and clear() accept it again."""
    with FakeHumanloop(api_key="k", flavour=flavour) as fake:
        before = fake.refusing_key
        fake.refuse_key()
        assert (before, fake.refusing_key) == (False, True)
        refused = post(fake, {"type": "rating", "value": 1})
        assert (refused.status_code, refused.json()) == (401, {"detail": "Invalid API key"})
        assert post_raw(fake, b"[{").status_code == 422
        fake.refuse_key(False)
        assert post(fake, {"type": "rating", "value": 2}).status_code == 200
        fake.refuse_key(True)
        fake.clear()
        assert not fake.refusing_key
        assert post(fake, {"type": "rating", "value": 3}).status_code == 200
        assert [item["value"] for item in fake.received] == [3]
        with pytest.raises(ValueError, match="True or False"):
            fake.refuse_key(1)  # type: ignore[arg-type]


def test_each_request_records_how_long_its_answer_took(fake_humanloop: FakeHumanloop) -> None:
    """RecordedRequest.latency is the time from reading a request to its answer: a set_latency()
    delay is in it, and an answer without one takes far less."""
    assert post(fake_humanloop, {"type": "rating", "value": 1}).status_code == 200
    fake_humanloop.set_latency(0.2)
    assert post(fake_humanloop, {"type": "rating", "value": 2}).status_code == 200
    quick, delayed = fake_humanloop.requests
    assert 0 <= quick.latency < 0.2
    assert delayed.latency >= 0.2


def test_unknown_path_is_404(fake_humanloop: FakeHumanloop) -> None:
    """Only /v4/feedback exists; anything else is FastAPI's 404 JSON."""
    headers = {"X-API-KEY": fake_humanloop.api_key}
    for path in ("/v4/logs", "/feedback", "/v4/feedback/x"):
        response = requests.post(
            f"http://127.0.0.1:{fake_humanloop.port}{path}", json={}, headers=headers, timeout=10
        )
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_other_methods_are_405(fake_humanloop: FakeHumanloop, method: str) -> None:
    """The feedback route answers only POST."""
    response = requests.request(
        method, fake_humanloop.url, headers={"X-API-KEY": fake_humanloop.api_key}, timeout=10
    )
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    assert response.headers["Allow"] == "POST"


def test_query_string_is_ignored_by_routing(fake_humanloop: FakeHumanloop) -> None:
    """A query string does not change the route, and the recorded path keeps it."""
    response = requests.post(
        fake_humanloop.url + "?source=test",
        json={"type": "rating", "value": 1},
        headers={"X-API-KEY": fake_humanloop.api_key},
        timeout=10,
    )
    assert response.status_code == 200
    assert fake_humanloop.requests[0].path == "/v4/feedback?source=test"


# -- validation ------------------------------------------------------------------------------------


def test_422_for_a_single_object_names_every_bad_field(fake_humanloop: FakeHumanloop) -> None:
    """pydantic 1: the array branch refuses the body; each bad field is listed once per union member."""
    body = {"type": 3, "value": {"a": 1}, "user": None, "created_at": "yesterday", "unset": "no"}
    response = post(fake_humanloop, body)
    assert response.status_code == 422
    value_loc = ["body", "value"]
    assert response.json() == {
        "detail": [
            {"loc": ["body"], "msg": "value is not a valid list", "type": "type_error.list"},
            {
                "loc": value_loc,
                "msg": "value could not be parsed to a boolean",
                "type": "type_error.bool",
            },
            {"loc": value_loc, "msg": "value is not a valid float", "type": "type_error.float"},
            {"loc": value_loc, "msg": "value is not a valid list", "type": "type_error.list"},
            {"loc": value_loc, "msg": "str type expected", "type": "type_error.str"},
            {
                "loc": ["body", "created_at"],
                "msg": "invalid datetime format",
                "type": "value_error.datetime",
            },
        ]
    }
    assert fake_humanloop.received == []
    assert fake_humanloop.requests[0].status == 422


ARRAY_WITH_BAD_ITEMS: list[Any] = [
    {"type": "rating", "value": 1},
    {"value": "no type"},
    "not an object",
    {"type": "rating", "value": 2},
    {"type": "rating", "value": ["ok", {}], "data_id": 7},
]


def test_422_for_an_array_names_every_bad_item(fake_humanloop: FakeHumanloop) -> None:
    """pydantic 1: every bad item located by index, the object branch's ["body"] last."""
    response = post(fake_humanloop, ARRAY_WITH_BAD_ITEMS)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [(entry["loc"], entry["type"]) for entry in detail] == [
        (["body", 1, "type"], "value_error.missing"),
        (["body", 2], "type_error.dict"),
        (["body", 4, "value"], "type_error.bool"),
        (["body", 4, "value"], "type_error.float"),
        (["body", 4, "value", 1], "type_error.str"),
        (["body", 4, "value"], "type_error.str"),
        (["body"], "type_error.dict"),
    ]
    assert detail[0]["msg"] == "field required"
    assert fake_humanloop.received == []
    assert fake_humanloop.requests[0].item_count == 5


def test_422_for_an_array_in_the_v2_flavour_carries_union_tags() -> None:
    """pydantic 2: union tags in loc, and the object branch's entry echoing the body."""
    with FakeHumanloop(flavour="v2") as fake:
        response = post(fake, ARRAY_WITH_BAD_ITEMS)
    assert response.status_code == 422
    detail = response.json()["detail"]
    tag = "list[FeedbackRequest]"
    assert [(entry["loc"], entry["type"]) for entry in detail] == [
        (["body", tag, 1, "type"], "missing"),
        (["body", tag, 2], "model_attributes_type"),
        (["body", tag, 4, "value", "bool"], "bool_type"),
        (["body", tag, 4, "value", "float"], "float_type"),
        (["body", tag, 4, "value", "list[str]", 1], "string_type"),
        (["body", tag, 4, "value", "str"], "string_type"),
        (["body", tag, 4, "data_id"], "string_type"),
        (["body", "FeedbackRequest"], "model_attributes_type"),
    ]
    assert detail[-1]["input"] == ARRAY_WITH_BAD_ITEMS


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_item_without_value_is_accepted(flavour: str) -> None:
    """``value`` is optional in the schema, and the service accepts an item with neither
    ``value`` nor ``unset`` (the API page's own example sends a type alone); it echoes it with
    ``value: null``."""
    items = [{"type": "rating"}, {"type": "rating", "unset": False}, {"type": "x", "unset": True}]
    with FakeHumanloop(api_key="k", flavour=flavour) as fake:
        response = post(fake, items, api_key="k")
        assert response.status_code == 200
        assert [answer["value"] for answer in response.json()] == [None, None, None]
        assert fake.received == items


DATETIMES = {
    # created_at: (v1 accepts, v2 accepts)
    "2024-02-29T23:59:59.123+05:30": (True, True),
    "2024-01-01T00:00:00": (True, True),  # naive
    "2024-01-01 00:00:00Z": (True, True),  # a space for the T
    1700000000: (True, True),  # Unix seconds
    "2024-01-01t00:00:00z": (False, True),  # lower-case t and z
    "2024-01-01": (False, True),  # a date alone
    "2024-1-1T00:00:00Z": (True, False),  # one-digit month and day
    "2023-02-29T00:00:00Z": (False, False),
    "0000-01-01T00:00:00Z": (False, False),
    "yesterday": (False, False),
}


@pytest.mark.parametrize("flavour", ["v1", "v2"])
@pytest.mark.parametrize("created_at", list(DATETIMES))
def test_created_at_is_parsed_as_each_pydantic_parses_it(
    flavour: str, created_at: Union[str, int]
) -> None:
    """created_at accepts what the service's pydantic accepts, which is not RFC 3339 exactly."""
    with FakeHumanloop(flavour=flavour) as fake:
        response = post(fake, [{"type": "rating", "value": 1, "created_at": created_at}])
    accepted = DATETIMES[created_at][0 if flavour == "v1" else 1]
    assert response.status_code == (200 if accepted else 422)


@pytest.mark.parametrize("body", ["a string", 5, None, True])
def test_body_must_be_an_object_or_an_array(fake_humanloop: FakeHumanloop, body: Any) -> None:
    """Any other JSON value is a 422 located at the body itself."""
    response = post(fake_humanloop, body)
    assert response.status_code == 422
    assert {tuple(entry["loc"]) for entry in response.json()["detail"]} == {("body",)}
    assert fake_humanloop.requests[0].item_count == 0


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_values_are_500_on_v1_and_null_on_v2(token: str) -> None:
    """NaN, Infinity and 1e400 parse; FastAPI 0.99 cannot render them (500), pydantic 2 writes null."""
    data = f'[{{"type": "rating", "value": {token}}}]'.encode()
    with FakeHumanloop(flavour="v1") as fake:
        response = post_raw(fake, data)
        assert response.status_code == 500
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.text == "Internal Server Error"
        assert fake.received == []
    with FakeHumanloop(flavour="v2") as fake:
        response = post_raw(fake, data)
        assert response.status_code == 200
        assert response.json()[0]["value"] is None


@pytest.mark.parametrize(
    ("flavour", "expected"),
    [
        (
            "v1",
            {
                "loc": ["body", 28],
                "msg": "Expecting value: line 1 column 29 (char 28)",
                "type": "value_error.jsondecode",
                "ctx": {
                    "msg": "Expecting value",
                    "doc": '{"type": "rating", "value": }',
                    "pos": 28,
                    "lineno": 1,
                    "colno": 29,
                },
            },
        ),
        (
            "v2",
            {
                "type": "json_invalid",
                "loc": ["body", 28],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": "Expecting value"},
            },
        ),
    ],
)
def test_invalid_json_is_located(flavour: str, expected: dict[str, Any]) -> None:
    """Malformed JSON is one entry with the character position, in each flavour's shape."""
    with FakeHumanloop(flavour=flavour) as fake:
        response = post_raw(fake, b'{"type": "rating", "value": }')
    assert response.status_code == 422
    assert response.json() == {"detail": [expected]}


def test_empty_body_is_a_missing_body(fake_humanloop: FakeHumanloop) -> None:
    """No body at all is FastAPI's "field required" at ["body"]."""
    response = post_raw(fake_humanloop, b"")
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body"], "msg": "field required", "type": "value_error.missing"}
    ]


# -- flavours: where the two FastAPI stacks answer differently -------------------------------------


def test_flavour_and_validator_are_checked_and_reported() -> None:
    """An unknown flavour or validator is a ValueError; the chosen ones are readable."""
    with pytest.raises(ValueError, match="flavour"):
        FakeHumanloop(flavour="v3")
    with pytest.raises(ValueError, match="validator"):
        FakeHumanloop(validator="jsonschema")
    fake = FakeHumanloop(flavour="v2", validator="stdlib")
    assert (fake.flavour, fake.validator) == ("v2", "stdlib")
    assert FakeHumanloop().flavour == "v1"  # the v4 era
    assert FakeHumanloop().validator in ("pydantic", "stdlib")


@pytest.mark.parametrize("flavour", ["v1", "v2"])
def test_trailing_slash_is_redirected(flavour: str) -> None:
    """Starlette answers 307 to the path without the slash (query kept), and records nothing."""
    with FakeHumanloop(flavour=flavour) as fake:
        response = post_raw(fake, b'{"type": "rating", "value": 1}', url=fake.url + "/?a=1")
        assert response.status_code == 307
        assert response.headers["Location"] == fake.url + "?a=1"
        assert response.content == b""
        assert "Content-Type" not in response.headers
        assert fake.received == []


@pytest.mark.parametrize(
    ("flavour", "content_type", "status"),
    [
        ("v1", None, 200),  # FastAPI 0.99 reads a body without Content-Type as JSON
        ("v2", None, 422),  # FastAPI >= 0.132 does not
        ("v1", "text/plain", 422),
        ("v2", "text/plain", 422),
        ("v1", "application/merge-patch+json; charset=utf-8", 200),
        ("v2", "Application/JSON", 200),
    ],
)
def test_content_type_decides_whether_the_body_is_json(
    flavour: str, content_type: Optional[str], status: int
) -> None:
    """A body that is not declared JSON is validated as bytes: neither an array nor an object."""
    with FakeHumanloop(flavour=flavour) as fake:
        data = b'[{"type": "rating", "value": 1}]'
        response = post_raw(fake, data, content_type=content_type)
    assert response.status_code == status
    if status == 422:
        assert [entry["loc"][:2] for entry in response.json()["detail"]] == (
            [["body"], ["body"]]
            if flavour == "v1"
            else [["body", "list[FeedbackRequest]"], ["body", "FeedbackRequest"]]
        )


@pytest.mark.parametrize("flavour", ["v1", "v2"])
def test_a_lone_surrogate_is_a_500(flavour: str) -> None:
    """The service cannot encode its answer as UTF-8, so uvicorn answers 500 in plain text."""
    with FakeHumanloop(flavour=flavour) as fake:
        response = post_raw(fake, b'[{"type": "rating", "value": "\\ud800"}]')
        assert (response.status_code, response.text) == (500, "Internal Server Error")
        assert fake.received == []
        assert fake.requests[0].status == 500


def test_an_integer_no_double_holds_is_500_on_v1_and_422_on_v2() -> None:
    """pydantic 1 lets float()'s OverflowError escape; pydantic 2 reports the value."""
    data = b'[{"type": "rating", "value": %d}]' % 2**1024
    with FakeHumanloop(flavour="v1") as fake:
        assert post_raw(fake, data).status_code == 500
    with FakeHumanloop(flavour="v2") as fake:
        response = post_raw(fake, data)
    assert response.status_code == 422
    assert [entry["loc"] for entry in response.json()["detail"]][:2] == [
        ["body", "list[FeedbackRequest]", 0, "value", "bool"],
        ["body", "list[FeedbackRequest]", 0, "value", "float"],
    ]


@pytest.mark.parametrize("flavour", ["v1", "v2"])
def test_a_body_that_is_not_utf8_is_a_400(flavour: str) -> None:
    """json.loads raises something other than a JSON error, which FastAPI answers with 400."""
    with FakeHumanloop(flavour=flavour) as fake:
        response = post_raw(fake, b'[{"type": "rating", "value": "\xff"}]')
    assert response.status_code == 400
    assert response.json() == {"detail": "There was an error parsing the body"}


def test_v1_coerces_and_accepts_nulls_where_v2_refuses() -> None:
    """pydantic 1 turns 5 into "5", 1 into true, accepts null; pydantic 2 refuses all three."""
    item = {"type": "rating", "value": 1, "data_id": 5, "user": None}
    with FakeHumanloop(flavour="v1") as fake:
        response = post(fake, [item])
        assert response.status_code == 200
        answer = response.json()[0]
        assert (answer["value"], answer["data_id"], answer["user"]) == (True, "5", None)
        assert fake.received == [item]  # recorded as sent
    with FakeHumanloop(flavour="v2") as fake:
        response = post(fake, [item])
        assert response.status_code == 422
        assert [entry["loc"][-1] for entry in response.json()["detail"]] == [
            "data_id",
            "user",
            "FeedbackRequest",
        ]
        assert post(fake, [{"type": "rating", "value": 1}]).json()[0]["value"] == 1.0


def test_each_recorded_request_keeps_its_answer_and_is_reported() -> None:
    """RecordedRequest.response holds the body sent back; on_request sees every request once."""
    seen: list[tuple[int, int]] = []
    with FakeHumanloop(
        on_request=lambda request: seen.append((request.status, request.item_count))
    ) as fake:
        post(fake, [{"type": "rating", "value": 1}, {"type": None, "value": 1, "user": "u"}])
        post(fake, [{"type": "rating", "value": 1}])
        fake.fail_next(1, 503)
        post(fake, [])
        recorded = fake.requests
    assert seen == [(422, 2), (200, 1), (503, 0)]
    assert json.loads(recorded[0].response)["detail"][0]["loc"] == ["body", 1, "type"]
    assert json.loads(recorded[1].response)[0]["id"].startswith("ann_")
    assert json.loads(recorded[2].response) == {"detail": "Service Unavailable"}


# -- fault injection -------------------------------------------------------------------------------


def test_fail_next_answers_the_status_with_retry_after(fake_humanloop: FakeHumanloop) -> None:
    """fail_next(n) makes exactly the next n POSTs fail with the status and Retry-After given."""
    fake_humanloop.fail_next(2, 503, retry_after=1.5)
    item = {"type": "rating", "value": 1}
    with requests.Session() as session:
        first = post(fake_humanloop, item, session=session)
        second = post(fake_humanloop, item, session=session)
        third = post(fake_humanloop, item, session=session)
    for response in (first, second):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1.5"
        assert response.json() == {"detail": "Service Unavailable"}
    assert third.status_code == 200
    assert "Retry-After" not in third.headers
    assert [recorded.status for recorded in fake_humanloop.requests] == [503, 503, 200]
    assert fake_humanloop.received == [item]


def test_fail_next_with_a_custom_body(fake_humanloop: FakeHumanloop) -> None:
    """The injected answer can carry any JSON body and an HTTP-date Retry-After."""
    date = "Wed, 21 Oct 2026 07:28:00 GMT"
    fake_humanloop.fail_next(1, 429, retry_after=date, body={"detail": "Rate limited", "n": 1})
    response = post(fake_humanloop, {"type": "rating", "value": 1})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == date
    assert response.json() == {"detail": "Rate limited", "n": 1}


def test_fail_next_comes_before_auth(fake_humanloop: FakeHumanloop) -> None:
    """An injected outage answers even a request with the wrong key, as a gateway would."""
    fake_humanloop.fail_next(1, 502)
    assert post(fake_humanloop, {"type": "rating", "value": 1}, api_key="nope").status_code == 502
    assert post(fake_humanloop, {"type": "rating", "value": 1}, api_key="nope").status_code == 401


def test_reset_next_drops_the_connection(fake_humanloop: FakeHumanloop) -> None:
    """reset_next(1) reads the request, then closes the connection: the client sees a connection error."""
    fake_humanloop.reset_next(1)
    with pytest.raises(requests.ConnectionError):
        post(fake_humanloop, {"type": "rating", "value": 1})
    assert post(fake_humanloop, {"type": "rating", "value": 2}).status_code == 200
    assert [recorded.status for recorded in fake_humanloop.requests] == [0, 200]
    assert [item["value"] for item in fake_humanloop.received] == [2]


def test_hang_next_holds_the_answer_until_clear(fake_humanloop: FakeHumanloop) -> None:
    """hang_next(1) never answers, so a client timeout fires; clear() releases the held request."""
    fake_humanloop.hang_next(1)
    with pytest.raises(requests.ReadTimeout):
        post(fake_humanloop, {"type": "rating", "value": 1}, timeout=(5.0, 0.3))
    assert fake_humanloop.wait_for_requests(1)
    assert fake_humanloop.requests[0].status == 0
    fake_humanloop.clear()
    assert post(fake_humanloop, {"type": "rating", "value": 2}).status_code == 200
    assert fake_humanloop.received == [{"type": "rating", "value": 2}]


def test_stop_releases_a_hung_request_promptly(fake_humanloop: FakeHumanloop) -> None:
    """stop() does not wait for a hung answer: it returns at once and the client is cut off."""
    fake_humanloop.hang_next(1)
    outcome = run_in_thread(lambda: post(fake_humanloop, {"type": "rating", "value": 1}))
    assert fake_humanloop.wait_for_arrivals(1)
    started = time.monotonic()
    fake_humanloop.stop()  # the request is held until clear(), which never comes
    assert time.monotonic() - started < STOP_BOUND
    assert isinstance(outcome.result(), requests.ConnectionError)


def test_set_latency_delays_every_answer(fake_humanloop: FakeHumanloop) -> None:
    """With set_latency(0.2) an answer takes at least 0.2 s; set_latency(0) turns it off."""
    fake_humanloop.set_latency(0.2)
    started = time.monotonic()
    assert post(fake_humanloop, {"type": "rating", "value": 1}).status_code == 200
    assert time.monotonic() - started >= 0.2
    fake_humanloop.set_latency(60)
    fake_humanloop.set_latency(0)
    assert post(fake_humanloop, {"type": "rating", "value": 2}, timeout=10).status_code == 200


def test_stop_cuts_latency_short(fake_humanloop: FakeHumanloop) -> None:
    """A long latency is interrupted by stop(), which returns promptly and drops the request."""
    fake_humanloop.set_latency(30)
    outcome = run_in_thread(lambda: post(fake_humanloop, {"type": "rating", "value": 1}))
    assert fake_humanloop.wait_for_arrivals(1)
    started = time.monotonic()
    fake_humanloop.stop()
    assert time.monotonic() - started < STOP_BOUND  # not the 30 s latency
    assert isinstance(outcome.result(), requests.ConnectionError)
    assert [recorded.status for recorded in fake_humanloop.requests] == [0]


def test_reject_data_ids_answers_422_for_each_unknown_datapoint(
    fake_humanloop: FakeHumanloop,
) -> None:
    """Feedback on a rejected data_id fails the whole request with one entry per such item."""
    fake_humanloop.reject_data_ids("dp_gone", "dp_lost")
    body = [
        {"type": "rating", "value": 1, "data_id": "dp_ok"},
        {"type": "rating", "value": 2, "data_id": "dp_gone"},
        {"type": "rating", "value": 3, "data_id": "dp_lost"},
    ]
    response = post(fake_humanloop, body)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "loc": ["body", 1, "data_id"],
            "msg": "Datapoint dp_gone not found",
            "type": "value_error.not_found",
        },
        {
            "loc": ["body", 2, "data_id"],
            "msg": "Datapoint dp_lost not found",
            "type": "value_error.not_found",
        },
    ]
    single = post(fake_humanloop, {"type": "rating", "value": 2, "data_id": "dp_gone"})
    assert single.status_code == 422
    assert single.json()["detail"][0]["loc"] == ["body", "data_id"]
    assert post(fake_humanloop, body[:1]).status_code == 200
    assert fake_humanloop.received == body[:1]


def test_faults_apply_in_order_reset_then_fail(fake_humanloop: FakeHumanloop) -> None:
    """With a reset and a failure queued, the first request is reset and the second fails."""
    fake_humanloop.fail_next(1, 500)
    fake_humanloop.reset_next(1)
    with pytest.raises(requests.ConnectionError):
        post(fake_humanloop, {"type": "rating", "value": 1})
    assert post(fake_humanloop, {"type": "rating", "value": 1}).status_code == 500
    assert post(fake_humanloop, {"type": "rating", "value": 1}).status_code == 200


def test_clear_forgets_records_and_faults(fake_humanloop: FakeHumanloop) -> None:
    """clear() empties the records and cancels queued faults, latency and rejected ids."""
    post(fake_humanloop, {"type": "rating", "value": 1})
    fake_humanloop.fail_next(3)
    fake_humanloop.reset_next(1)
    fake_humanloop.reject_data_ids("dp_1")
    fake_humanloop.set_latency(5)
    fake_humanloop.clear()
    assert fake_humanloop.received == []
    assert fake_humanloop.requests == []
    response = post(fake_humanloop, {"type": "rating", "value": 1, "data_id": "dp_1"}, timeout=2)
    assert response.status_code == 200


def test_wait_for_items_returns_false_on_timeout(fake_humanloop: FakeHumanloop) -> None:
    """wait_for_items() gives up after its timeout with False instead of blocking forever."""
    assert fake_humanloop.wait_for_items(1, timeout=0.05) is False
    assert fake_humanloop.wait_for_requests(1, timeout=0.05) is False
    assert fake_humanloop.wait_for_items(0) is True


@pytest.fixture
def clocked() -> Iterator[tuple[FakeHumanloop, Clock]]:
    """A started stand-in whose rate limit refills on a Clock."""
    clock = Clock()
    with FakeHumanloop(clock=clock) as fake:
        yield fake, clock


def statuses(fake: FakeHumanloop, count: int, **kwargs: Any) -> list[int]:
    """POST ``count`` items one after another on one connection; their statuses."""
    with requests.Session() as session:
        return [
            post(fake, {"type": "rating", "value": n}, session=session, **kwargs).status_code
            for n in range(count)
        ]


def test_rate_limit_lets_a_burst_through_then_answers_429_until_a_token_is_back(
    clocked: tuple[FakeHumanloop, Clock],
) -> None:
    """A full bucket passes ``burst`` POSTs; the next gets a 429 whose Retry-After is honest."""
    fake, clock = clocked
    fake.set_rate_limit(2, burst=3)
    assert fake.rate_limit == (2.0, 3)
    assert statuses(fake, 3) == [200, 200, 200]
    refused = post(fake, {"type": "rating", "value": "over"})
    assert refused.status_code == 429
    assert refused.headers["Content-Type"] == "application/json"
    assert refused.json() == {"detail": "Rate limit exceeded"}
    assert refused.headers["Retry-After"] == "1"  # 0.5 s to the next token, in whole seconds
    clock.advance(0.49)
    assert statuses(fake, 1) == [429]
    clock.advance(0.01)
    assert statuses(fake, 2) == [200, 429]
    clock.advance(60)  # refills up to the burst, no further
    assert statuses(fake, 4) == [200, 200, 200, 429]
    assert fake.rate_limited == 4
    assert [r.status for r in fake.requests].count(429) == 4
    assert json.loads(fake.requests[3].response) == {"detail": "Rate limit exceeded"}
    assert [item["value"] for item in fake.received] == [0, 1, 2, 0, 0, 1, 2]


def test_rate_limit_retry_after_can_be_fractional_or_left_out(
    clocked: tuple[FakeHumanloop, Clock],
) -> None:
    """retry_after="fractional" says the exact wait to the millisecond; None sends no header."""
    fake, clock = clocked
    fake.set_rate_limit(4, burst=1, retry_after="fractional")
    assert fake.rate_limit == (4.0, 1)
    assert statuses(fake, 1) == [200]
    assert post(fake, {"type": "rating", "value": 1}).headers["Retry-After"] == "0.25"
    clock.advance(0.1)
    assert post(fake, {"type": "rating", "value": 1}).headers["Retry-After"] == "0.15"
    clock.advance(0.15)
    assert statuses(fake, 1) == [200]
    fake.set_rate_limit(0.1, burst=1, retry_after=None)
    assert statuses(fake, 1) == [200]
    refused = post(fake, {"type": "rating", "value": 1})
    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers
    fake.set_rate_limit(0.001, burst=1)
    assert statuses(fake, 1) == [200]
    assert post(fake, {"type": "rating", "value": 1}).headers["Retry-After"] == "1000"


def test_rate_limit_on_the_real_clock(fake_humanloop: FakeHumanloop) -> None:
    """Without a clock of the test's own, the bucket runs on time.monotonic: the default burst is
    one second's worth, and the wait is rounded up to whole seconds."""
    fake_humanloop.set_rate_limit(0.01)
    assert fake_humanloop.rate_limit == (0.01, 1)
    assert statuses(fake_humanloop, 2) == [200, 429]
    # 100 s to the next token, less what elapsed since set_rate_limit(): well under a second here.
    retry_after = post(fake_humanloop, {"type": "rating", "value": 1}).headers["Retry-After"]
    assert 90 <= int(retry_after) <= 100
    fake_humanloop.set_rate_limit(2.5)
    assert fake_humanloop.rate_limit == (2.5, 3)
    assert statuses(fake_humanloop, 4)[:3] == [200, 200, 200]


def test_rate_limit_is_turned_off_by_zero_none_and_clear(fake_humanloop: FakeHumanloop) -> None:
    """set_rate_limit(0), set_rate_limit(None) and clear() each lift the limit at once."""
    lifts: list[Callable[[], None]] = [
        lambda: fake_humanloop.set_rate_limit(0),
        lambda: fake_humanloop.set_rate_limit(None),
        fake_humanloop.clear,
    ]
    for lift in lifts:
        fake_humanloop.set_rate_limit(0.001, burst=1)
        assert statuses(fake_humanloop, 2) == [200, 429]
        lift()
        assert fake_humanloop.rate_limit is None
        assert statuses(fake_humanloop, 20) == [200] * 20
    assert fake_humanloop.rate_limited == 0, "clear() forgets the count too"
    assert len(fake_humanloop.received) == 20


def test_rate_limit_comes_after_reset_and_before_fail_and_the_service(
    fake_humanloop: FakeHumanloop,
) -> None:
    """A POST the limit lets through has used its token even when fail_next() fails it; a reset
    and other methods take none; a refused POST leaves a queued failure for later and is refused
    whatever its key."""
    fake_humanloop.set_rate_limit(0.001, burst=2)
    fake_humanloop.fail_next(1, 503)
    assert statuses(fake_humanloop, 1) == [503]  # took a token, then met the outage
    fake_humanloop.reset_next(1)
    with pytest.raises(requests.ConnectionError):  # dropped before the limit: no token taken
        post(fake_humanloop, {"type": "rating", "value": 1})
    for method in ("GET", "PUT"):
        assert requests.request(method, fake_humanloop.url, timeout=10).status_code == 405
    assert statuses(fake_humanloop, 1) == [200]  # the second and last token
    fake_humanloop.fail_next(1, 502)
    assert statuses(fake_humanloop, 1) == [429]
    assert statuses(fake_humanloop, 1, api_key="wrong") == [429]
    assert fake_humanloop.rate_limited == 2
    fake_humanloop.set_rate_limit(0)
    assert statuses(fake_humanloop, 3) == [502, 200, 200]
    recorded = [r.status for r in fake_humanloop.requests]
    assert recorded == [503, 0, 405, 405, 200, 429, 429, 502, 200, 200]


def test_rate_limit_is_exact_under_concurrent_clients(
    clocked: tuple[FakeHumanloop, Clock],
) -> None:
    """8 threads x 10 POSTs against a burst of 25 and no refill: exactly 25 accepted, 55 refused."""
    fake, _ = clocked
    fake.set_rate_limit(1, burst=25)
    threads_count, posts_each = 8, 10
    results: list[int] = []
    lock = threading.Lock()
    ready = threading.Barrier(threads_count)

    def client() -> None:
        ready.wait()
        got = statuses(fake, posts_each)
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=client) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200] * 25 + [429] * 55
    assert fake.rate_limited == 55
    assert len(fake.received) == 25
    assert sorted(r.status for r in fake.requests) == sorted(results)


def test_rate_limit_arguments_are_checked() -> None:
    """A rate that is negative, not finite or not a number, a burst below 1 or without a rate,
    and an unknown Retry-After form are ValueErrors, and leave the stand-in unlimited."""
    fake = FakeHumanloop()
    for bad_rate in (-1, float("nan"), float("inf"), True, "10"):
        with pytest.raises(ValueError, match="requests_per_second"):
            fake.set_rate_limit(bad_rate)  # type: ignore[arg-type]
    for bad_burst in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="burst"):
            fake.set_rate_limit(5, burst=bad_burst)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="burst needs a rate limit"):
        fake.set_rate_limit(0, burst=5)
    with pytest.raises(ValueError, match="retry_after"):
        fake.set_rate_limit(5, retry_after="http-date")
    assert fake.rate_limit is None


# -- threads ---------------------------------------------------------------------------------------


def test_concurrent_clients_are_counted_exactly(fake_humanloop: FakeHumanloop) -> None:
    """8 threads x 50 posts are all accepted, each counted once, each client's order preserved."""
    threads_count, posts_each = 8, 50
    errors: list[BaseException] = []
    ready = threading.Barrier(threads_count)

    def client(number: int) -> None:
        try:
            with requests.Session() as session:
                ready.wait()
                for index in range(posts_each):
                    item = {"type": "rating", "value": index, "data_id": f"c{number}-{index}"}
                    response = post(fake_humanloop, item, session=session)
                    assert response.status_code == 200
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    total = threads_count * posts_each
    assert fake_humanloop.wait_for_items(total, timeout=1)
    received = fake_humanloop.received
    assert len(received) == total
    assert len({item["data_id"] for item in received}) == total
    for number in range(threads_count):
        values = [item["value"] for item in received if item["data_id"].startswith(f"c{number}-")]
        assert values == list(range(posts_each))
    recorded = fake_humanloop.requests
    assert len(recorded) == total
    assert {r.status for r in recorded} == {200}
    assert len({r.connection for r in recorded}) == threads_count
    assert [r.time for r in recorded] == sorted(r.time for r in recorded)


# -- pytest integration ----------------------------------------------------------------------------


def test_fake_humanloop_fixture_is_a_running_stand_in(fake_humanloop: FakeHumanloop) -> None:
    """The plugin's fixture hands a test a started FakeHumanloop."""
    assert isinstance(fake_humanloop, FakeHumanloop)
    assert fake_humanloop.running
    assert post(fake_humanloop, {"type": "rating", "value": 1}).status_code == 200


@pytest.mark.slow
def test_fixture_is_registered_by_entry_point_and_stops_after_the_test(tmp_path: Path) -> None:
    """In a fresh pytest run the fixture comes from the entry point and is stopped after its test."""
    (tmp_path / "test_uses_fixture.py").write_text(
        textwrap.dedent(
            """
            from humanloop_logging.testing import FakeHumanloop

            seen = []

            def test_uses_the_fixture(fake_humanloop):
                assert isinstance(fake_humanloop, FakeHumanloop) and fake_humanloop.running
                seen.append(fake_humanloop)

            def test_it_was_stopped_afterwards():
                assert len(seen) == 1 and not seen[0].running
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


@pytest.mark.slow
def test_importing_testing_does_not_import_pytest() -> None:
    """``humanloop_logging.testing`` is usable outside pytest: importing it loads no pytest module."""
    code = (
        "import sys, humanloop_logging.testing\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest'))\n"
        "print(loaded)\n"
        "raise SystemExit(1 if loaded else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


HEAVY = (
    "requests",
    "tenacity",
    "structlog",
    "humanloop_logging.testing",
    "humanloop_logging.shipper",
)


@pytest.mark.slow
def test_loading_the_plugin_imports_nothing_heavy_and_registers_no_hook() -> None:
    """What pytest loads in every run: no requests, tenacity, structlog or stand-in, no atexit hook."""
    code = (
        "import atexit, sys, pytest\n"
        "before = atexit._ncallbacks()\n"
        "import humanloop_logging.pytest_plugin\n"
        f"heavy = sorted(m for m in sys.modules if m.startswith({HEAVY!r}))\n"
        "print(heavy, atexit._ncallbacks() - before)\n"
        "raise SystemExit(1 if heavy or atexit._ncallbacks() != before else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_a_pytest_run_that_does_not_use_the_fixture_imports_nothing_heavy(tmp_path: Path) -> None:
    """A pytest run that ignores the fixture imports nothing heavy; public names import on use."""
    (tmp_path / "test_plain.py").write_text(
        textwrap.dedent(
            f"""
            import sys

            def test_nothing_heavy_was_imported():
                assert "humanloop_logging.pytest_plugin" in sys.modules
                assert [m for m in sys.modules if m.startswith({HEAVY!r})] == []

            def test_public_names_import_on_first_use():
                import humanloop_logging

                assert humanloop_logging.FeedbackProcessor.__name__ == "FeedbackProcessor"
                assert "structlog" in sys.modules
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


# -- helpers ---------------------------------------------------------------------------------------


class Outcome:
    """The result of a call made on another thread: its return value or the exception it raised."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None

    def result(self, timeout: float = 5.0) -> Any:
        assert self.done.wait(timeout), "the call did not finish in time"
        return self.value


def run_in_thread(call: Any) -> Outcome:
    """Run ``call`` on a daemon thread; its outcome is an exception object if it raised."""
    outcome = Outcome()

    def target() -> None:
        try:
            outcome.value = call()
        except Exception as exc:
            outcome.value = exc
        finally:
            outcome.done.set()

    threading.Thread(target=target, daemon=True).start()
    return outcome
