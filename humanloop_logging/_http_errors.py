"""The one place ``requests``' exceptions become the library's own: each failure of a request is a
``TransportError`` that says what went wrong where, and whether it is worth retrying.

``requests`` exceptions never leave ``transport``: its requests run inside
:func:`mapped_errors`, which maps them here, as httpx maps httpcore's at one boundary.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from typing import Optional, TypeVar
from urllib.parse import urlsplit

import requests
import requests.utils

from ._guard import Guard
from .exceptions import TransportError

__all__ = ["Target", "host_port", "mapped_errors", "proxy_for", "where"]


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


def proxy_for(url: str) -> Optional[str]:
    """The proxy URL requests takes from the environment for ``url`` (NO_PROXY honoured), or None.

    What the transport's requests go through: ``requests`` reads the same variables once per
    transport (``trust_env``). Never raises: a malformed variable means no proxy here.
    """
    try:
        proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    except Exception:  # only to say where requests go: never fail over it
        return None
    return proxy or None


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


class Target:
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
        proxy = proxy_for(self.url)
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
def mapped_errors(guard: Guard, target: Target, timeout: float, closing: bool) -> Iterator[None]:
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
