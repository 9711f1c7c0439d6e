"""HTTP transport: Retry-After, error mapping, retries, headers and keep-alive, and the API key."""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote, quote_plus

import pytest
import requests
import tenacity
from hypothesis import example, given
from hypothesis import strategies as st
from support import Clock, Control, closed_port_base_url, free_port, self_signed_tls_server

import humanloop_logging
from humanloop_logging import (
    APIError,
    AuthenticationError,
    DeliveryError,
    FeedbackProcessor,
    FeedbackShipper,
    HumanloopLoggingError,
    TransportError,
    UnprocessableEntityError,
)
from humanloop_logging.exceptions import CATEGORIES
from humanloop_logging.testing import FakeHumanloop
from humanloop_logging.transport import (
    DEFAULT_WAIT,
    MAX_422_RESPONSE_BYTES,
    MAX_RESPONSE_BYTES,
    RETRY_AFTER_SPREAD,
    HTTPTransport,
    Wait,
    parse_retry_after,
)

pytestmark = pytest.mark.timeout(30)

SECRET = "hl-SECRET-7c1e9f04d2"

ITEM = {"data_id": "dp-1", "type": "rating", "value": "good"}
BODY = json.dumps([ITEM]).encode()


_opened: list[HTTPTransport] = []


@pytest.fixture(autouse=True)
def close_transports() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


@pytest.fixture
def secret_fake() -> Iterator[FakeHumanloop]:
    with FakeHumanloop(api_key=SECRET) as fake:
        yield fake


def make_transport(
    *,
    api_key: str,
    url: str,
    timeout: float = 5.0,
    max_retry_time: float = 10.0,
    wait: Optional[Wait] = None,
    clock: Optional[Clock] = None,
) -> HTTPTransport:
    transport = HTTPTransport(
        api_key=api_key,
        url=url,
        timeout=timeout,
        max_retry_time=max_retry_time,
        wait=wait,
        clock=clock or time.monotonic,
    )
    _opened.append(transport)
    return transport


def transport_for(
    fake: FakeHumanloop,
    *,
    timeout: float = 5.0,
    max_retry_time: float = 10.0,
    wait: Optional[Wait] = None,
    clock: Optional[Clock] = None,
) -> HTTPTransport:
    return make_transport(
        api_key=fake.api_key,
        url=fake.url,
        timeout=timeout,
        max_retry_time=max_retry_time,
        wait=wait,
        clock=clock,
    )


def closed_port_url() -> str:
    """A loopback feedback URL nothing listens on."""
    return f"{closed_port_base_url()}/feedback"


def send_and_catch(
    transport: HTTPTransport, control: Optional[Control] = None
) -> Optional[BaseException]:
    """Send one item; the exception raised, if any (whatever its type).

    A DeliveryError's category is always one of the documented ones.
    """
    caught: Optional[BaseException] = None
    try:
        transport.send(BODY, [ITEM], control or Control())
    except BaseException as exc:
        caught = exc
    if isinstance(caught, DeliveryError):
        assert caught.category in CATEGORIES, caught.category
    return caught


def assert_leaks_nothing(error: BaseException, secret: str) -> None:
    """No requests exception in the printed chain, no __cause__, and the key nowhere in the text."""
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    printed = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    assert "requests.exceptions" not in printed
    assert secret not in printed
    assert secret not in str(error)
    assert secret not in repr(error)
    assert all(secret not in repr(arg) for arg in error.args)


# -- parse_retry_after ---------------------------------------------------------------------------

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("  7 ", 7.0),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:29:30 GMT", 90.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(header: str, seconds: float) -> None:
    """Delta-seconds and HTTP-dates become seconds to wait from now, never negative."""
    assert parse_retry_after(header, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "header", [None, "", "   ", "soon", "Wed, 99 Foo 2015 07:28:00 GMT", "nan", "12 s", "0x10"]
)
def test_parse_retry_after_ignores_garbage(header: Optional[str]) -> None:
    """An absent or unreadable Retry-After gives None (fall back to the backoff)."""
    assert parse_retry_after(header, now=NOW) is None


