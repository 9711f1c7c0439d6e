"""The stand-in's live inspector over real HTTP: off unless asked, who may read and switch, what
its API and event stream carry, and that it never changes what ``/v4/feedback`` answers."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional

import pytest
import requests

from humanloop_logging.testing import FakeHumanloop, RecordedRequest, _inspector_feed
from humanloop_logging.testing._inspector import address_allowed

pytestmark = pytest.mark.timeout(60)

#: A bound on how long stop() may take with an event stream open: many times what it takes.
STOP_BOUND = 10.0

GOOD = {"type": "rating", "value": "good", "data_id": "dp_1"}


@pytest.fixture
def fake() -> Iterator[FakeHumanloop]:
    """A started stand-in with its inspector on."""
    with FakeHumanloop(inspector=True) as server:
        yield server


def api(fake: FakeHumanloop, name: str) -> str:
    url = fake.inspector_url
    assert url is not None
    return f"{url}_inspector/{name}"


def origin(fake: FakeHumanloop) -> str:
    return f"http://127.0.0.1:{fake.port}"


def switch(
    fake: FakeHumanloop, change: Any, *, headers: Optional[dict[str, str]] = None
) -> requests.Response:
    """POST ``change`` to the faults API as the page does, or with ``headers`` instead."""
    sent = {"Origin": origin(fake)} if headers is None else headers
    return requests.post(api(fake, "api/faults"), json=change, headers=sent, timeout=10)


def feedback(fake: FakeHumanloop, body: Any) -> requests.Response:
    return requests.post(fake.url, json=body, headers={"X-API-KEY": fake.api_key}, timeout=10)


def test_the_inspector_is_off_unless_asked() -> None:
    """A stand-in made from Python answers the inspector's paths with the service's 404."""
    with FakeHumanloop() as fake:
        assert fake.inspector_url is None
        base = f"http://127.0.0.1:{fake.port}"
        for path in ("/", "/_inspector/api/state", "/_inspector/recorded.jsonl"):
            answer = requests.get(base + path, timeout=10)
            assert (answer.status_code, answer.content) == (404, b'{"detail":"Not Found"}')
        assert [request.path for request in fake.requests] == [
            "/",
            "/_inspector/api/state",
            "/_inspector/recorded.jsonl",
        ]


def test_feedback_is_answered_byte_for_byte_as_without_the_inspector() -> None:
    """/v4/feedback and the other paths answer the same with the inspector on; the inspector's
    own requests are not recorded."""
    bodies: list[Any] = [[GOOD, {"type": "rating", "value": [1, {}]}], {"value": 1}, GOOD]
    answers: dict[bool, list[tuple[int, bytes]]] = {}
    for inspector in (False, True):
        with FakeHumanloop(inspector=inspector, flavour="v2") as fake:
            got = [(r.status_code, r.content) for r in (feedback(fake, b) for b in bodies)]
            wrong = requests.get(f"http://127.0.0.1:{fake.port}/v4/other", timeout=10)
            got.append((wrong.status_code, wrong.content))
            if inspector:
                assert requests.get(api(fake, "api/state"), timeout=10).status_code == 200
            assert len(fake.requests) == len(bodies) + 1
            answers[inspector] = [
                (status, b"" if status == 200 else content) for status, content in got
            ]
    assert answers[True] == answers[False]


def test_the_page_and_its_files_are_served(fake: FakeHumanloop) -> None:
    """GET / is the page; its stylesheet and script are served from the package; none of them,
    nor the state, holds the API key."""
    page = requests.get(fake.inspector_url or "", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "<title>Humanloop stand-in: live inspector</title>" in page.text
    for name, kind in (
        ("inspector.css", "text/css"),
        ("inspector.js", "text/javascript"),
        ("favicon.svg", "image/svg+xml"),
    ):
        asset = requests.get(api(fake, f"static/{name}"), timeout=10)
        assert asset.status_code == 200
        assert asset.headers["Content-Type"].startswith(kind)
        assert fake.api_key not in asset.text
    feedback(fake, GOOD)
    assert fake.api_key not in page.text
    assert fake.api_key not in requests.get(api(fake, "api/state"), timeout=10).text


def test_a_same_origin_json_switch_is_applied(fake: FakeHumanloop) -> None:
    """The page's own POST switches the fault on: the next feedback request gets it."""
    answer = switch(fake, {"fail_next": 2})
    assert answer.status_code == 200
    assert answer.json()["faults"]["fail_next"] == 2
    assert feedback(fake, GOOD).status_code == 503
    assert switch(fake, {"fail_next": 0, "refuse_key": True, "latency": 0}).status_code == 200
    assert feedback(fake, GOOD).status_code == 401
    assert switch(fake, {"refuse_key": False, "rate_limit": 0.01}).status_code == 200
    assert fake.rate_limit == (0.01, 1)
    assert [feedback(fake, GOOD).status_code for _ in range(2)] == [200, 429]
    assert switch(fake, {"rate_limit": None}).json()["faults"]["rate_limit"] is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:1"},
        {"Origin": "https://127.0.0.1:{port}"},
        {"Origin": "null"},
        {},
    ],
    ids=["other-site", "other-port", "other-scheme", "opaque", "no-origin"],
)
def test_a_switch_from_another_origin_is_refused(
    fake: FakeHumanloop, headers: dict[str, str]
) -> None:
    """A POST whose Origin is not the stand-in's own is a 403 and switches nothing."""
    sent = {name: value.format(port=fake.port) for name, value in headers.items()}
    answer = switch(fake, {"fail_next": 1}, headers=sent)
    assert answer.status_code == 403
    assert "Origin" in answer.json()["detail"]
    assert fake._faults_state()["fail_next"] == 0
    assert feedback(fake, GOOD).status_code == 200


