"""The local Humanloop stand-in: routing, auth, validation answers, faults, lifecycle, threads."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

import pytest
import requests

from humanloop_logging.testing import FakeHumanloop

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(60)


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


def post_raw(fake: FakeHumanloop, data: bytes) -> requests.Response:
    """POST raw bytes, for bodies ``json.dumps`` would never produce."""
    headers = {"X-API-KEY": fake.api_key, "Content-Type": "application/json"}
    return requests.post(fake.url, data=data, headers=headers, timeout=10)


def clean_env() -> dict[str, str]:
    """The environment for child interpreters: this checkout importable, plugins autoloaded."""
    env = dict(os.environ)
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# -- lifecycle -------------------------------------------------------------------------------------


def test_starts_in_well_under_a_second_on_an_ephemeral_port() -> None:
    """start() binds a free port on 127.0.0.1 and is serving within a second."""
    started = time.monotonic()
    fake = FakeHumanloop().start()
    try:
        assert time.monotonic() - started < 1.0
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
    fake_humanloop.stop()
    assert time.monotonic() - started < 2.0
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
    assert {key: value for key, value in answer.items() if key != "id"} == item
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
        {"type": "my-own-type", "value": 0.5, "extra": {"kept": True}},
    ]
    response = post(fake_humanloop, items)
    assert response.status_code == 200
    answer = response.json()
    assert isinstance(answer, list)
    assert [entry["type"] for entry in answer] == [item["type"] for item in items]
    assert all(entry["id"].startswith("ann_") for entry in answer)
    assert len({entry["id"] for entry in answer}) == len(items)
    assert answer[2]["value"] is None  # an unset item still has a value in the answer
    assert answer[3]["extra"] == {"kept": True}
    assert fake_humanloop.received == items
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


def test_auth_is_checked_before_the_body(fake_humanloop: FakeHumanloop) -> None:
    """An invalid body with a wrong key is a 401, not a 422."""
    response = post(fake_humanloop, {"value": 1}, api_key="nope")
    assert response.status_code == 401


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
    """A bad object body gets one detail entry per bad field, located without an index."""
    body = {"type": 3, "value": {"a": 1}, "user": None, "created_at": "yesterday", "unset": "no"}
    response = post(fake_humanloop, body)
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {"loc": ["body", "type"], "msg": "str type expected", "type": "type_error.str"},
            {
                "loc": ["body", "value"],
                "msg": "value is not a valid feedback value "
                "(boolean, number, string or list of strings)",
                "type": "type_error.union",
            },
            {
                "loc": ["body", "user"],
                "msg": "none is not an allowed value",
                "type": "type_error.none.not_allowed",
            },
            {
                "loc": ["body", "created_at"],
                "msg": "invalid datetime format",
                "type": "value_error.datetime",
            },
            {
                "loc": ["body", "unset"],
                "msg": "value is not a valid boolean",
                "type": "type_error.bool",
            },
        ]
    }
    assert fake_humanloop.received == []
    assert fake_humanloop.requests[0].status == 422


def test_422_for_an_array_names_every_bad_item(fake_humanloop: FakeHumanloop) -> None:
    """Every bad item of an array is located by index; the good items are not accepted either."""
    body = [
        {"type": "rating", "value": 1},
        {"value": "no type"},
        "not an object",
        {"type": "rating", "value": 2},
        {"type": "rating", "value": ["ok", 3], "data_id": 7},
    ]
    response = post(fake_humanloop, body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [(entry["loc"], entry["type"]) for entry in detail] == [
        (["body", 1, "type"], "value_error.missing"),
        (["body", 2], "type_error.dict"),
        (["body", 4, "value"], "type_error.union"),
        (["body", 4, "data_id"], "type_error.str"),
    ]
    assert detail[0]["msg"] == "field required"
    assert fake_humanloop.received == []
    assert fake_humanloop.requests[0].item_count == 5


def test_value_is_required_unless_unset(fake_humanloop: FakeHumanloop) -> None:
    """A missing value is "field required" unless the item says ``unset: true``."""
    response = post(fake_humanloop, [{"type": "rating"}, {"type": "rating", "unset": False}])
    assert response.status_code == 422
    assert [entry["loc"] for entry in response.json()["detail"]] == [
        ["body", 0, "value"],
        ["body", 1, "value"],
    ]
    assert post(fake_humanloop, {"type": "rating", "unset": True}).status_code == 200


@pytest.mark.parametrize("created_at", ["2024-02-29T23:59:59.123+05:30", "2024-01-01t00:00:00z"])
def test_rfc3339_datetimes_are_accepted(fake_humanloop: FakeHumanloop, created_at: str) -> None:
    """created_at accepts what the schema's date-time format accepts (case-insensitive T and Z)."""
    response = post(fake_humanloop, {"type": "rating", "value": 1, "created_at": created_at})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "created_at",
    ["2023-02-29T00:00:00Z", "2024-01-01 00:00:00Z", "2024-01-01T00:00:00", "0000-01-01T00:00:00Z"],
)
def test_non_rfc3339_datetimes_are_rejected(fake_humanloop: FakeHumanloop, created_at: str) -> None:
    """Impossible dates, a missing T or a missing offset are value_error.datetime."""
    response = post(fake_humanloop, {"type": "rating", "value": 1, "created_at": created_at})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "value_error.datetime"


@pytest.mark.parametrize("body", ["a string", 5, None, True])
def test_body_must_be_an_object_or_an_array(fake_humanloop: FakeHumanloop, body: Any) -> None:
    """Any other JSON value is a 422 located at the body itself."""
    response = post(fake_humanloop, body)
    assert response.status_code == 422
    assert {tuple(entry["loc"]) for entry in response.json()["detail"]} == {("body",)}
    assert fake_humanloop.requests[0].item_count == 0


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_invalid_json(fake_humanloop: FakeHumanloop, token: str) -> None:
    """NaN, Infinity and overflowing numbers are refused as JSON, at the offending position."""
    data = f'{{"type": "rating", "value": {token}}}'.encode()
    response = post_raw(fake_humanloop, data)
    assert response.status_code == 422
    (entry,) = response.json()["detail"]
    assert entry["type"] == "json_invalid"
    assert entry["msg"] == "JSON decode error"
    assert entry["loc"] == ["body", data.index(token.encode())]
    assert fake_humanloop.received == []
    assert fake_humanloop.requests[0].item_count == 0


def test_invalid_json_is_located(fake_humanloop: FakeHumanloop) -> None:
    """Malformed JSON is one json_invalid entry with the character position and the reason."""
    response = post_raw(fake_humanloop, b'{"type": "rating", "value": }')
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "loc": ["body", 28],
                "msg": "JSON decode error",
                "type": "json_invalid",
                "ctx": {"error": "Expecting value"},
            }
        ]
    }


def test_empty_body_is_a_missing_body(fake_humanloop: FakeHumanloop) -> None:
    """No body at all is FastAPI's "field required" at ["body"]."""
    response = post_raw(fake_humanloop, b"")
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body"], "msg": "field required", "type": "value_error.missing"}
    ]


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
    fake_humanloop.stop()
    assert time.monotonic() - started < 2.0
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
    assert time.monotonic() - started < 2.0
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