@pytest.mark.parametrize("header", ["inf", "1e400", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_parse_retry_after_is_always_finite(header: str) -> None:
    """Absurdly large Retry-After values still give a finite wait."""
    seconds = parse_retry_after(header, now=NOW)
    assert seconds is not None
    assert math.isfinite(seconds)
    assert seconds > 0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("Wed, 21 Oct 2015 07:30:00 GMT", 120.0),
        ("Wednesday, 21-Oct-15 07:30:00 GMT", 120.0),
        ("Wed Oct 21 07:30:00 2015", 120.0),
        ("Wed Oct 21 07:28:00 2015", 0.0),
        ("Tue, 20 Oct 2015 07:30:00 GMT", 0.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("Mon, 01 Jan 0001 00:00:00 +0100", 0.0),
        ("Wed, 21 Oct 2015 08:30:00 +0100", 120.0),
    ],
    ids=[
        "IMF-fixdate",
        "obsolete RFC 850",
        "asctime",
        "asctime, now",
        "a day ago",
        "the epoch",
        "year 1, east of UTC",
        "an offset other than GMT",
    ],
)
def test_parse_retry_after_reads_each_http_date_format(header: str, seconds: float) -> None:
    """The three HTTP-date formats RFC 9110 names (IMF-fixdate, and the obsolete RFC 850 and
    asctime forms a recipient must still read) are measured from now; the past is 0."""
    assert parse_retry_after(header, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "header",
    [
        "Wed, 21 Oct 2015 25:61:00 GMT",
        "Wed, 31 Feb 2015 07:28:00 GMT",
        "Wed, 21 Oct 10000 07:28:00 GMT",
        "Wed, 21 Oct 99999999999999999999 07:28:00 GMT",
        "Wed, 99999999999999999999 Oct 2015 07:28:00 GMT",
        "Wed, 21 Oct 2015 07:28:99999999999999999999 GMT",
        "Wed, 21 Oct 2015 07:28:00 +99999999999999999999",
        "Wed, 21 Oct 2015",
        "1.5 GMT",
    ],
    ids=[
        "no such time",
        "no such day",
        "year 10000",
        "a year too large for C",
        "a day too large for C",
        "a second too large for C",
        "an offset too large for C",
        "no time",
        "a number and a zone",
    ],
)
def test_parse_retry_after_is_none_for_a_date_that_is_no_date(header: str) -> None:
    """A date-like header that names no moment is ignored like any garbage: whatever the server
    sends, reading it never raises."""
    assert parse_retry_after(header, now=NOW) is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("-1", 0.0), ("-0.5", 0.0), ("-inf", 0.0), ("-1e400", 0.0)],
)
def test_parse_retry_after_negative_delta_is_zero(header: str, seconds: float) -> None:
    """A negative delta asks for no wait at all: 0, never a negative wait."""
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize("header", ["86400", "86401", "99999999999", "9" * 400, "1e308"])
def test_parse_retry_after_huge_delta_is_at_most_a_day(header: str) -> None:
    """However large the delta, the wait is at most a day (and the backoff caps it further)."""
    assert parse_retry_after(header, now=NOW) == 24 * 3600.0


#: Pieces of HTTP-dates, real and broken, for headers that look like dates.
DATE_PARTS = [
    *("Wed,", "Wednesday,", "Wed", "Oct", "Feb", "21", "31", "0", "15", "2015", "10000"),
    *("07:28:00", "24:00:00", "07:28:60", "GMT", "UT", "EST", "+0100", "-0000", "-9999"),
    *("21-Oct-15", "99999999999999999999", "1e400", "-", ":", ","),
]


@given(st.text(max_size=40) | st.lists(st.sampled_from(DATE_PARTS), max_size=8).map(" ".join))
@example("Wed, 21 Oct 99999999999999999999 07:28:00 GMT")
def test_parse_retry_after_never_raises(header: str) -> None:
    """Whatever a server sends as Retry-After, reading it gives None or a wait of 0 to a day."""
    seconds = parse_retry_after(header, now=NOW)
    assert seconds is None or 0.0 <= seconds <= 24 * 3600.0


def test_a_retry_after_that_is_no_date_leaves_the_answer_retryable(
    fake_humanloop: FakeHumanloop,
) -> None:
    """A 503 whose Retry-After is a date no datetime can hold is still a 503 to retry: the
    record arrives on the next attempt, after the ordinary backoff."""
    fake_humanloop.fail_next(1, 503, retry_after="Wed, 21 Oct 99999999999999999999 07:28:00 GMT")
    control = Control()

    transport = transport_for(fake_humanloop, max_retry_time=60.0, wait=tenacity.wait_fixed(2.5))
    transport.send(BODY, [ITEM], control)

    assert control.waits == [2.5]
    assert [r.status for r in fake_humanloop.requests] == [503, 200]


def test_parse_retry_after_http_date_defaults_to_the_current_time() -> None:
    """Without now=, an HTTP-date is measured from the current time."""
    later = datetime.now(timezone.utc) + timedelta(seconds=30)
    seconds = parse_retry_after(format_datetime(later, usegmt=True))
    assert seconds is not None
    assert 28.0 <= seconds <= 31.0


# -- what the server sees ------------------------------------------------------------------------


def test_headers_seen_by_the_server(fake_humanloop: FakeHumanloop) -> None:
    """Requests carry X-API-KEY, a humanloop-logging/<version> User-Agent and JSON content type."""
    shipper = FeedbackShipper(
        api_key=fake_humanloop.api_key, base_url=fake_humanloop.base_url, flush_interval=60.0
    )
    try:
        FeedbackProcessor(shipper=shipper)(None, "info", {"event": "x", **ITEM})
        assert shipper.flush(5.0)
    finally:
        shipper.close()

    [request] = fake_humanloop.requests
    assert request.method == "POST"
    assert request.path == "/v4/feedback"
    assert request.headers["x-api-key"] == fake_humanloop.api_key
    assert request.headers["user-agent"].startswith(
        f"humanloop-logging/{humanloop_logging.__version__} "
    )
    assert request.headers["content-type"].startswith("application/json")