def test_a_form_or_plain_text_switch_is_refused(fake: FakeHumanloop) -> None:
    """A cross-site form or a "simple" request cannot send JSON: with the right Origin, a
    form-encoded or text/plain body is still refused and switches nothing."""
    for content_type, data in (
        ("application/x-www-form-urlencoded", b"fail_next=1"),
        ("text/plain", b'{"fail_next": 1}'),
    ):
        answer = requests.post(
            api(fake, "api/faults"),
            data=data,
            headers={"Origin": origin(fake), "Content-Type": content_type},
            timeout=10,
        )
        assert answer.status_code == 403
        assert "application/json" in answer.json()["detail"]
    assert requests.get(api(fake, "api/faults"), timeout=10).status_code == 405
    assert fake._faults_state()["fail_next"] == 0


@pytest.mark.parametrize("path", ["", "_inspector/api/state", "_inspector/recorded.jsonl"])
def test_a_wrong_host_header_is_refused(fake: FakeHumanloop, path: str) -> None:
    """A name that was made to resolve to 127.0.0.1 (DNS rebinding) reads nothing; localhost and
    the bound address do."""
    feedback(fake, GOOD)
    url = f"http://127.0.0.1:{fake.port}/{path}"
    for host in (f"evil.example:{fake.port}", "127.0.0.1:1", "127.0.0.1"):
        answer = requests.get(url, headers={"Host": host}, timeout=10)
        assert answer.status_code == 403
        assert "dp_1" not in answer.text
    for host in (f"localhost:{fake.port}", f"127.0.0.1:{fake.port}"):
        assert requests.get(url, headers={"Host": host}, timeout=10).status_code == 200


def test_bad_switches_are_400_and_switch_nothing(fake: FakeHumanloop) -> None:
    """A switch with a wrong name or value is refused whole, with a detail saying why."""
    changes: list[Any] = [
        {"latency": -1},
        {"latency": 0.5, "rate_limit": "fast"},
        {"fail_next": 1.5},
        {"refuse_key": "yes"},
        {"slow": True},
        [],
    ]
    for change in changes:
        answer = switch(fake, change)
        assert answer.status_code == 400, change
        assert answer.json()["detail"]
    assert fake._faults_state()["latency"] == 0


@pytest.mark.parametrize(
    ("flavour", "loc"),
    [("v1", ["body", 2, "value"]), ("v2", ["body", "list[FeedbackRequest]", 2, "value", "bool"])],
)
def test_a_422_names_the_item_it_refused(fake: FakeHumanloop, flavour: str, loc: list[Any]) -> None:
    """The request log carries a 422's detail and the item each error's loc points at."""
    with FakeHumanloop(inspector=True, flavour=flavour) as server:
        bad = {"type": "rating", "value": {"nested": 1}, "data_id": "dp_bad"}
        assert feedback(server, [GOOD, GOOD, bad]).status_code == 422
        state = requests.get(api(server, "api/state"), timeout=10).json()
    (request,) = state["requests"]
    assert (request["status"], request["items"]) == (422, 3)
    rejection = request["rejection"]
    assert loc in [entry["loc"] for entry in rejection["detail"]]
    (named,) = rejection["items"]
    assert (named["index"], named["item"]) == (2, bad)
    assert [error["field"] for error in named["errors"]] == ["value"]
    assert state["records"] == []


