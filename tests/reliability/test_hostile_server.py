"""Hostile or broken servers, on raw sockets: huge bodies, bad JSON, the wrong content type, no
answer at all, an answer a byte at a time. None may hang the client past its timeouts, make it
read without bound, or lose the batch: it is delivered once the server behaves, or reported.

Retries here wait no real backoff (the transport is given ``wait_none``): what is asserted is what
happened, requests and outcomes, not how long it took."""

from __future__ import annotations

import collections
import json
from collections.abc import Sequence

import pytest
import tenacity
from reliability_support import (
    SECRET_KEY,
    Behaviour,
    Cleanup,
    ErrorLog,
    Fixed,
    HugeBody,
    NeverAnswer,
    RawServer,
    Trickle,
    good_answer,
)

from humanloop_logging import (
    APIError,
    FeedbackHandler,
    FeedbackShipper,
    FeedbackStats,
    HTTPTransport,
    TransportError,
)

pytestmark = [pytest.mark.timeout(60)]

IDS = [f"h-{n}" for n in range(5)]
HUGE = 50 * 1024 * 1024
TIMEOUT = 1.0


def send_batch(
    server: RawServer,
    errors: ErrorLog,
    cleanup: Cleanup,
    *,
    max_retry_time: float = 15.0,
) -> FeedbackStats:
    """Log IDS as one batch and flush; the stats after. Retries are sent without a wait."""
    transport = HTTPTransport(
        api_key=SECRET_KEY,
        url=server.base_url + "/feedback",
        timeout=TIMEOUT,
        max_retry_time=max_retry_time,
        wait=tenacity.wait_none(),
    )
    shipper = FeedbackShipper(
        api_key=SECRET_KEY,
        on_error=errors,
        batch_size=len(IDS),
        flush_interval=60,
        exit_timeout=2,
        transport=transport,
    )
    cleanup.close(shipper)
    handler = FeedbackHandler(shipper=shipper)
    logger = cleanup.attach(f"reliability.hostile.{server.port}", handler)
    for data_id in IDS:
        logger.info("fb", extra={"data_id": data_id, "type": "rating", "value": "good"})
    assert handler.flush(max_retry_time + 10 * TIMEOUT), handler.stats()
    return handler.stats()


def delivered_once(server: RawServer) -> bool:
    return server.accepted == collections.Counter(IDS)


def run(
    behaviours: Sequence[Behaviour],
    errors: ErrorLog,
    cleanup: Cleanup,
    then: Behaviour = good_answer,
) -> tuple[RawServer, FeedbackStats]:
    server = RawServer(behaviours, then=then)
    cleanup.later(server.stop)
    server.__enter__()
    return server, send_batch(server, errors, cleanup)


@pytest.mark.parametrize("status", [200, 503])
def test_huge_body_is_not_read_to_the_end(status: int, errors: ErrorLog, cleanup: Cleanup) -> None:
    """A 50 MB answer is not read to the end; the batch counts as sent on 200, retried on 503."""
    huge = HugeBody(status, HUGE)
    server, stats = run([huge], errors, cleanup)

    assert delivered_once(server)
    assert not huge.completed
    assert huge.sent < HUGE
    assert (stats.sent, stats.failed, stats.pending) == (5, 0, 0)
    assert stats.retried == (1 if status == 503 else 0)
    assert len(server.requests) == (2 if status == 503 else 1)
    assert errors.errors == []


def test_malformed_json_on_a_200_counts_as_delivered(errors: ErrorLog, cleanup: Cleanup) -> None:
    """A 200 whose body is not JSON: the status says delivered, and nothing is sent again."""
    server, stats = run([Fixed(200, b'[{"id": "ann_1", ')], errors, cleanup)

    assert delivered_once(server)
    assert (stats.sent, stats.retried, len(server.requests)) == (5, 0, 1)
    assert errors.errors == []


def test_malformed_json_on_one_422_bisects_and_delivers(errors: ErrorLog, cleanup: Cleanup) -> None:
    """A 422 whose body cannot be read names no item: the batch is split and both halves go."""
    server, stats = run([Fixed(422, b'{"detail": [{"loc": ["body", ')], errors, cleanup)

    assert delivered_once(server)
    assert (stats.sent, stats.rejected, stats.retried) == (5, 0, 0)
    assert len(server.requests) == 3
    assert server.accepted_batches == 2
    assert errors.errors == []