def test_one_keep_alive_connection_is_reused(fake_humanloop: FakeHumanloop) -> None:
    """Consecutive sends go over the same TCP connection."""
    transport = transport_for(fake_humanloop)
    for _ in range(3):
        transport.send(BODY, [ITEM], Control())

    assert [r.status for r in fake_humanloop.requests] == [200, 200, 200]
    assert len({r.connection for r in fake_humanloop.requests}) == 1


def test_body_is_sent_as_given(fake_humanloop: FakeHumanloop) -> None:
    """send() posts the JSON array it was given, byte for byte."""
    transport_for(fake_humanloop).send(BODY, [ITEM], Control())

    assert fake_humanloop.requests[0].body == BODY
    assert fake_humanloop.received == [ITEM]


# -- error mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_map_to_authentication_error(
    fake_humanloop: FakeHumanloop, status: int
) -> None:
    """401 and 403 become AuthenticationError, not retried, with the server's message."""
    fake_humanloop.fail_next(1, status, body={"detail": "Invalid API key"})
    control = Control()
    error = send_and_catch(transport_for(fake_humanloop), control)

    assert isinstance(error, AuthenticationError)
    assert error.status == status
    assert not error.retryable
    assert "Invalid API key" in str(error)
    assert control.waits == []
    assert len(fake_humanloop.requests) == 1


def test_422_maps_to_unprocessable_entity_with_details(fake_humanloop: FakeHumanloop) -> None:
    """A 422 becomes UnprocessableEntityError whose details are the service's entries."""
    fake_humanloop.reject_data_ids("dp-1")
    error = send_and_catch(transport_for(fake_humanloop))

    assert isinstance(error, UnprocessableEntityError)
    assert error.status == 422
    assert not error.retryable
    [detail] = error.details
    assert detail["loc"] == ["body", 0, "data_id"]
    assert "dp-1" in detail["msg"]


def test_client_error_carries_the_servers_message(fake_humanloop: FakeHumanloop) -> None:
    """A 400 becomes a non-retryable APIError with the detail the server sent."""
    fake_humanloop.fail_next(1, 400, body={"detail": "value too long"})
    error = send_and_catch(transport_for(fake_humanloop))

    assert type(error) is APIError
    assert error.status == 400
    assert not error.retryable
    assert "value too long" in str(error)


def test_non_json_error_body_is_quoted(fake_humanloop: FakeHumanloop) -> None:
    """An HTML or text error page is reported by an excerpt of its text."""
    fake_humanloop.fail_next(1, 400, body=b"<html>upstream exploded</html>")
    error = send_and_catch(transport_for(fake_humanloop))

    assert isinstance(error, APIError)
    assert "upstream exploded" in str(error)


def test_retryable_answer_carries_retry_after(fake_humanloop: FakeHumanloop) -> None:
    """A 503 that is given up on is a retryable APIError with the parsed Retry-After."""
    fake_humanloop.fail_next(1, 503, retry_after=7)
    error = send_and_catch(transport_for(fake_humanloop, max_retry_time=0.0))

    assert isinstance(error, APIError)
    assert error.status == 503
    assert error.retryable
    assert error.retry_after == 7.0


def test_connection_refused_maps_to_transport_error() -> None:
    """Nothing listening: a retryable TransportError, not a requests exception."""
    transport = make_transport(
        api_key=SECRET, url=closed_port_url(), timeout=2.0, max_retry_time=0.0
    )
    error = send_and_catch(transport)

    assert isinstance(error, TransportError)
    assert error.retryable
    assert not isinstance(error, requests.RequestException)
    assert_leaks_nothing(error, SECRET)


def test_reset_maps_to_transport_error(secret_fake: FakeHumanloop) -> None:
    """A reset connection: TransportError, with no requests exception in its chain."""
    secret_fake.reset_next(1)
    error = send_and_catch(transport_for(secret_fake, max_retry_time=0.0))

    assert isinstance(error, TransportError)
    assert_leaks_nothing(error, SECRET)


def test_timeout_maps_to_transport_error(secret_fake: FakeHumanloop) -> None:
    """No answer within timeout: TransportError, with no requests exception in its chain."""
    secret_fake.hang_next(1)
    error = send_and_catch(transport_for(secret_fake, timeout=0.3, max_retry_time=0.0))

    assert isinstance(error, TransportError)
    assert error.category == "timeout"
    assert error.message.startswith("timed out")
    assert "timeout=0.3s" in error.message
    assert_leaks_nothing(error, SECRET)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/v4/feedback",
        "http://a b/v4/feedback",
        "http://[::1/v4",
        "ftp://127.0.0.1/v4/feedback",
    ],
)
def test_invalid_urls_map_to_transport_error(url: str) -> None:
    """Even requests' URL errors come out as TransportError, never as requests exceptions."""
    transport = make_transport(api_key=SECRET, url=url, timeout=1.0, max_retry_time=0.0)
    error = send_and_catch(transport)

    assert isinstance(error, TransportError)
    assert_leaks_nothing(error, SECRET)


