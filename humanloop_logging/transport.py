"""HTTP transport: one ``requests.Session``, tenacity retries, and the only place errors are mapped.

``requests`` exceptions never leave this module: every failure becomes a DeliveryError subclass that
says whether it is worth retrying. The transport knows nothing of queues or logging records; it
sends one JSON array and either returns or raises.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Optional, Protocol

import requests
import tenacity

from ._guard import Guard, GuardedAdapter, time_limit
from ._version import __version__
from .exceptions import (
    APIError,
    AuthenticationError,
    DeliveryError,
    TransportError,
    UnprocessableEntityError,
)

__all__ = ["RETRYABLE_STATUSES", "HTTPTransport", "SendControl", "parse_retry_after"]

#: Answers worth sending again: timeouts, rate limits and the server's transient failures.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

#: An error answer larger than this is not read (the details of a 422 are a few KB at most).
MAX_RESPONSE_BYTES = 1 << 20


class SendControl(Protocol):
    """What a sender is told by its owner: how long it may try, and how to wait."""

    def deadline(self) -> float:
        """Monotonic time after which nothing more may be tried."""

    def sleep(self, seconds: float) -> None:
        """Wait between attempts; the owner may cut it short to re-check the deadline."""

    def retrying(self, error: DeliveryError, wait: float) -> None:
        """Told before each wait, so retries can be counted."""


USER_AGENT = f"humanloop-logging/{__version__} python-requests/{requests.__version__}"


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        reference = datetime.now(timezone.utc).timestamp() if now is None else now
        seconds = when.timestamp() - reference
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), 24 * 3600.0)


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


@contextlib.contextmanager
def _mapped_errors(guard: Guard) -> Iterator[None]:
    """Turn requests' exceptions into ours, dropping them as causes: they carry the headers."""
    try:
        yield
    except requests.RequestException as exc:
        if guard.fired:
            raise TransportError(
                "timed out: the answer took longer than timeout in total"
            ) from None
        if isinstance(exc, requests.Timeout):
            raise TransportError(f"timed out: {type(exc).__name__}") from None
        if isinstance(exc, requests.ConnectionError):
            raise TransportError(f"connection failed: {_reason(exc)}") from None
        raise TransportError(f"request failed: {type(exc).__name__}") from None


def _reason(exc: BaseException) -> str:
    """The innermost cause's class name: enough to tell refused from reset without leaking."""
    seen = exc
    while seen.__context__ is not None and seen.__context__ is not seen:
        seen = seen.__context__
    inner = seen.args[0] if seen.args else seen
    return type(inner).__name__ if isinstance(inner, BaseException) else type(seen).__name__


class HTTPTransport:
    """Sends JSON arrays to ``{base_url}/feedback``, retrying transient failures within a deadline."""

    def __init__(
        self,
        *,
        api_key: str,
        url: str,
        timeout: float,
        max_retry_time: float,
    ) -> None:
        self._api_key = api_key
        self.url = url
        self.timeout = timeout
        self.max_retry_time = max_retry_time
        self._session = self._new_session()
        self._guard: Optional[Guard] = None  # the request in flight, so close() can end it

    def __repr__(self) -> str:
        return f"HTTPTransport(url={self.url!r}, timeout={self.timeout})"

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        adapter = GuardedAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update(
            {
                "X-API-KEY": self._api_key,
                "User-Agent": USER_AGENT,
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
        )
        return session

    def reset_after_fork(self) -> None:
        """Give a forked child its own connections; the parent's sockets are left alone."""
        self._session = self._new_session()
        self._guard = None

    def cut_off_at(self, deadline: float) -> None:
        """Bring the end of the request in flight forward to ``deadline`` (close, exit)."""
        guard = self._guard
        if guard is not None:
            guard.fire_at(deadline)

    def close(self) -> None:
        self._session.close()

    # -- one request -------------------------------------------------------------------------

    def post(self, body: bytes, records: Sequence[Any], deadline: float) -> None:
        """One POST, no retries, within ``timeout`` in total. Raises a DeliveryError unless 2xx."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransportError("no time left to send")
        timeout = min(self.timeout, remaining)
        with time_limit(timeout) as guard, _mapped_errors(guard):
            self._guard = guard
            response = self._session.post(self.url, data=body, timeout=timeout, stream=True)
            try:
                status = response.status_code
                if 200 <= status < 300:
                    # Delivered, whatever the body says. Read it only to keep the connection.
                    with contextlib.suppress(requests.RequestException):
                        self._read(response)
                    return
                content = self._read(response)
            finally:
                response.close()
        self._raise_for(status, content, response.headers.get("Retry-After"), records)

    @staticmethod
    def _read(response: requests.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(16384):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def _raise_for(
        self, status: int, content: bytes, retry_after: Optional[str], records: Sequence[Any]
    ) -> None:
        # A misbehaving proxy may echo the request, headers and all: never repeat the key.
        content = content.replace(self._api_key.encode("utf-8"), b"[redacted]")
        message = _message(content)
        if status in (401, 403):
            raise AuthenticationError(status, f"invalid API key ({message})", records)
        if status == 422:
            raise UnprocessableEntityError(message, _details(content))
        raise APIError(
            status,
            message,
            records,
            retryable=status in RETRYABLE_STATUSES,
            retry_after=parse_retry_after(retry_after),
        )

    # -- with retries -------------------------------------------------------------------------

    def send(self, body: bytes, records: Sequence[Any], control: SendControl) -> None:
        """POST ``body``, retrying transient failures for up to ``max_retry_time`` seconds.

        ``control.deadline()`` (monotonic) is a hard limit on top of that, for close and exit: it
        bounds each request's timeout too, and it is asked afresh because closing the shipper
        brings it forward while a send waits. Raises the last DeliveryError when it gives up.
        """
        give_up_at = time.monotonic() + self.max_retry_time

        def attempt() -> None:
            self.post(body, records, control.deadline())

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, DeliveryError) and error.retry_after is not None:
                return error.retry_after
            return float(_backoff(state))

        def stop(state: tenacity.RetryCallState) -> bool:
            # Give up now if the wait would end past the limit: waiting only to fail is no use.
            wake_at = time.monotonic() + (state.upcoming_sleep or 0.0)
            return wake_at >= min(give_up_at, control.deadline())

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, DeliveryError):
                control.retrying(error, state.upcoming_sleep)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_retryable),
            wait=wait,
            stop=stop,
            sleep=control.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        started = time.monotonic()
        try:
            retrying(attempt)
        except DeliveryError as error:
            # requests' exception may still hang off the chain, and it holds the request and so
            # the API key header: cut the chain before the error goes anywhere.
            error.__context__ = error.__cause__ = None
            if error.retryable:  # transient, so it was time that ran out: say whose
                attempts = retrying.statistics.get("attempt_number", 1)
                limit = (
                    "the close deadline" if control.deadline() < give_up_at else "max_retry_time"
                )
                error.message += (
                    f"; gave up after {attempts} attempt(s) in {time.monotonic() - started:.1f}s"
                    f" ({limit})"
                )
                error.args = (error.message,)
            raise


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, DeliveryError) and error.retryable


#: 0.25 s doubling to 10 s, plus up to 0.5 s of jitter so that many clients do not retry in step.
_backoff = tenacity.wait_exponential(multiplier=0.25, max=10.0) + tenacity.wait_random(0, 0.5)