def test_state_keeps_records_requests_and_faults(fake: FakeHumanloop) -> None:
    """Accepted items become records with their request; 401s and 503s are in the log with
    their reason and latency; the faults in force are there too."""
    feedback(fake, [GOOD, {"type": "action", "value": "copy", "user": "ann"}])
    requests.post(fake.url, json=GOOD, headers={"X-API-KEY": "wrong"}, timeout=10)
    fake.fail_next(1)
    fake.set_latency(0.05)
    feedback(fake, GOOD)
    state = requests.get(api(fake, "api/state"), timeout=10).json()
    assert [(r["data_id"], r["type"], r["user"]) for r in state["records"]] == [
        ("dp_1", "rating", None),
        (None, "action", "ann"),
    ]
    assert [(r["status"], r["items"], r["reason"]) for r in state["requests"]] == [
        (200, 2, None),
        (401, 1, "Invalid API key"),
        (503, 1, "Service Unavailable"),
    ]
    assert state["requests"][2]["latency"] >= 0.05
    assert state["faults"]["latency"] == 0.05
    assert state["totals"] == {"requests": 3, "records": 2}


def test_recorded_download_is_what_record_writes(fake: FakeHumanloop) -> None:
    """The download is every accepted item, as sent, one JSON line each (serve --record's form)."""
    items = [GOOD, {"type": "comment", "value": "très bien"}]
    feedback(fake, items)
    feedback(fake, {"value": 1})
    answer = requests.get(api(fake, "recorded.jsonl"), timeout=10)
    assert answer.headers["Content-Disposition"] == 'attachment; filename="recorded.jsonl"'
    expected = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    assert answer.content.decode("utf-8") == expected


class EventReader:
    """An open ``GET /_inspector/api/events``, read one event at a time."""

    def __init__(self, fake: FakeHumanloop) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
        self.connection.request("GET", "/_inspector/api/events")
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type") == "text/event-stream; charset=utf-8"

    def next(self) -> tuple[str, Any]:
        name, data = "", None
        while True:
            line = self.response.readline().decode("utf-8")
            if not line:
                raise EOFError("the stream ended")
            line = line.rstrip("\n")
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
            elif not line and name:
                return name, data


def test_the_event_stream_sends_a_snapshot_then_each_change(fake: FakeHumanloop) -> None:
    """A page gets what was there on connecting, then each request and fault as it happens."""
    feedback(fake, GOOD)
    reader = EventReader(fake)
    try:
        name, data = reader.next()
        assert name == "snapshot"
        assert [record["data_id"] for record in data["records"]] == ["dp_1"]
        fake.set_latency(0.01)
        assert reader.next() == ("faults", {"faults": fake._faults_state()})
        feedback(fake, {**GOOD, "data_id": "dp_2"})
        name, data = reader.next()
        assert name == "request"
        assert [record["data_id"] for record in data["records"]] == ["dp_2"]
        assert data["totals"] == {"requests": 2, "records": 2}
        fake.clear()
        name, data = reader.next()
        assert (name, data["records"], data["requests"]) == ("snapshot", [], [])
    finally:
        reader.connection.close()


def test_stop_is_not_held_up_by_an_open_event_stream() -> None:
    """An open page does not keep stop() waiting: its stream ends and its thread is joined."""
    fake = FakeHumanloop(inspector=True).start()
    reader = EventReader(fake)
    assert reader.next()[0] == "snapshot"
    stopper = threading.Thread(target=fake.stop)
    started = time.monotonic()
    stopper.start()
    stopper.join(STOP_BOUND)
    assert not stopper.is_alive()
    assert time.monotonic() - started < STOP_BOUND
    with pytest.raises((EOFError, OSError)):
        reader.next()
    reader.connection.close()