# -- messages that name the place and the fix ---------------------------------------------------


class _Redirecting(BaseHTTPRequestHandler):
    """Answers every POST with a redirect to ``server.location``."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Location", self.server.location)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_the_key_goes_nowhere_else(
    secret_fake: FakeHumanloop, status: int
) -> None:
    """A redirect to another address is reported with where it points; the key is not sent there.

    requests only strips ``Authorization`` on a redirect to another host, not ``X-API-KEY``.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    server.status = status  # type: ignore[attr-defined]
    server.location = secret_fake.url.replace("127.0.0.1", "localhost")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v4/feedback"
        error = send_and_catch(make_transport(api_key=SECRET, url=url, max_retry_time=0.0))
    finally:
        server.shutdown()
        server.server_close()

    assert isinstance(error, APIError)
    assert error.status == status
    assert not error.retryable
    assert error.message == (
        f"POST {url} was redirected (HTTP {status}) to {server.location}: "  # type: ignore[attr-defined]
        "redirects are not followed, so that the API key goes nowhere else; set base_url to the "
        "address the service names"
    )
    assert secret_fake.requests == []  # nothing went on, not even a GET
    assert_leaks_nothing(error, SECRET)


@pytest.mark.parametrize("status", [401, 403])
def test_a_wrong_key_says_which_setting_to_check(secret_fake: FakeHumanloop, status: int) -> None:
    """A refused key names the endpoint and api_key / HUMANLOOP_API_KEY, and neither key."""
    wrong = "hl-WRONG-0a9b8c7d"
    if status == 403:
        secret_fake.fail_next(1, 403, body={"detail": "Forbidden"})
    error = send_and_catch(make_transport(api_key=wrong, url=secret_fake.url))

    assert isinstance(error, AuthenticationError)
    assert error.category == "auth"
    assert error.message.startswith(
        f"Humanloop refused the API key (HTTP {status} from POST {secret_fake.url}: "
    )
    assert error.message.endswith("): check api_key / HUMANLOOP_API_KEY")
    assert_leaks_nothing(error, SECRET)
    assert_leaks_nothing(error, wrong)


def test_a_base_url_without_v4_says_so(fake_humanloop: FakeHumanloop) -> None:
    """A 404 names the URL posted to, the base_url, and that it should end in /v4."""
    base_url = f"http://127.0.0.1:{fake_humanloop.port}"
    error = send_and_catch(
        make_transport(api_key=fake_humanloop.api_key, url=f"{base_url}/feedback")
    )

    assert isinstance(error, APIError)
    assert error.category == "not_found"
    assert error.status == 404
    assert error.message == (
        f"POST {base_url}/feedback was not found (HTTP 404: Not Found): base_url should end in "
        f"/v4, e.g. https://api.humanloop.com/v4 (base_url is {base_url})"
    )
    assert [request.path for request in fake_humanloop.requests] == ["/feedback"]


def test_an_unresolvable_host_names_the_host() -> None:
    """A host name that does not resolve: category dns, the host, and where to fix it."""
    transport = make_transport(
        api_key=SECRET, url="https://nonexistent.invalid/v4/feedback", max_retry_time=0.0
    )
    error = send_and_catch(transport)

    assert isinstance(error, TransportError)
    assert error.category == "dns"
    assert error.retryable
    assert error.message.startswith(
        "cannot reach Humanloop: the host name nonexistent.invalid could not be resolved (DNS) "
        "for POST https://nonexistent.invalid/v4/feedback: check the host in base_url"
    )
    assert_leaks_nothing(error, SECRET)


def test_a_closed_port_names_host_and_port() -> None:
    """Nothing listening: category refused, with host and port and what to check."""
    port = free_port()
    transport = make_transport(
        api_key=SECRET, url=f"http://127.0.0.1:{port}/v4/feedback", max_retry_time=0.0
    )
    error = send_and_catch(transport)

    assert isinstance(error, TransportError)
    assert error.category == "refused"
    assert error.message.startswith(
        f"cannot reach Humanloop at 127.0.0.1:{port} (connection refused) for POST "
        f"http://127.0.0.1:{port}/v4/feedback: is the service running, and are host and port in "
        "base_url right?"
    )


@pytest.fixture
def self_signed_server(tmp_path: Path) -> Iterator[int]:
    with self_signed_tls_server(tmp_path) as port:
        yield port


def test_an_untrusted_certificate_says_why(self_signed_server: int) -> None:
    """A self-signed certificate: category tls, OpenSSL's reason, host and port."""
    port = self_signed_server
    transport = make_transport(
        api_key=SECRET, url=f"https://127.0.0.1:{port}/v4/feedback", max_retry_time=0.0
    )
    error = send_and_catch(transport)

    assert isinstance(error, TransportError)
    assert error.category == "tls"
    assert error.message.startswith(f"TLS with 127.0.0.1:{port} failed (certificate verify failed")
    assert "self-signed" in error.message or "self signed" in error.message
    assert "REQUESTS_CA_BUNDLE" in error.message
    assert_leaks_nothing(error, SECRET)


