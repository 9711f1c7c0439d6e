"""HTTP transport: one ``requests`` connection pool, and tenacity retries within a deadline.

``requests`` exceptions never leave this module: every request runs inside
``_http_errors.mapped_errors``, so each failure becomes a DeliveryError subclass that says whether
it is worth retrying, and an answer is read with the key redacted (``_redaction``) before any of
it is shown. The transport knows nothing of queues or logging records; it sends one JSON array and
either returns or raises.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Optional, Protocol
from urllib.parse import urlsplit

import requests
import requests.utils
import tenacity

from ._guard import Guard, GuardedAdapter, start_watchdog, time_limit
from ._http_errors import Target, mapped_errors, where
from ._redaction import key_pattern
from ._version import __version__
from .exceptions import (
    APIError,
    AuthenticationError,
    DeliveryError,
    TransportError,
    UnprocessableEntityError,
    add_clause,
)

__all__ = [
    "DEFAULT_WAIT",
    "RETRYABLE_STATUSES",
    "RETRY_AFTER_SPREAD",
    "HTTPTransport",
    "SendControl",
    "next_wait",
    "parse_retry_after",
]

#: Answers worth sending again: timeouts, rate limits and the server's transient failures.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

#: A wait a ``Retry-After`` asks for is stretched by up to this share, at random.
RETRY_AFTER_SPREAD = 0.2

_random = random.Random()

#: An answer larger than this is not read to the end (only its first words are ever shown).
MAX_RESPONSE_BYTES = 1 << 20

#: A 422 may be read further: pydantic v2 echoes each refused item in ``input``, so a large batch
#: gives a large answer, and only a whole answer names the items to drop.
MAX_422_RESPONSE_BYTES = 8 << 20


class SendControl(Protocol):
    """What a transport's ``send`` is handed by the shipper: how long it may try, and how to wait.

    Public because ``Transport.send`` takes one: a transport of the application's calls it, never
    makes one.
    """

    def deadline(self) -> float:
        """Monotonic time after which nothing more may be tried."""

    def sleep(self, seconds: float) -> None:
        """Wait between attempts; the owner may cut it short to re-check the deadline."""

    def retrying(self, error: DeliveryError, wait: float) -> None:
        """Told before each wait, so retries can be counted."""

    def give_up_early(self, error: DeliveryError, attempts: int) -> bool:
        """Whether to stop retrying now, after ``attempts`` that ended in ``error``: the owner
        would rather split the batch (a 500 that follows it may be one record's doing)."""


USER_AGENT = f"humanloop-logging/{__version__} python-requests/{requests.__version__}"


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent
    or unreadable, 0 for the past, at most a day. Never raises: the header is whatever a server
    or a proxy on the way sent."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        when = _http_date(value)
        if when is None:
            return None
        reference = datetime.now(timezone.utc).timestamp() if now is None else now
        seconds = when - reference
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), 24 * 3600.0)


def _http_date(value: str) -> Optional[float]:
    """The POSIX time an HTTP-date names (IMF-fixdate, RFC 850 or asctime), None if it names none.

    The standard library's parser reads all three forms; on text that is no date it raises
    TypeError (Python 3.9) or ValueError, and OverflowError on a field too large for C
    (``Wed, 21 Oct 99999999999999999999 07:28:00 GMT``).
    """
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000": a time in UTC whose origin's zone is not said
            when = when.replace(tzinfo=timezone.utc)
        return when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _message(body: bytes) -> str:
    """The service's words from an error body: ``detail`` when it is JSON, else a text excerpt."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace").strip()
        return text[:300] or "(empty body)"
    if isinstance(parsed, dict) and "detail" in parsed:
        detail = parsed["detail"]
        return detail if isinstance(detail, str) else json.dumps(detail)[:300]
    return json.dumps(parsed)[:300]


def _details(body: bytes) -> list[dict[str, Any]]:
    """The ``detail`` entries of a FastAPI 422, or [] when the body is not that shape."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    detail = parsed.get("detail") if isinstance(parsed, dict) else None
    if not isinstance(detail, list):
        return []
    return [entry for entry in detail if isinstance(entry, dict)]


