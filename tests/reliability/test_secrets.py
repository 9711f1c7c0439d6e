"""The API key stays secret: it is in no log line, exception, repr or statistic, whatever happens.

Besides the checks here, every test of this suite runs inside a fixture (conftest.py) that
captures all logging at DEBUG and every ``on_error`` error, and fails if the key shows up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from reliability_support import (
    SECRET_KEY,
    Cleanup,
    Echo,
    ErrorLog,
    RawServer,
    assert_no_secret,
    exception_renderings,
)
from support import HandlerRig, closed_port_base_url

from humanloop_logging import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    FeedbackHandler,
    FeedbackProcessor,
    FeedbackShipper,
    FeedbackValidationError,
    HTTPTransport,
    HumanloopLoggingError,
    QueueFullError,
    TransportError,
    UnprocessableEntityError,
)
from humanloop_logging.testing import FakeHumanloop

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture
def rig_factory(errors: ErrorLog, cleanup: Cleanup) -> Callable[..., HandlerRig]:
    def make(base_url: str, **settings: Any) -> HandlerRig:
        settings.setdefault("flush_interval", 0.05)
        rig = HandlerRig(SECRET_KEY, base_url, errors=errors, **settings)
        cleanup.later(rig.close)
        return rig

    return make


def everything_said(
    caplog: pytest.LogCaptureFixture, errors: ErrorLog, rig: HandlerRig
) -> list[str]:
    """Every text a user of the library could see: logs, errors, reprs, counters."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = [formatter.format(record) for record in caplog.records]
    for error in errors.errors:
        texts += exception_renderings(error)
    shipper = rig.handler.shipper
    # The transport a shipper with these settings sends through (its repr is its URL and
    # timeout, whatever it went through).
    transport = HTTPTransport(
        api_key=SECRET_KEY,
        url=shipper.settings.feedback_url,
        timeout=shipper.settings.timeout,
        max_retry_time=shipper.settings.max_retry_time,
    )
    transport.close()
    texts += [
        repr(rig.handler),
        str(rig.handler),
        repr(shipper),
        repr(shipper.settings),
        str(shipper.settings),
        repr(transport),
        str(transport),
        repr(shipper.stats()),
        repr(FeedbackProcessor(shipper=shipper)),
    ]
    return texts