@pytest.mark.parametrize(
    ("status", "category"),
    [(500, "server"), (503, "server"), (429, "rate_limited"), (400, "client"), (413, "too_large")],
)
def test_statuses_have_categories(
    fake_humanloop: FakeHumanloop, status: int, category: str
) -> None:
    """Every error answer carries a category, and the URL it came from."""
    fake_humanloop.fail_next(1, status)
    error = send_and_catch(transport_for(fake_humanloop, max_retry_time=0.0))

    assert isinstance(error, APIError)
    assert error.category == category
    assert error.url == fake_humanloop.url
    assert error.message.startswith(f"HTTP {status} from POST {fake_humanloop.url}: ")


def test_a_large_422_is_read_whole(fake_humanloop: FakeHumanloop) -> None:
    """A 422 larger than other answers may be (pydantic echoes the input) still names its items."""
    echoed = "x" * (3 * MAX_RESPONSE_BYTES)
    detail = [{"loc": ["body", 0, "value"], "msg": "bad value", "type": "t", "input": echoed}]
    fake_humanloop.fail_next(1, 422, body={"detail": detail})

    error = send_and_catch(transport_for(fake_humanloop))

    assert isinstance(error, UnprocessableEntityError)
    assert error.details == detail
    assert 3 * MAX_RESPONSE_BYTES < MAX_422_RESPONSE_BYTES


def test_a_422_beyond_its_limit_is_not_read_to_the_end(fake_humanloop: FakeHumanloop) -> None:
    """A 422 past MAX_422_RESPONSE_BYTES is cut: its details are unreadable, so none are given."""
    detail = [{"loc": ["body", 0], "msg": "m", "input": "x" * (MAX_422_RESPONSE_BYTES + 1)}]
    fake_humanloop.fail_next(1, 422, body={"detail": detail})

    error = send_and_catch(transport_for(fake_humanloop))

    assert isinstance(error, UnprocessableEntityError)
    assert error.details == []


# -- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(fake_humanloop: FakeHumanloop, status: int) -> None:
    """408, 429 and 500/502/503/504 are retried, and the send then succeeds."""
    fake_humanloop.fail_next(2, status)
    control = Control()

    transport_for(fake_humanloop).send(BODY, [ITEM], control)

    assert [r.status for r in fake_humanloop.requests] == [status, status, 200]
    assert len(control.waits) == 2
    assert [type(error) for error in control.retries] == [APIError, APIError]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_other_statuses_are_not_retried(fake_humanloop: FakeHumanloop, status: int) -> None:
    """Any other error status is raised after one request, with no wait."""
    fake_humanloop.fail_next(1, status)
    control = Control()

    error = send_and_catch(transport_for(fake_humanloop), control)

    assert isinstance(error, APIError)
    assert error.status == status
    assert control.waits == []
    assert len(fake_humanloop.requests) == 1


def test_backoff_grows_exponentially_with_jitter(fake_humanloop: FakeHumanloop) -> None:
    """By default the waits are 0.25 s doubling (to 10 s), each plus 0 to 0.5 s of jitter."""
    fake_humanloop.fail_next(7, 503)
    control = Control()

    transport_for(fake_humanloop, max_retry_time=600.0).send(BODY, [ITEM], control)

    floors = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert len(control.waits) == len(floors)
    for wait, floor in zip(control.waits, floors):
        assert floor <= wait <= floor + 0.5


def test_the_backoff_can_be_injected(fake_humanloop: FakeHumanloop) -> None:
    """wait= replaces the backoff: a tenacity wait strategy, given each retry's state."""
    fake_humanloop.fail_next(3, 503)
    control = Control()

    wait = tenacity.wait_incrementing(start=1.0, increment=2.0)
    transport_for(fake_humanloop, max_retry_time=60.0, wait=wait).send(BODY, [ITEM], control)

    assert control.waits == [1.0, 3.0, 5.0]
    assert DEFAULT_WAIT is not wait


def test_retry_after_seconds_is_the_wait(fake_humanloop: FakeHumanloop) -> None:
    """Retry-After longer than the backoff is waited, stretched by up to a fifth at random."""
    fake_humanloop.fail_next(1, 429, retry_after=7)
    control = Control()

    transport_for(fake_humanloop, max_retry_time=60.0).send(BODY, [ITEM], control)

    [wait] = control.waits
    assert 7.0 <= wait <= 7.0 * (1 + RETRY_AFTER_SPREAD)


def test_clients_turned_away_together_do_not_come_back_together(
    fake_humanloop: FakeHumanloop,
) -> None:
    """Many sends told "Retry-After: 10" at once wait different times, spread over 10-12 s."""
    waits: list[float] = []
    for _ in range(40):
        fake_humanloop.fail_next(1, 429, retry_after=10)
        control = Control()
        transport_for(fake_humanloop, max_retry_time=60.0).send(BODY, [ITEM], control)
        waits += control.waits

    assert all(10.0 <= wait <= 12.0 for wait in waits)
    # Uniform over 2 s: 40 draws all within 1 s of each other has a chance of about 1e-10.
    spread = sorted(waits)
    assert spread[-1] - spread[0] > 1.0
    assert len({round(wait, 3) for wait in waits}) > 30


