"""HTTP transport: one ``requests`` connection pool, tenacity retries, and the only place errors are mapped.

``requests`` exceptions never leave this module: every failure becomes a DeliveryError subclass that
says whether it is worth retrying. The transport knows nothing of queues or logging records; it
sends one JSON array and either returns or raises.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Optional, Protocol, TypeVar
from urllib.parse import urlsplit

import requests
import requests.utils
import tenacity

from ._guard import Guard, GuardedAdapter, start_watchdog, time_limit
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
    """What a sender is told by its owner: how long it may try, and how to wait."""

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


#: How JSON may write a character with a short escape of its own (``/`` is optional, but some
#: servers escape it).
_JSON_SHORT = {
    '"': b'\\"',
    "\\": b"\\\\",
    "/": b"\\/",
    "\b": b"\\b",
    "\f": b"\\f",
    "\n": b"\\n",
    "\r": b"\\r",
    "\t": b"\\t",
}


def _hex(number: int, width: int) -> bytes:
    """A pattern for ``number`` in hexadecimal, in upper or lower case."""
    digits = f"{number:0{width}x}"
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in digits).encode("ascii")


def _spellings(char: str) -> list[bytes]:
    """Patterns for one character of the key as a server may echo it: as sent (latin-1, as the
    header goes out) or as UTF-8; JSON-escaped; percent-encoded."""
    utf8 = char.encode("utf-8", "surrogatepass")
    code = ord(char)
    units = (
        [code] if code < 0x10000 else [0xD800 + ((code - 0x10000) >> 10), 0xDC00 + (code & 0x3FF)]
    )
    found = [b"".join(b"\\\\u" + _hex(unit, 4) for unit in units)]
    if char in _JSON_SHORT:
        found.append(re.escape(_JSON_SHORT[char]))
    found.append(b"".join(b"%" + _hex(byte, 2) for byte in utf8))
    if char == " ":
        found.append(b"\\+")
    found.append(re.escape(utf8))
    if 0x80 <= code <= 0xFF:
        found.append(re.escape(bytes([code])))
    return found


def key_pattern(key: str) -> re.Pattern[bytes]:
    """What finds ``key`` in an answer, however it is spelt there, even one character one way and
    the next another: a server or proxy echoing the request may have JSON-escaped it (a quote,
    a backslash, anything non-ASCII) or percent-encoded it (in a URL, a form)."""
    return re.compile(b"".join(b"(?:" + b"|".join(_spellings(char)) + b")" for char in key))


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


def where(url: str) -> str:
    """``url`` as it may be shown: scheme, host, port and path, never user info or a query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return url.split("?", 1)[0].rsplit("@", 1)[-1]
    if not host:
        return url.split("?", 1)[0].rsplit("@", 1)[-1]
    shown = f"[{host}]" if ":" in host else host
    if port is not None:
        shown = f"{shown}:{port}"
    return f"{parts.scheme}://{shown}{parts.path}"


def host_port(url: str) -> str:
    """``host:port`` of ``url``, the port filled in from the scheme when the URL has none."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return where(url)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, urllib3's ``reason`` and exception args."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += list(current.args)
        stack += [item for item in linked if isinstance(item, BaseException)]


_E = TypeVar("_E", bound=BaseException)


def _first(exc: BaseException, kind: type[_E]) -> Optional[_E]:
    return next((item for item in _chain(exc) if isinstance(item, kind)), None)


def _tls_reason(error: ssl.SSLError) -> str:
    """What went wrong in a handshake, in OpenSSL's words (never anything of the request)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        verify = getattr(error, "verify_message", None)
        return f"certificate verify failed: {verify}" if verify else "certificate verify failed"
    reason = getattr(error, "reason", None)
    if isinstance(reason, str) and reason:
        return reason.replace("_", " ").lower()
    return type(error).__name__