@pytest.mark.parametrize(
    ("netloc", "bound", "allowed"),
    [
        ("127.0.0.1:8742", "127.0.0.1", True),
        ("localhost:8742", "127.0.0.1", True),
        ("LOCALHOST:8742", "127.0.0.1", True),
        ("[::1]:8742", "::1", True),
        ("localhost:8742", "::1", True),
        ("127.0.0.1:8743", "127.0.0.1", False),
        ("127.0.0.1", "127.0.0.1", False),
        ("rebound.example:8742", "127.0.0.1", False),
        ("127.0.0.1:8742, evil:8742", "127.0.0.1", False),
        ("192.0.2.7:8742", "0.0.0.0", True),
        ("localhost:8742", "0.0.0.0", True),
        ("rebound.example:8742", "0.0.0.0", False),
        ("192.0.2.7:8742", "192.0.2.7", True),
        ("localhost:8742", "192.0.2.7", False),
    ],
)
def test_address_allowed(netloc: str, bound: str, allowed: bool) -> None:
    """Only the bound address and port, localhost for a loopback or wildcard bind, and any IP
    address for a wildcard bind (a rebinding attack needs a name) are the stand-in's own."""
    assert address_allowed(netloc, bound, 8742) is allowed


def test_the_page_keeps_only_the_latest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its caps the inspector forgets the oldest records and requests, and says how many it
    keeps and how many there were; the download still has every accepted item."""
    monkeypatch.setattr(_inspector_feed, "RECORDS_KEPT", 3)
    monkeypatch.setattr(_inspector_feed, "REQUESTS_KEPT", 2)
    with FakeHumanloop(inspector=True) as server:
        for n in range(3):
            batch = [{**GOOD, "data_id": f"dp_{n}_{i}"} for i in range(2)]
            assert feedback(server, batch).status_code == 200
        state = requests.get(api(server, "api/state"), timeout=10).json()
        download = requests.get(api(server, "recorded.jsonl"), timeout=10).text
    assert [record["data_id"] for record in state["records"]] == ["dp_1_1", "dp_2_0", "dp_2_1"]
    assert [request["id"] for request in state["requests"]] == [2, 3]
    assert state["totals"] == {"requests": 3, "records": 6}
    assert state["kept"] == {"requests": 2, "records": 3}
    assert len(download.splitlines()) == 6


def _sse(chunk: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The events in one chunk of the stream, as (name, data); the retry line and comments left
    out."""
    events = []
    for block in chunk.decode("utf-8").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.mark.parametrize("behind", [_inspector_feed._EVENTS_KEPT, _inspector_feed._EVENTS_KEPT + 1])
def test_a_page_further_behind_than_the_log_gets_a_snapshot(behind: int) -> None:
    """A stream read after ``behind`` requests gets each one's event while the log still holds
    them all, and one snapshot once it holds too few; then it carries on event by event.

    The feed as plain code: the stream is a generator, read here only when the test says."""
    kept = _inspector_feed._EVENTS_KEPT
    feed = _inspector_feed.InspectorFeed(lambda: {"latency": 0.0})

    def observe(n: int) -> None:
        item = {**GOOD, "data_id": f"dp_{n}"}
        body = json.dumps([item]).encode()
        request = RecordedRequest(
            method="POST",
            path="/v4/feedback",
            status=200,
            item_count=1,
            headers={},
            body=body,
            time=float(n),
            batch=True,
            connection=1,
            response=b"[]",
        )
        feed.observe(request, [item])

    stream = feed.stream(threading.Event())
    assert [name for name, _ in _sse(next(stream))] == ["snapshot"]
    for n in range(behind):
        observe(n)
    caught_up = _sse(next(stream))
    if behind <= kept:
        assert [name for name, _ in caught_up] == ["request"] * behind
        assert [data["records"][0]["data_id"] for _, data in caught_up] == [
            f"dp_{n}" for n in range(behind)
        ]
    else:
        [(name, snapshot)] = caught_up
        assert name == "snapshot"
        assert snapshot["totals"] == {"requests": behind, "records": behind}
        assert snapshot["records"][-1]["data_id"] == f"dp_{behind - 1}"
    observe(behind)
    [(name, data)] = _sse(next(stream))
    assert (name, data["records"][0]["data_id"]) == ("request", f"dp_{behind}")