def test_retry_after_shorter_than_the_backoff_waits_the_backoff(
    fake_humanloop: FakeHumanloop,
) -> None:
    """Retry-After is a lower bound: a shorter one than the backoff waits the backoff."""
    fake_humanloop.fail_next(1, 503, retry_after=1)
    fake_humanloop.fail_next(1, 503, retry_after=0)
    control = Control()

    transport = transport_for(fake_humanloop, max_retry_time=60.0, wait=tenacity.wait_fixed(2.5))
    transport.send(BODY, [ITEM], control)

    assert control.waits == [2.5, 2.5]


def test_retry_after_http_date_is_the_wait(fake_humanloop: FakeHumanloop) -> None:
    """Retry-After as an HTTP-date is waited until that moment (stretched by up to a fifth)."""
    when = datetime.now(timezone.utc) + timedelta(seconds=20)
    fake_humanloop.fail_next(1, 503, retry_after=format_datetime(when, usegmt=True))
    control = Control()

    transport_for(fake_humanloop, max_retry_time=60.0).send(BODY, [ITEM], control)

    [wait] = control.waits
    assert 18.0 <= wait <= 21.0 * (1 + RETRY_AFTER_SPREAD)


@pytest.mark.parametrize(
    "retry_after", ["0", "Wed, 21 Oct 2015 07:28:00 GMT"], ids=["zero", "a date in the past"]
)
def test_retry_after_zero_forever_is_no_hot_loop(
    fake_humanloop: FakeHumanloop, retry_after: str
) -> None:
    """503 with Retry-After: 0 (or a past date) forever: the backoff still spaces the requests."""
    fake_humanloop.fail_next(1000, 503, retry_after=retry_after)
    clock = Clock(5000.0)
    control = Control(clock=clock)
    transport = transport_for(
        fake_humanloop,
        max_retry_time=60.0,
        wait=tenacity.wait_exponential(multiplier=0.25, max=10.0),
        clock=clock,
    )

    error = send_and_catch(transport, control)

    assert isinstance(error, APIError)
    assert error.status == 503
    # 0.25 doubling to 10: 15.75 s after six waits, four more of 10 s; a fifth would end past 60.
    assert control.waits == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0]
    assert len(fake_humanloop.requests) == 11
    assert "gave up after 11 attempt(s) in 55.8s (max_retry_time)" in error.message


def test_connection_errors_are_retried(fake_humanloop: FakeHumanloop) -> None:
    """Reset connections are retried until the send succeeds."""
    fake_humanloop.reset_next(2)
    control = Control()

    transport_for(fake_humanloop).send(BODY, [ITEM], control)

    assert [r.status for r in fake_humanloop.requests] == [0, 0, 200]
    assert [type(error) for error in control.retries] == [TransportError, TransportError]
    assert fake_humanloop.received == [ITEM]


def test_timeouts_are_retried(fake_humanloop: FakeHumanloop) -> None:
    """A request that times out is retried and the retry succeeds."""
    fake_humanloop.hang_next(1)
    control = Control()

    transport_for(fake_humanloop, timeout=0.3).send(BODY, [ITEM], control)

    assert [r.status for r in fake_humanloop.requests] == [0, 200]
    assert len(control.waits) == 1


def test_max_retry_time_bounds_the_retries(fake_humanloop: FakeHumanloop) -> None:
    """A server that keeps failing is given up on once the next wait would pass max_retry_time."""
    fake_humanloop.fail_next(1000, 503)
    clock = Clock(5000.0)
    control = Control(clock=clock)
    transport = transport_for(
        fake_humanloop, max_retry_time=10.0, wait=tenacity.wait_fixed(3.0), clock=clock
    )

    error = send_and_catch(transport, control)

    assert isinstance(error, APIError)
    assert error.status == 503
    assert control.waits == [3.0, 3.0, 3.0]  # a fourth would end at 12 s, past the limit
    assert len(fake_humanloop.requests) == len(control.waits) + 1
    assert "(max_retry_time)" in error.message


def during_a_close(
    fake: FakeHumanloop, *, seconds_left: float, backoff: float
) -> tuple[HTTPTransport, Control]:
    """A transport retrying at a fixed ``backoff`` for a shipper whose close ends in
    ``seconds_left`` (of a clock only its waits move), well inside ``max_retry_time``."""
    clock = Clock(5000.0)
    control = Control(clock=clock, deadline=clock.now + seconds_left)
    transport = transport_for(
        fake, max_retry_time=60.0, wait=tenacity.wait_fixed(backoff), clock=clock
    )
    return transport, control


