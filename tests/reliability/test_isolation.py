"""What one bad record costs: a 422 in either FastAPI shape, a record the service fails on, an outage.

The servers here are real HTTP servers on 127.0.0.1 (``RawServer``) that answer like the service
would: a 422 shaped as pydantic v1 or v2 shapes it, naming the items it refuses; or a 500 whenever
a request holds a record the service cannot process. Every test counts the requests it took.
"""

from __future__ import annotations

import collections
import json
import socket
from dataclasses import dataclass, field

import pytest
import tenacity
from reliability_support import (
    MEASUREMENTS,
    SECRET_KEY,
    Cleanup,
    ErrorLog,
    RawRequest,
    RawServer,
    good_answer,
)
from support import hand_over

from humanloop_logging import (
    DeliveryError,
    FeedbackShipper,
    HTTPTransport,
    UnprocessableEntityError,
)

BATCH = 100


def _answer(conn: socket.socket, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    conn.sendall(head.encode("ascii") + body)


@dataclass
class RejectsShaped:
    """A 422 for any request holding one of ``bad``, its ``detail`` shaped by pydantic ``shape``.

    Each bad item's ``value`` is refused once per member of the field's union, and the other
    branch of the body's union adds its entry, as the real services do (v2 echoes the whole
    request in that entry's ``input``).
    """

    bad: frozenset[str]
    shape: str

    def __call__(self, server: RawServer, conn: socket.socket, request: RawRequest) -> bool:
        items = json.loads(request.body)
        named = [index for index, item in enumerate(items) if item["data_id"] in self.bad]
        if not named:
            return good_answer(server, conn, request)
        detail: list[dict[str, object]] = []
        for index in named:
            if self.shape == "v1":
                detail += [
                    {"loc": ["body", index, "value"], "msg": msg, "type": kind}
                    for msg, kind in (
                        ("value could not be parsed to a boolean", "type_error.bool"),
                        ("value is not a valid float", "type_error.float"),
                        ("value is not a valid list", "type_error.list"),
                        ("str type expected", "type_error.str"),
                    )
                ]
            else:
                detail += [
                    {
                        "type": kind,
                        "loc": ["body", "list[FeedbackRequest]", index, "value", member],
                        "msg": msg,
                        "input": items[index]["value"],
                    }
                    for member, kind, msg in (
                        ("bool", "bool_type", "Input should be a valid boolean"),
                        ("float", "float_type", "Input should be a valid number"),
                        ("list[str]", "list_type", "Input should be a valid list"),
                        ("str", "string_type", "Input should be a valid string"),
                    )
                ]
        if self.shape == "v1":
            detail.append(
                {"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}
            )
        else:
            detail.append(
                {
                    "type": "model_attributes_type",
                    "loc": ["body", "FeedbackRequest"],
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": items,
                }
            )
        _answer(conn, 422, {"detail": detail})
        return True


@dataclass
class FailsOn:
    """A 500 for any request holding one of ``poison`` (all requests if ``poison`` is None)."""

    poison: frozenset[str] | None
    statuses: list[int] = field(default_factory=list)

    def __call__(self, server: RawServer, conn: socket.socket, request: RawRequest) -> bool:
        items = json.loads(request.body)
        if self.poison is None or any(item["data_id"] in self.poison for item in items):
            self.statuses.append(500)
            _answer(conn, 500, {"detail": "Internal Server Error"})
            return True
        self.statuses.append(200)
        return good_answer(server, conn, request)


def make_shipper(
    server: RawServer,
    errors: ErrorLog,
    cleanup: Cleanup,
    max_retry_time: float = 30.0,
    wait: float = 0.0,
) -> FeedbackShipper:
    """A shipper with a fixed backoff (none by default), so a test spends no time waiting."""
    transport = HTTPTransport(
        api_key=SECRET_KEY,
        url=f"{server.base_url}/feedback",
        timeout=10.0,
        max_retry_time=max_retry_time,
        wait=tenacity.wait_fixed(wait),
    )
    shipper = FeedbackShipper(
        api_key=SECRET_KEY,
        base_url=server.base_url,
        batch_size=BATCH,
        flush_interval=60.0,
        on_error=errors,
        transport=transport,
    )
    cleanup.close(shipper)
    return shipper


def send_batch(shipper: FeedbackShipper, bad: set[str]) -> list[str]:
    """One full batch whose ``bad`` records carry a value the server refuses."""
    ids = [f"d-{n}" for n in range(BATCH)]
    for data_id in ids:
        value = "refused" if data_id in bad else "good"
        hand_over(shipper, data_id, value=value)
    return ids


def spread(k: int) -> set[str]:
    """``k`` bad records spread over the batch."""
    return {f"d-{n}" for n in range(0, BATCH, BATCH // k)[:k]}


@pytest.mark.parametrize("shape", ["v1", "v2"])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_a_422_in_either_shape_rejects_exactly_the_named_records_in_one_round(
    shape: str, k: int, errors: ErrorLog, cleanup: Cleanup
) -> None:
    """k refused records in a batch of 100 cost one extra request, whatever pydantic shaped it."""
    bad = spread(k)
    with RawServer([], then=RejectsShaped(frozenset(bad), shape)) as server:
        shipper = make_shipper(server, errors, cleanup)
        ids = send_batch(shipper, bad)
        assert shipper.flush(30.0)
        requests = len(server.requests)

    assert server.accepted == collections.Counter(i for i in ids if i not in bad)
    assert requests == 2
    rejected = errors.of(UnprocessableEntityError)
    assert sorted(str(e.rejected[0][0]["data_id"]) for e in rejected) == sorted(bad)
    for error in rejected:
        text = str(error)
        assert text.count("422") == 1, text
        assert "[{" not in text, text
        assert "list[FeedbackRequest]" not in text, text
        assert "value: " in text, text
        assert error.details  # the service's own entries, for code that wants them
    stats = shipper.stats()
    assert (stats.sent, stats.rejected, stats.failed, stats.pending) == (BATCH - k, k, 0, 0)
    MEASUREMENTS[f"isolation, {k} refused of {BATCH}, {shape} 422 shape"] = f"{requests} requests"


@pytest.mark.parametrize("k", [1, 3])
def test_a_record_the_service_fails_on_costs_only_itself(
    k: int, errors: ErrorLog, cleanup: Cleanup
) -> None:
    """A 500 that follows a batch is traced to the records causing it; the rest is delivered."""
    poison = spread(k)
    behaviour = FailsOn(frozenset(poison))
    with RawServer([], then=behaviour) as server:
        shipper = make_shipper(server, errors, cleanup)
        ids = send_batch(shipper, poison)
        assert shipper.flush(60.0)

    assert server.accepted == collections.Counter(i for i in ids if i not in poison)
    stats = shipper.stats()
    assert (stats.sent, stats.rejected, stats.failed, stats.pending) == (BATCH - k, 0, k, 0)
    given_up = [e for e in errors.of(DeliveryError) if e.records]
    assert sorted(str(r["data_id"]) for e in given_up for r in e.records) == sorted(poison)
    assert all("on this record alone" in str(e) for e in given_up)
    # Bisection per poison record: about two requests per halving, never the whole batch again.
    assert len(behaviour.statuses) <= 2 + k * 2 * 8, behaviour.statuses
    MEASUREMENTS[f"isolation, {k} record(s) the service fails on, of {BATCH}"] = (
        f"{len(behaviour.statuses)} requests"
    )


def test_an_outage_is_not_mistaken_for_poison(errors: ErrorLog, cleanup: Cleanup) -> None:
    """A 500 to everything: three records alone find no success, so the batch is retried whole."""
    behaviour = FailsOn(None)
    with RawServer([], then=behaviour) as server:
        shipper = make_shipper(server, errors, cleanup, max_retry_time=0.5, wait=0.05)
        send_batch(shipper, set())
        assert shipper.flush(30.0)
        sizes = [len(json.loads(request.body)) for request in server.requests]

    assert server.accepted == collections.Counter()
    stats = shipper.stats()
    assert (stats.sent, stats.failed, stats.pending) == (0, BATCH, 0)
    # The whole batch twice, three records alone once each, then the whole batch again until
    # time runs out: never the batch in parts.
    assert sizes[:5] == [BATCH, BATCH, 1, 1, 1], sizes
    assert len(sizes) > 5, "the whole batch was not retried after the probes"
    assert set(sizes[5:]) == {BATCH}, sizes


def test_after_an_outage_the_next_batch_is_not_split(errors: ErrorLog, cleanup: Cleanup) -> None:
    """Once a probe found everything failing, later batches are retried whole until a success."""
    behaviour = FailsOn(None)
    with RawServer([], then=behaviour) as server:
        shipper = make_shipper(server, errors, cleanup, max_retry_time=0.3, wait=0.05)
        send_batch(shipper, set())
        assert shipper.flush(30.0)
        first = len(server.requests)
        send_batch(shipper, set())
        assert shipper.flush(30.0)
        later = [len(json.loads(r.body)) for r in server.requests[first:]]

    assert later, "the second batch was never sent"
    assert set(later) == {BATCH}, later