class _Target:
    """Where one transport sends, in the words its errors use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = where(url)
        self.host_port = host_port(url)
        base = url[: -len("/feedback")] if url.endswith("/feedback") else url
        self.base_url = where(base)
        try:
            self.host = urlsplit(url).hostname or self.host_port
        except ValueError:
            self.host = self.host_port

    def proxy(self) -> str:
        """host:port of the proxy requests would use for this URL, from the environment."""
        try:
            proxy = requests.utils.select_proxy(
                self.url, requests.utils.get_environ_proxies(self.url)
            )
        except Exception:  # only for a message: never fail over it
            proxy = None
        return host_port(proxy) if proxy else "the proxy"

    def transport_error(self, exc: requests.RequestException, timeout: float) -> TransportError:
        """Our error for one of requests' exceptions: what happened, where, and what to check."""
        post = f"POST {self.where}"
        if isinstance(
            exc,
            (
                requests.exceptions.InvalidURL,
                requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema,
                requests.exceptions.URLRequired,
            ),
        ):
            return TransportError(
                f"cannot send to {post}: the URL is not valid ({type(exc).__name__}); "
                "check base_url",
                category="url",
                url=self.where,
            )
        if isinstance(exc, requests.exceptions.ProxyError):
            inner = _first(exc, ConnectionRefusedError)
            why = "connection refused" if inner is not None else _reason(exc)
            return TransportError(
                f"cannot reach Humanloop through {self.proxy()} ({why}) for {post}: check "
                "HTTPS_PROXY / HTTP_PROXY (and NO_PROXY)",
                category="proxy",
                url=self.where,
            )
        tls = _first(exc, ssl.SSLError)
        if tls is not None or isinstance(exc, requests.exceptions.SSLError):
            why = _tls_reason(tls) if tls is not None else "handshake failed"
            fix = (
                "if a proxy or firewall on this network re-signs TLS, set REQUESTS_CA_BUNDLE to "
                "its CA bundle"
                if isinstance(tls, ssl.SSLCertVerificationError)
                else "does the host and port in base_url speak HTTPS?"
            )
            return TransportError(
                f"TLS with {self.host_port} failed ({why}) for {post}: {fix}",
                category="tls",
                url=self.where,
            )
        if _first(exc, socket.gaierror) is not None:
            return TransportError(
                f"cannot reach Humanloop: the host name {self.host} could not be resolved "
                f"(DNS) for {post}: check the host in base_url",
                category="dns",
                url=self.where,
            )
        if _first(exc, ConnectionRefusedError) is not None:
            return TransportError(
                f"cannot reach Humanloop at {self.host_port} (connection refused) for {post}: "
                "is the service running, and are host and port in base_url right?",
                category="refused",
                url=self.where,
            )
        if isinstance(exc, requests.ConnectTimeout):
            return TransportError(
                f"timed out: no connection to {self.host_port} within timeout={timeout:g}s for "
                f"{post}: is a firewall dropping the traffic, and are host and port in base_url "
                "right?",
                category="timeout",
                url=self.where,
            )
        if isinstance(exc, requests.Timeout):
            return TransportError(
                f"timed out: no answer from {self.host_port} within timeout={timeout:g}s for "
                f"{post}: the service (or a proxy on the way) is slow or hanging",
                category="timeout",
                url=self.where,
            )
        if isinstance(exc, requests.ConnectionError):
            return TransportError(
                f"the connection to {self.host_port} was closed before an answer came "
                f"({_reason(exc)}) for {post}",
                category="reset",
                url=self.where,
            )
        return TransportError(
            f"request failed ({type(exc).__name__}) for {post}", category="delivery", url=self.where
        )

    def cut_off(self, timeout: float, *, closing: bool) -> TransportError:
        if closing:
            return TransportError(
                f"cut off at the close deadline: POST {self.where} was still waiting for "
                f"{self.host_port} when close() (or the exit hook) ran out of time",
                category="closing",
                url=self.where,
            )
        return TransportError(
            f"timed out in total: POST {self.where} got no whole answer from {self.host_port} "
            f"within timeout={timeout:g}s; the service, or a proxy on the way, is hanging or "
            "trickling its answer",
            category="timeout",
            url=self.where,
        )