def test_owner_deadline_bounds_the_retries(fake_humanloop: FakeHumanloop) -> None:
    """The owner's deadline (close, exit) ends the retries before max_retry_time would. The
    wait that would pass it is cut to half the time left, once, for a last attempt."""
    fake_humanloop.fail_next(1000, 503)
    transport, control = during_a_close(fake_humanloop, seconds_left=7.0, backoff=3.0)

    error = send_and_catch(transport, control)

    assert isinstance(error, APIError)
    assert control.waits == [3.0, 3.0, 0.5]  # 6 s gone, 1 s left: half of it, then one try
    assert len(fake_humanloop.requests) == 4
    assert "(the close deadline)" in error.message


def test_a_close_deadline_leaves_time_for_a_last_attempt_that_succeeds(
    fake_humanloop: FakeHumanloop,
) -> None:
    """A batch failing while a close drains is not given up on while the deadline leaves time
    for one more attempt: the backoff that would pass the deadline is cut short instead."""
    fake_humanloop.fail_next(3, 503)
    transport, control = during_a_close(fake_humanloop, seconds_left=7.0, backoff=3.0)

    transport.send(BODY, [ITEM], control)

    assert control.waits == [3.0, 3.0, 0.5]
    assert [r.status for r in fake_humanloop.requests] == [503, 503, 503, 200]


def test_a_retry_after_past_the_close_deadline_is_not_cut_short(
    fake_humanloop: FakeHumanloop,
) -> None:
    """The last attempt a close allows never comes sooner than the service asked."""
    fake_humanloop.fail_next(1000, 503, retry_after=5)
    transport, control = during_a_close(fake_humanloop, seconds_left=3.0, backoff=0.5)

    error = send_and_catch(transport, control)

    assert isinstance(error, APIError)
    assert control.waits == []
    assert len(fake_humanloop.requests) == 1


def test_owner_deadline_bounds_a_slow_request(fake_humanloop: FakeHumanloop) -> None:
    """The owner's deadline (close, exit) cuts a request short even when timeout is long."""
    fake_humanloop.hang_next(1)
    control = Control(deadline=time.monotonic() + 0.4)

    error = send_and_catch(transport_for(fake_humanloop, timeout=60.0), control)

    assert isinstance(error, TransportError)
    assert error.category == "closing"
    assert "close deadline" in error.message
    assert len(fake_humanloop.requests) == 1


# -- the API key stays secret --------------------------------------------------------------------


def test_transport_repr_hides_the_key(secret_fake: FakeHumanloop) -> None:
    """repr() of a transport names its URL but never the key."""
    transport = transport_for(secret_fake)
    assert SECRET not in repr(transport)
    assert secret_fake.url in repr(transport)


def test_key_never_appears_in_errors_or_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through refused keys, failures and retries, no log line or reported error holds the key."""
    caplog.set_level(logging.DEBUG)
    errors: list[HumanloopLoggingError] = []
    with FakeHumanloop(api_key="hl-the-right-key") as fake:
        # Retried at once, so the reset and the 503 are retried and the 400 ends the first send.
        transport = make_transport(
            api_key=SECRET, url=fake.url, max_retry_time=5.0, wait=tenacity.wait_none()
        )
        shipper = FeedbackShipper(
            api_key=SECRET, flush_interval=60.0, on_error=errors.append, transport=transport
        )
        try:
            processor = FeedbackProcessor(shipper=shipper)
            fake.reset_next(1)
            fake.fail_next(1, 503, retry_after=0)
            fake.fail_next(1, 400)
            for index in range(3):
                processor(None, "info", {"event": "x", **ITEM, "data_id": f"dp-{index}"})
                assert shipper.flush(5.0)
            processor(None, "info", {"event": "x", "data_id": "dp-bad", "type": None})
            assert shipper.flush(5.0)
        finally:
            shipper.close()

    kinds = {type(error) for error in errors}
    assert {AuthenticationError, APIError}.issubset(kinds), kinds
    for error in errors:
        assert_leaks_nothing(error, SECRET)
    assert caplog.records
    assert SECRET not in caplog.text
    assert all(SECRET not in repr(record.__dict__) for record in caplog.records)


#: Keys with characters that JSON escapes (quote, backslash, non-ASCII) or a URL percent-encodes.
ODD_KEYS = [
    pytest.param('sk-"quoted\\back/slash', id="quote-backslash"),
    pytest.param("hl-clé-Straße-ÿ", id="non-ascii"),
]


def _upper_hex(body: bytes) -> bytes:
    return re.sub(rb"\\u([0-9a-f]{4})", lambda m: b"\\u" + m.group(1).upper(), body)


def _lower_percent(key: str) -> str:
    return re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(key, safe=""))


def _json_echo(key: str, **dumps: Any) -> bytes:
    return json.dumps({"detail": f"invalid key {key}"}, **dumps).encode()


#: Error bodies that hold the key, each spelt as a server or a proxy echoing the request may.
ECHOES: dict[str, Callable[[str], bytes]] = {
    "json": _json_echo,
    "json-utf8": lambda key: _json_echo(key, ensure_ascii=False),
    "json-escaped-slash": lambda key: _json_echo(key).replace(b"/", b"\\/"),
    "json-uppercase-hex": lambda key: _upper_hex(_json_echo(key)),
    "percent": lambda key: f"<p>no such key: {quote(key, safe='')}</p>".encode(),
    "percent-lowercase": lambda key: f"no such key: {_lower_percent(key)}".encode(),
    "form": lambda key: f"refused: key={quote_plus(key)}".encode(),
    "utf-8": lambda key: f"X-API-KEY: {key}".encode(),
    "latin-1": lambda key: f"X-API-KEY: {key}".encode("latin-1"),
}


def spellings(key: str) -> set[str]:
    """The key as each echo spells it, as text an error could hold."""
    spelt = {key, quote(key, safe=""), quote(key), quote_plus(key), _lower_percent(key)}
    for ascii_only in (True, False):
        escaped = json.dumps(key, ensure_ascii=ascii_only)[1:-1]
        spelt |= {escaped, escaped.replace("/", "\\/"), _upper_hex(escaped.encode()).decode()}
    return spelt


def assert_no_spelling_of(key: str, error: BaseException) -> None:
    for spelling in spellings(key):
        assert_leaks_nothing(error, spelling)
        assert spelling not in repr(vars(error)), spelling


@pytest.mark.parametrize("echo", sorted(ECHOES))
@pytest.mark.parametrize("key", ODD_KEYS)
@pytest.mark.parametrize("status", [401, 400, 503])
def test_a_key_echoed_in_an_error_body_is_redacted_in_every_spelling(
    fake_humanloop: FakeHumanloop, status: int, key: str, echo: str
) -> None:
    """A key the server puts back in an error body, JSON-escaped or percent-encoded, is in no
    error; the rest of the server's words are."""
    fake_humanloop.fail_next(1, status, body=ECHOES[echo](key))
    transport = make_transport(api_key=key, url=fake_humanloop.url, max_retry_time=0.0)
    error = send_and_catch(transport)

    assert isinstance(error, APIError)
    assert error.status == status
    assert "[redacted]" in str(error)
    assert_no_spelling_of(key, error)