Wait = Callable[[tenacity.RetryCallState], float]


#: 0.25 s doubling to 10 s, plus up to 0.5 s of jitter so that many clients do not retry in step.
DEFAULT_WAIT: Wait = tenacity.wait_exponential(multiplier=0.25, max=10.0) + tenacity.wait_random(
    0, 0.5
)


class HTTPTransport:
    """Sends JSON arrays to ``{base_url}/feedback``, retrying transient failures within a deadline.

    ``wait`` is the backoff between attempts, a tenacity wait strategy (default
    :data:`~humanloop_logging.transport.DEFAULT_WAIT`); a ``Retry-After`` answer waits at least that long on top. ``clock`` is
    the monotonic clock ``max_retry_time`` and ``SendControl.deadline()`` are measured on; tests
    inject one that their ``sleep`` advances, so retries are counted without real waits.
    """

    def __init__(
        self,
        *,
        api_key: str,
        url: str,
        timeout: float,
        max_retry_time: float,
        wait: Optional[Wait] = None,
        clock: Callable[[], float] = time.monotonic,
        connections: int = 10,
    ) -> None:
        self._api_key = api_key
        self._key = key_pattern(api_key)
        self.url = url
        self.timeout = timeout
        self.max_retry_time = max_retry_time
        self._wait: Wait = DEFAULT_WAIT if wait is None else wait
        self._clock = clock
        self._connections = connections
        self._target = Target(url)
        self._settle()
        self._adapter = self._new_adapter()
        self._lock = threading.Lock()
        self._guards: set[Guard] = set()  # the requests in flight, so close() can end them
        start_watchdog()  # now, while a thread can be started (not at exit)

    def __repr__(self) -> str:
        return f"HTTPTransport(url={self.url!r}, timeout={self.timeout})"

    def _new_adapter(self) -> GuardedAdapter:
        """A connection pool with as many kept-alive connections as requests may be in flight."""
        return GuardedAdapter(pool_maxsize=max(self._connections, 10))

    def _settle(self) -> None:
        """What every request shares, decided once: the prepared request and the environment.

        ``requests.Session.post`` prepares the URL and headers, reads the proxy and CA-bundle
        variables and ``~/.netrc``, merges cookies and walks redirects on every call: over half
        its own CPU per request, and the flush thread shares the GIL with the application. Here
        the request is prepared once and copied, the environment is read once (a netrc login
        would only have added a second credential), and each request goes straight to the
        adapter. Redirects are not followed: the API key must never go on to another address.
        """
        self._template: Optional[requests.PreparedRequest] = None
        self._proxies: MutableMapping[str, str] = {}
        self._verify: Any = True
        self._cert: Any = None
        try:
            self._template = self._prepare()
            with requests.Session() as session:
                found = session.merge_environment_settings(self.url, {}, None, None, None)
        except ValueError:  # a malformed URL: each request reports it, as a TransportError
            return
        self._proxies = found["proxies"]
        self._verify = found["verify"]
        self._cert = found["cert"]

    def _prepare(self) -> requests.PreparedRequest:
        """The request every POST copies, without its body; raises requests' error for a bad URL."""
        try:
            scheme = urlsplit(self.url).scheme
        except ValueError:
            raise requests.exceptions.InvalidURL("not a URL") from None
        if scheme not in ("http", "https"):
            raise requests.exceptions.InvalidSchema("not an http(s) URL")
        headers = requests.utils.default_headers()
        headers.update(
            {
                "X-API-KEY": self._api_key,
                "User-Agent": USER_AGENT,
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
        )
        return requests.Request("POST", self.url, headers=headers).prepare()

    def reset_after_fork(self) -> None:
        """``Transport`` hook, called by the shipper in a forked child: its own connections and
        watchdog; the parent's are left alone.

        Only a new pool: the prepared request and the environment stay as the parent read them,
        so the fork hook does no more than it must (it runs in every forked child).
        """
        self._adapter = self._new_adapter()
        self._lock = threading.Lock()
        self._guards = set()
        start_watchdog()

    def cut_off_at(self, deadline: float) -> None:
        """``Transport`` hook, called by the shipper's ``close()`` and the exit hook: bring the end
        of the requests in flight forward to ``deadline``."""
        with self._lock:
            guards = list(self._guards)
        for guard in guards:
            guard.fire_at(deadline)

    def close(self) -> None:
        """Close the pooled connections (the shipper stopped; a later send opens new ones)."""
        self._adapter.close()

    # -- one request -------------------------------------------------------------------------

    def post(self, body: bytes, records: Sequence[Any], deadline: float) -> int:
        """One POST, no retries, within ``timeout`` in total; returns the status, a 2xx. Raises a
        DeliveryError for anything else."""
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise TransportError(
                f"no time left to send to POST {self._target.where}: the shipper is closing",
                category="closing",
                url=self._target.where,
            )
        timeout = min(self.timeout, remaining)
        closing = remaining < self.timeout
        with time_limit(timeout) as guard, mapped_errors(guard, self._target, timeout, closing):
            with self._lock:
                self._guards.add(guard)
            try:
                request = (self._template or self._prepare()).copy()
                request.prepare_body(body, None)
                response = self._adapter.send(
                    request,
                    stream=True,
                    timeout=timeout,
                    verify=self._verify,
                    cert=self._cert,
                    proxies=self._proxies,
                )
                try:
                    status = response.status_code
                    if 200 <= status < 300:
                        # Delivered, whatever the body says. Read it only to keep the connection.
                        with contextlib.suppress(requests.RequestException):
                            self._read(response, MAX_RESPONSE_BYTES)
                        return status
                    limit = MAX_422_RESPONSE_BYTES if status == 422 else MAX_RESPONSE_BYTES
                    content = self._read(response, limit)
                finally:
                    response.close()
            finally:
                with self._lock:
                    self._guards.discard(guard)
        raise self._error_for(status, content, response.headers, records)

    @staticmethod
    def _read(response: requests.Response, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(16384):
            size += len(chunk)
            if size > limit:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def _error_for(
        self, status: int, content: bytes, headers: Mapping[str, str], records: Sequence[Any]
    ) -> DeliveryError:
        """The error for a non-2xx answer, in words that say what to check."""
        # A misbehaving proxy may echo the request, headers and all: never repeat the key.
        content = self._key.sub(b"[redacted]", content)
        message = _message(content)
        target = self._target
        if status in (401, 403):
            return AuthenticationError(
                status,
                message,
                records,
                url=target.where,
                text=(
                    f"Humanloop refused the API key (HTTP {status} from POST {target.where}: "
                    f"{message}): check api_key / HUMANLOOP_API_KEY"
                ),
            )
        if status == 422:
            return UnprocessableEntityError(message, _details(content), url=target.where)
        text = None
        if 300 <= status < 400:
            location = where(headers.get("Location") or "") or "an address it did not give"
            text = (
                f"POST {target.where} was redirected (HTTP {status}) to "
                f"{self._redact_header(location)}: redirects are not followed, so "
                "that the API key goes nowhere else; set base_url to the address the service "
                "names"
            )
        elif status == 404:
            base = target.base_url
            fix = (
                f"is base_url ({base}) the Humanloop API?"
                if base.rstrip("/").endswith("/v4")
                else f"base_url should end in /v4, e.g. https://api.humanloop.com/v4 (base_url is "
                f"{base})"
            )
            text = f"POST {target.where} was not found (HTTP 404: {message}): {fix}"
        return APIError(
            status,
            message,
            records,
            retryable=status in RETRYABLE_STATUSES,
            retry_after=parse_retry_after(headers.get("Retry-After")),
            url=target.where,
            text=text,
        )

    def _redact_header(self, text: str) -> str:
        """``text`` from a header without the key: http.client read the header as latin-1, so
        its bytes are the server's again as latin-1."""
        try:
            raw = text.encode("latin-1")
        except UnicodeEncodeError:
            return self._key.sub(b"[redacted]", text.encode("utf-8", "replace")).decode("utf-8")
        return self._key.sub(b"[redacted]", raw).decode("latin-1")

    # -- with retries -------------------------------------------------------------------------

    def send(self, body: bytes, records: Sequence[Any], control: SendControl) -> None:
        """POST ``body``, retrying transient failures for up to ``max_retry_time`` seconds.

        ``control.deadline()`` (on ``clock``) is a hard limit on top of that, for close and exit:
        it bounds each request's timeout too, and it is asked afresh because closing the shipper
        brings it forward while a send waits. Raises the last DeliveryError when it gives up.
        """
        clock = self._clock
        started = clock()
        give_up_at = started + self.max_retry_time
        backoff = self._wait

        last_try = False  # the one attempt a close deadline's shortened wait allows

        def attempt() -> None:
            self.post(body, records, control.deadline())

        def wait(state: tenacity.RetryCallState) -> float:
            nonlocal last_try
            error = state.outcome.exception() if state.outcome else None
            deadline = control.deadline()
            seconds, last_try = next_wait(
                float(backoff(state)),
                retry_after=error.retry_after if isinstance(error, DeliveryError) else None,
                spread=_random.uniform(1.0, 1.0 + RETRY_AFTER_SPREAD),
                closing=deadline < give_up_at,
                left=deadline - clock(),
                last_try=last_try,
            )
            return seconds

        def stop(state: tenacity.RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, DeliveryError) and control.give_up_early(
                error, state.attempt_number
            ):
                return True
            # Give up now if the wait would end past the limit: waiting only to fail is no use.
            wake_at = clock() + (state.upcoming_sleep or 0.0)
            return wake_at >= min(give_up_at, control.deadline())

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, DeliveryError):
                error.retry_for = max(0.0, min(give_up_at, control.deadline()) - started)
                control.retrying(error, state.upcoming_sleep)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_retryable),
            wait=wait,
            stop=stop,
            sleep=control.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            retrying(attempt)
        except DeliveryError as error:
            # requests' exception may still hang off the chain, and it holds the request and so
            # the API key header: cut the chain before the error goes anywhere.
            error.__context__ = error.__cause__ = None
            error.retry_for = None
            if error.retryable:  # transient, so it was time that ran out: say whose
                attempts = retrying.statistics.get("attempt_number", 1)
                limit = (
                    "the close deadline" if control.deadline() < give_up_at else "max_retry_time"
                )
                error.message = add_clause(
                    error.message,
                    f"gave up after {attempts} attempt(s) in {clock() - started:.1f}s ({limit})",
                )
                error.args = (error.message,)
            raise


def next_wait(
    backoff: float,
    *,
    retry_after: Optional[float],
    spread: float,
    closing: bool,
    left: float,
    last_try: bool,
) -> tuple[float, bool]:
    """The wait before the next attempt, and whether the close's last attempt is now taken.

    ``backoff`` is the exponential backoff's; a ``Retry-After`` is a lower bound on it, never a
    replacement ("Retry-After: 0" must not mean a hot loop), stretched by ``spread`` (1 to 1.2)
    so that the clients a rate limit turned away together do not come back together. While a
    close drains (``closing``) there is no later for these records: a backoff that would end
    past its deadline (``left`` seconds away) would give them up with time left, so once it is
    cut to half of that time, and the other half is the last attempt's.
    """
    if retry_after is not None and retry_after > backoff:
        return retry_after * spread, last_try
    if closing and not last_try and 0 < left <= backoff:
        return left / 2, True
    return backoff, last_try


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, DeliveryError) and error.retryable