def test_malformed_json_on_every_422_rejects_each_record_with_the_reason(
    errors: ErrorLog, cleanup: Cleanup
) -> None:
    """A server that 422s everything unreadably: each record ends alone, rejected and reported."""
    server = RawServer([], then=Fixed(422, b"<html>Unprocessable</html>", "text/html"))
    cleanup.later(server.stop)
    server.__enter__()
    stats = send_batch(server, errors, cleanup)

    assert server.accepted == collections.Counter()
    assert (stats.sent, stats.rejected, stats.failed, stats.pending) == (0, 5, 0, 0)
    assert len(server.requests) == 2 * len(IDS) - 1  # halving down to single records
    rejected = errors.rejected()
    assert sorted(data_id for data_id, _ in rejected) == IDS
    for _, reason in rejected:
        assert "Unprocessable" in reason


@pytest.mark.parametrize(
    ("status", "retried"), [(200, 0), (503, 1)], ids=["200 as HTML", "503 as HTML"]
)
def test_wrong_content_type(status: int, retried: int, errors: ErrorLog, cleanup: Cleanup) -> None:
    """An HTML answer: judged by its status alone, the batch is sent once (after a retry on 503)."""
    server, stats = run(
        [Fixed(status, b"<html><body>Service</body></html>", "text/html")], errors, cleanup
    )

    assert delivered_once(server)
    assert (stats.sent, stats.retried, stats.failed) == (5, retried, 0)


def test_wrong_content_type_on_a_client_error_is_reported_with_its_text(
    errors: ErrorLog, cleanup: Cleanup
) -> None:
    """A 400 as HTML to everything is not retried: after three records sent alone also fail
    (so no one record is to blame), the batch is reported failed with an excerpt of the page."""
    server, stats = run(
        [], errors, cleanup, then=Fixed(400, b"<html>Bad gateway config</html>", "text/html")
    )

    assert server.accepted == collections.Counter()
    sizes = [len(json.loads(request.body)) for request in server.requests]
    assert sizes == [5, 1, 1, 1, 5]
    assert (stats.sent, stats.failed, stats.retried) == (0, 5, 0)
    [error] = errors.delivery_failures()
    assert isinstance(error, APIError)
    assert error.status == 400
    assert "Bad gateway config" in error.message
    assert sorted(record["data_id"] for record in error.records) == IDS


def test_a_server_that_never_answers_once(errors: ErrorLog, cleanup: Cleanup) -> None:
    """A request read and never answered is cut at timeout and sent again: delivered once."""
    silent = NeverAnswer()
    server, stats = run([silent], errors, cleanup)

    assert delivered_once(server)
    assert silent.held == 1
    assert (stats.sent, stats.retried, stats.failed) == (5, 1, 0)


def test_a_server_that_never_answers_at_all(errors: ErrorLog, cleanup: Cleanup) -> None:
    """Nothing ever answers: each try cut at timeout, given up at max_retry_time, reported."""
    silent = NeverAnswer()
    server = RawServer([], then=silent)
    cleanup.later(server.stop)
    server.__enter__()
    stats = send_batch(server, errors, cleanup, max_retry_time=2.5)

    assert (stats.sent, stats.failed, stats.pending) == (0, 5, 0)
    assert silent.held == len(server.requests) >= 2
    assert stats.retried == len(server.requests) - 1
    [error] = errors.delivery_failures()
    assert isinstance(error, TransportError)
    assert error.category == "timeout"
    assert error.message.startswith("timed out")
    assert f"gave up after {len(server.requests)} attempt(s)" in error.message
    assert error.message.endswith("(max_retry_time)")
    assert sorted(record["data_id"] for record in error.records) == IDS


@pytest.mark.parametrize("status", [200, 503])
def test_an_answer_trickled_a_byte_at_a_time(
    status: int, errors: ErrorLog, cleanup: Cleanup
) -> None:
    """A status line trickled a byte per 0.2 s is cut at timeout and the batch is sent again."""
    trickle = Trickle(status)
    server, stats = run([trickle], errors, cleanup)

    assert trickle.done.wait(10.0)
    assert trickle.cut_off
    assert trickle.bytes_sent < trickle.total
    assert (stats.sent, stats.retried, stats.failed) == (5, 1, 0)
    copies = 2 if status == 200 else 1  # the server took the first one; its answer never came
    assert server.accepted == collections.Counter(dict.fromkeys(IDS, copies))


def test_a_200_whose_body_trickles_counts_as_delivered(errors: ErrorLog, cleanup: Cleanup) -> None:
    """A 200 whose body trickles counts as sent; reading the rest is cut at timeout."""
    trickle = Trickle(200, headers_at_once=True)
    server = RawServer([trickle])
    cleanup.later(server.stop)
    server.__enter__()
    stats = send_batch(server, errors, cleanup)

    assert delivered_once(server)
    assert (stats.sent, stats.retried, len(server.requests)) == (5, 0, 1)
    assert trickle.done.wait(10.0)
    assert trickle.cut_off  # the client hung up: read to the end, the body would take 80 s
    assert trickle.bytes_sent < trickle.total