SCENARIOS = [
    "delivered",
    "503 then delivered",
    "422 for one record",
    "401 wrong key",
    "connection refused",
    "no answer within timeout",
    "record refused before sending",
    "queue full",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_key_is_in_nothing_the_library_says(
    scenario: str,
    fake: FakeHumanloop,
    errors: ErrorLog,
    rig_factory: Callable[..., HandlerRig],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Success and each failure at DEBUG: the key is in no log line, error chain, repr or stat."""
    caplog.set_level(logging.DEBUG)
    expected: type[HumanloopLoggingError] | None = None
    base_url = fake.base_url
    settings: dict[str, Any] = {"max_retry_time": 2.0, "timeout": 1.0}
    if scenario == "503 then delivered":
        fake.fail_next(1, 503, retry_after=0)
    elif scenario == "422 for one record":
        fake.reject_data_ids("s-1")
        expected = UnprocessableEntityError
    elif scenario == "401 wrong key":
        other = FakeHumanloop(api_key="another-key").start()
        base_url = other.base_url
        expected = AuthenticationError
    elif scenario == "connection refused":
        base_url = closed_port_base_url()
        expected = TransportError
    elif scenario == "no answer within timeout":
        fake.hang_next(10)
        settings = {"max_retry_time": 0.1, "timeout": 0.5}
        expected = TransportError
    elif scenario == "record refused before sending":
        expected = FeedbackValidationError
    elif scenario == "queue full":
        settings["max_queue_size"] = 2
        settings["flush_interval"] = 60
        expected = QueueFullError
    try:
        rig = rig_factory(base_url, **settings)
        for n in range(4):
            if scenario == "record refused before sending" and n == 2:
                rig.feedback(f"s-{n}", value=float("nan"))
            else:
                rig.feedback(f"s-{n}")
        assert rig.handler.flush(15.0)
        if scenario == "queue full":
            assert errors.wait_for(QueueFullError, 1, timeout=10.0)
        texts = everything_said(caplog, errors, rig)
    finally:
        if scenario == "401 wrong key":
            other.stop()

    assert_no_secret(texts, scenario)
    if expected is None:
        assert errors.errors == []
    else:
        assert {type(error) for error in errors.errors} == {expected}


@pytest.mark.checks_secrets_itself
@pytest.mark.parametrize("status", [400, 503])
def test_a_server_echoing_the_request_headers_does_not_leak_the_key(
    status: int, errors: ErrorLog, cleanup: Cleanup, caplog: pytest.LogCaptureFixture
) -> None:
    """A server echoing the request headers in its error page must not put the key in our errors."""
    caplog.set_level(logging.DEBUG)
    server = RawServer([], then=Echo(status))
    cleanup.later(server.stop)
    server.__enter__()
    handler = FeedbackHandler(
        api_key=SECRET_KEY,
        base_url=server.base_url,
        on_error=errors,
        flush_interval=0.05,
        max_retry_time=0.5,
    )
    logger = cleanup.attach("reliability.secrets.echo", handler)
    logger.info("feedback", extra={"data_id": "e-1", "type": "rating", "value": "good"})
    assert handler.flush(15.0)
    assert SECRET_KEY.encode() in server.requests[0].head  # the echo really carried it

    [error] = errors.delivery_failures()
    assert isinstance(error, APIError)
    assert error.status == status
    texts = [logging.Formatter("%(message)s").format(r) for r in caplog.records]
    texts += exception_renderings(error)
    assert_no_secret(texts, "an error built from an echoing server's answer")


def test_reprs_never_show_the_key(cleanup: Cleanup) -> None:
    """repr and str of every public object that holds the key."""
    transport = HTTPTransport(
        api_key=SECRET_KEY,
        url=f"{closed_port_base_url()}/feedback",
        timeout=5.0,
        max_retry_time=10.0,
    )
    shipper = FeedbackShipper(
        api_key=SECRET_KEY, base_url=closed_port_base_url(), transport=transport
    )
    cleanup.close(shipper)
    handler = FeedbackHandler(api_key=SECRET_KEY, base_url=closed_port_base_url())
    cleanup.close(handler)
    processor = FeedbackProcessor(api_key=SECRET_KEY, base_url=closed_port_base_url())
    cleanup.close(processor)
    texts = []
    for thing in (
        shipper,
        handler,
        processor,
        shipper.settings,
        handler.shipper.settings,
        transport,
        shipper.stats(),
    ):
        texts += [repr(thing), str(thing), format(thing)]
    assert_no_secret(texts, "a repr")


REFUSED_URLS = [
    "http://api.humanloop.com/v4",
    "http://10.0.0.7:8080/v4",
    "http://192.168.1.20/v4",
    "http://127.0.0.1.example.com/v4",
    "http://localhost.example.com/v4",
    "http://[2001:db8::1]/v4",
]
LOOPBACK_URLS = [
    "http://127.0.0.1:9/v4",
    "http://127.8.9.10:9/v4",
    "http://localhost:9/v4",
    "http://[::1]:9/v4",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_plain_http_to_a_remote_host_is_refused(url: str) -> None:
    """http:// to anything but loopback is a ConfigurationError that does not quote the key."""
    with pytest.raises(ConfigurationError) as raised:
        FeedbackHandler(api_key=SECRET_KEY, base_url=url)
    assert "allow_insecure_http" in str(raised.value)
    assert_no_secret(exception_renderings(raised.value), "a ConfigurationError")


@pytest.mark.parametrize("how", ["argument", "environment"])
@pytest.mark.parametrize("url", REFUSED_URLS[:2])
def test_plain_http_to_a_remote_host_when_explicitly_allowed(
    url: str, how: str, cleanup: Cleanup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """allow_insecure_http=True (or HUMANLOOP_ALLOW_INSECURE_HTTP=1) is the only way past it."""
    if how == "argument":
        handler = FeedbackHandler(api_key=SECRET_KEY, base_url=url, allow_insecure_http=True)
    else:
        monkeypatch.setenv("HUMANLOOP_ALLOW_INSECURE_HTTP", "1")
        handler = FeedbackHandler(api_key=SECRET_KEY, base_url=url)
    cleanup.close(handler)
    assert handler.shipper.settings.base_url == url


@pytest.mark.parametrize("url", LOOPBACK_URLS)
def test_plain_http_to_loopback_is_allowed(url: str, cleanup: Cleanup) -> None:
    """Loopback addresses and localhost need no opt-in (the local stand-in lives there)."""
    handler = FeedbackHandler(api_key=SECRET_KEY, base_url=url)
    cleanup.close(handler)
    assert handler.shipper.settings.base_url == url