@contextlib.contextmanager
def _mapped_errors(guard: Guard, target: _Target, timeout: float, closing: bool) -> Iterator[None]:
    """Turn requests' exceptions into ours, dropping them as causes: they carry the headers.

    ``closing``: the time limit is what the close deadline left, not ``timeout``.
    """
    try:
        yield
    except requests.RequestException as exc:
        if guard.fired or (closing and isinstance(exc, requests.Timeout)):
            raise target.cut_off(timeout, closing=closing or guard.cut_short) from None
        raise target.transport_error(exc, timeout) from None


def _reason(exc: BaseException) -> str:
    """The innermost cause's class name: enough to tell refused from reset without leaking."""
    seen = exc
    while seen.__context__ is not None and seen.__context__ is not seen:
        seen = seen.__context__
    inner = seen.args[0] if seen.args else seen
    return type(inner).__name__ if isinstance(inner, BaseException) else type(seen).__name__


Wait = Callable[[tenacity.RetryCallState], float]

#: 0.25 s doubling to 10 s, plus up to 0.5 s of jitter so that many clients do not retry in step.
DEFAULT_WAIT: Wait = tenacity.wait_exponential(multiplier=0.25, max=10.0) + tenacity.wait_random(
    0, 0.5
)


class HTTPTransport:
    """Sends JSON arrays to ``{base_url}/feedback``, retrying transient failures within a deadline.

    ``wait`` is the backoff between attempts, a tenacity wait strategy (default
    :data:`DEFAULT_WAIT`); a ``Retry-After`` answer waits at least that long on top. ``clock`` is
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
        self._target = _Target(url)
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
        """Give a forked child its own connections and watchdog; the parent's are left alone.

        Only a new pool: the prepared request and the environment stay as the parent read them,
        so the fork hook does no more than it must (it runs in every forked child).
        """
        self._adapter = self._new_adapter()
        self._lock = threading.Lock()
        self._guards = set()
        start_watchdog()

    def cut_off_at(self, deadline: float) -> None:
        """Bring the end of the requests in flight forward to ``deadline`` (close, exit)."""
        with self._lock:
            guards = list(self._guards)
        for guard in guards:
            guard.fire_at(deadline)

    def close(self) -> None:
        self._adapter.close()

    # -- one request -------------------------------------------------------------------------

    def post(self, body: bytes, records: Sequence[Any], deadline: float) -> None:
        """One POST, no retries, within ``timeout`` in total. Raises a DeliveryError unless 2xx."""
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise TransportError(
                f"no time left to send to POST {self._target.where}: the shipper is closing",
                category="closing",
                url=self._target.where,
            )
        timeout = min(self.timeout, remaining)
        closing = remaining < self.timeout
        with time_limit(timeout) as guard, _mapped_errors(guard, self._target, timeout, closing):
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
                        return
                    limit = MAX_422_RESPONSE_BYTES if status == 422 else MAX_RESPONSE_BYTES
                    content = self._read(response, limit)
                finally:
                    response.close()
            finally:
                with self._lock:
                    self._guards.discard(guard)
        self._raise_for(status, content, response.headers, records)

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

    def _raise_for(
        self, status: int, content: bytes, headers: Mapping[str, str], records: Sequence[Any]
    ) -> None:
        # A misbehaving proxy may echo the request, headers and all: never repeat the key.
        content = self._key.sub(b"[redacted]", content)
        message = _message(content)
        target = self._target
        if status in (401, 403):
            raise AuthenticationError(
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
            raise UnprocessableEntityError(message, _details(content), url=target.where)
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
        raise APIError(
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