@pytest.mark.parametrize("key", ODD_KEYS)
def test_a_key_echoed_in_a_422_is_in_neither_message_nor_details(
    fake_humanloop: FakeHumanloop, key: str
) -> None:
    """pydantic v2 echoes what it refused in ``input``: a key there stays out of the details."""
    entry = {"loc": ["header", "x-api-key"], "msg": f"bad key {key}", "input": key}
    fake_humanloop.fail_next(1, 422, body={"detail": [entry]})
    transport = make_transport(api_key=key, url=fake_humanloop.url, max_retry_time=0.0)
    error = send_and_catch(transport)

    assert isinstance(error, UnprocessableEntityError)
    assert error.details == [
        {"loc": ["header", "x-api-key"], "msg": "bad key [redacted]", "input": "[redacted]"}
    ]
    assert_no_spelling_of(key, error)


@pytest.mark.parametrize("key", ODD_KEYS)
def test_a_key_in_a_redirects_location_is_redacted(key: str) -> None:
    """A redirect whose address holds the key, percent-encoded, does not show it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    server.status = 307  # type: ignore[attr-defined]
    server.location = f"http://localhost/v4/{quote(key, safe='')}/feedback"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v4/feedback"
        error = send_and_catch(make_transport(api_key=key, url=url, max_retry_time=0.0))
    finally:
        server.shutdown()
        server.server_close()

    assert isinstance(error, APIError)
    assert "http://localhost/v4/[redacted]/feedback" in error.message
    assert_no_spelling_of(key, error)


def test_the_retry_schedule_as_plain_arithmetic() -> None:
    """next_wait, with no clock or network: the backoff, a Retry-After as a lower bound (spread
    so that turned-away clients do not return together), and a close's one last attempt."""
    from humanloop_logging.transport import next_wait

    def wait(
        backoff: float,
        retry_after: Optional[float] = None,
        *,
        closing: bool = False,
        left: float = 100.0,
        last_try: bool = False,
    ) -> tuple[float, bool]:
        return next_wait(
            backoff,
            retry_after=retry_after,
            spread=1.1,
            closing=closing,
            left=left,
            last_try=last_try,
        )

    assert wait(0.5) == (0.5, False)
    assert wait(0.5, 2.0) == (2.0 * 1.1, False)
    assert wait(3.0, 0.0) == (3.0, False)  # never a hot loop
    assert wait(3.0, closing=True, left=4.0) == (3.0, False)  # it ends before the deadline
    assert wait(5.0, closing=True, left=4.0) == (2.0, True)  # half the time left ...
    assert wait(5.0, closing=True, left=4.0, last_try=True) == (5.0, True)  # ... once
    assert wait(5.0, 9.0, closing=True, left=4.0) == (9.0 * 1.1, False)  # obeyed, not cut
    assert wait(5.0, closing=True, left=0.0) == (5.0, False)  # no time left: stop decides
