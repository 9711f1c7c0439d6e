"""``humanloop-logging check``: the API key and the way to Humanloop, checked before a deploy.

The probe is an empty array POSTed to ``{base_url}/feedback``, the request the handlers make, with
nothing in it: the stand-in in both flavours and the real FastAPI services of the v4 document
(tests/fidelity) answer it ``200 []`` with the right key and 401 with a wrong one (the endpoint
checks the key after reading the body, and an empty array is a valid body), and 404 where the
path lacks ``/v4``. It creates nothing. It goes through the library's own settings and transport,
so the environment, the proxy, TLS verification and the words of every problem are those of the
shipper the application will run.

Before it, DNS and a TCP connection are tried on their own (to the proxy, when one applies), only
to show what they found; what is wrong is always said in the words of the request itself.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from typing import IO, TYPE_CHECKING, Any, Optional
from urllib.parse import SplitResult, urlsplit

if TYPE_CHECKING:
    from ._config import Settings
    from .exceptions import DeliveryError

#: Exit statuses, one per kind of fix (docs/delivery.md shows this table).
EXIT_OK = 0
EXIT_UNREACHABLE = 1  # DNS, connection refused, TLS, proxy, timed out, connection closed
EXIT_SETTINGS = 2  # bad settings or usage, as argparse's own usage errors
EXIT_KEY = 3  # 401/403: the API key was refused
EXIT_BASE_URL = 4  # 404 or a redirect: base_url is not the v4 API
EXIT_ANSWER = 5  # any other error answer: 429, 5xx, ...
EXIT_INTERRUPTED = 130

_PROBE = b"[]"
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks5": 1080, "socks5h": 1080}


def add_check(subparsers: Any) -> None:
    check = subparsers.add_parser(
        "check",
        help="check the API key and the connection to Humanloop, creating nothing",
        description=(
            "POST an empty array to {base_url}/feedback with the settings an application would "
            "use (arguments, then HUMANLOOP_* environment variables, then defaults), print what "
            "each step found, and say what is wrong and how to fix it. Nothing is created. "
            "Exit status: 0 OK, 1 Humanloop cannot be reached, 2 bad settings, 3 the API key "
            "was refused, 4 base_url is wrong, 5 another error answer."
        ),
    )
    check.add_argument(
        "--api-key",
        default=None,
        help="the API key (default: HUMANLOOP_API_KEY, which keeps it out of the process list)",
    )
    check.add_argument(
        "--base-url", default=None, help="where to send (default: HUMANLOOP_BASE_URL, or v4)"
    )
    check.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds the request may take (default: HUMANLOOP_FEEDBACK_TIMEOUT, or 10)",
    )
    check.add_argument(
        "--json", action="store_true", help="print one JSON object (ok, checks, problem) instead"
    )
    check.set_defaults(func=_check)


@dataclass(frozen=True)
class Check:
    """One step: ``result`` is ok, failed, skipped, or info (a fact, not a test). A failed step's
    ``detail`` may be empty: the problem, in the library's words, says what went wrong."""

    check: str
    result: str
    detail: str


class _Report:
    """Prints each step as it is known (text), or everything at the end (``--json``)."""

    def __init__(self, out: IO[str], as_json: bool) -> None:
        self._out = out
        self._json = as_json
        self.checks: list[Check] = []
        self.request: Optional[str] = None

    def add(self, check: str, result: str, detail: str) -> None:
        self.checks.append(Check(check, result, detail))
        if not self._json:
            shown = detail if result == "info" else f"{result}: {detail}" if detail else result
            print(f"{check + ':':<10}{shown}", file=self._out, flush=True)

    def sending(self, request: str) -> None:
        self.request = request
        if not self._json:
            shown = f"{request} with an empty array, which creates nothing"
            print(f"{'sending:':<10}{shown}", file=self._out, flush=True)

    def finish(self, status: int, verdict: str, problem: Optional[tuple[str, str]]) -> int:
        if self._json:
            category, message = problem if problem is not None else (None, None)
            document = {
                "ok": status == EXIT_OK,
                "exit_status": status,
                "request": self.request,
                "checks": [asdict(check) for check in self.checks],
                "problem": None if problem is None else {"category": category, "message": message},
            }
            print(json.dumps(document, ensure_ascii=False), file=self._out, flush=True)
        else:
            print(verdict, file=self._out, flush=True)
        return status


def _check(args: argparse.Namespace) -> int:
    report = _Report(sys.stdout, args.json)
    try:
        return _run(args, report)
    except KeyboardInterrupt:
        return report.finish(EXIT_INTERRUPTED, "interrupted", ("interrupted", "interrupted"))


def _run(args: argparse.Namespace, report: _Report) -> int:
    from ._config import ENV, resolve  # noqa: PLC0415 (the CLI starts without them)
    from .exceptions import ConfigurationError  # noqa: PLC0415

    try:
        # As an application would resolve them: every HUMANLOOP_* variable is read and checked.
        settings = resolve(args.api_key, args.base_url, timeout=args.timeout)
        if not settings.api_key:  # disabled, and no key: the check needs one all the same
            settings = resolve(args.api_key, args.base_url, timeout=args.timeout, enabled=True)
    except ConfigurationError as error:
        report.add("settings", "failed", "")
        return report.finish(EXIT_SETTINGS, f"FAILED: {error}", ("configuration", str(error)))
    report.add("settings", "ok", _describe_settings(args, settings, ENV))
    return _probe(settings, report)


def _source(given: object, flag: str, env: Optional[str]) -> str:
    """Where a setting came from, as ``_config.resolve`` decides it."""
    if given is not None:
        return f"from {flag}"
    if env and os.environ.get(env, "").strip():
        return f"from {env}"
    return "(default)"


def _describe_settings(args: argparse.Namespace, settings: Settings, env: dict[str, str]) -> str:
    key = f"api_key {_source(args.api_key, '--api-key', env['api_key'])} "
    length = len(settings.api_key)
    key += f"({length} character{'' if length == 1 else 's'}, not shown)"
    base = f"base_url {settings.base_url} {_source(args.base_url, '--base-url', env['base_url'])}"
    timeout = f"timeout {settings.timeout:g}s {_source(args.timeout, '--timeout', env['timeout'])}"
    parts = [key, base, timeout]
    if not settings.enabled:
        parts.append(
            f"enabled=False from {env['enabled']}: the application sends nothing, but the key "
            "and connection are checked"
        )
    return ", ".join(parts)


def _probe(settings: Settings, report: _Report) -> int:
    from ._http_errors import host_port, proxy_for, where  # noqa: PLC0415 (loads requests)
    from .exceptions import APIError, DeliveryError  # noqa: PLC0415
    from .transport import HTTPTransport  # noqa: PLC0415

    url = settings.feedback_url
    parts = urlsplit(url)
    host = parts.hostname or ""
    report.sending(f"POST {where(url)}")

    proxy = proxy_for(url)
    if proxy is None:
        report.add("proxy", "info", _no_proxy(parts.scheme, host))
        reached = _reach(host, _port(parts), settings.timeout, "")
    else:
        report.add("proxy", "info", f"{host_port(proxy)} {_proxy_source(parts.scheme, proxy)}")
        proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        reached = _reach(proxy_parts.hostname or "", _port(proxy_parts), settings.timeout, "proxy ")
    for check in reached:
        report.add(check.check, check.result, check.detail)

    transport = HTTPTransport(
        api_key=settings.api_key,
        url=url,
        timeout=settings.timeout,
        max_retry_time=0.0,
        connections=1,
    )
    started = time.monotonic()
    failure: Optional[DeliveryError] = None
    try:
        # No deadline but the timeout: a deadline closer than that would read as a close.
        status = transport.post(_PROBE, (), math.inf)
    except DeliveryError as error:
        failure = error
    finally:
        transport.close()
    took = time.monotonic() - started

    report.add("TLS", *_tls(parts.scheme, host, url, failure))
    if failure is None:
        report.add("answer", "ok", f"HTTP {status} in {took * 1000:.0f} ms")
        return report.finish(
            EXIT_OK,
            f"OK: {settings.base_url} accepted the API key (HTTP {status} to an empty array, "
            "nothing created); feedback can be sent with these settings",
            None,
        )
    if isinstance(failure, APIError):
        report.add("answer", "failed", f"HTTP {failure.status} in {took * 1000:.0f} ms")
    elif failure.category in ("timeout", "reset"):
        report.add("answer", "failed", f"none came ({failure.category})")
    else:
        report.add("answer", "skipped", "the request never reached the service")
    return report.finish(
        _exit_status(failure), f"FAILED: {failure.message}", (failure.category, failure.message)
    )


def _port(parts: SplitResult) -> Optional[int]:
    """The URL's port, or its scheme's; None for a malformed one (the request reports it)."""
    try:
        port = parts.port
    except ValueError:
        return None
    return port or _DEFAULT_PORTS.get(parts.scheme, 80)


def _exit_status(error: DeliveryError) -> int:
    from .exceptions import APIError  # noqa: PLC0415

    if error.category == "auth":
        return EXIT_KEY
    if error.category == "not_found":
        return EXIT_BASE_URL
    if error.category == "url":
        return EXIT_SETTINGS
    if isinstance(error, APIError):
        # A redirect: the library does not follow it, and names base_url as the fix.
        return EXIT_BASE_URL if 300 <= error.status < 400 else EXIT_ANSWER
    return EXIT_UNREACHABLE


def _proxy_variables(scheme: str) -> list[tuple[str, str]]:
    names = (f"{scheme}_proxy", "all_proxy")
    return [(name, value) for name, value in os.environ.items() if name.lower() in names and value]


def _no_proxy(scheme: str, host: str) -> str:
    if _proxy_variables(scheme):
        return f"none: NO_PROXY leaves {host} out"
    return "none"


def _proxy_source(scheme: str, proxy: str) -> str:
    """Which variable named the proxy (never its credentials: the caller shows host:port only)."""
    for name, value in _proxy_variables(scheme):
        if value.strip() == proxy:
            return f"from {name}"
    return "from the system's proxy settings"


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _reach(host: str, port: Optional[int], timeout: float, what: str) -> tuple[Check, Check]:
    """DNS, then a TCP connection, tried directly: what they found, for the report only."""
    if _is_address(host):
        dns = Check("DNS", "ok", f"{what}{host} is an address, nothing to resolve")
    else:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            return (
                Check("DNS", "failed", f"{what}{host}: {why}"),
                Check("connect", "skipped", "no address"),
            )
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        dns = Check("DNS", "ok", f"{what}{host} is {', '.join(addresses)}")
    if port is None:
        return dns, Check("connect", "skipped", f"{what}port is not a number")
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            peer = sock.getpeername()
    except socket.timeout:
        return dns, Check("connect", "failed", f"{what}{target}: no connection within {timeout:g}s")
    except OSError as exc:
        return dns, Check("connect", "failed", f"{what}{target}: {exc.strerror or exc}")
    address = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
    return dns, Check("connect", "ok", f"{what}{address}")


def _tls(scheme: str, host: str, url: str, failure: Optional[DeliveryError]) -> tuple[str, str]:
    from .exceptions import APIError  # noqa: PLC0415

    if scheme != "https":
        return "skipped", "http:// (no TLS)"
    if failure is None or isinstance(failure, APIError):
        return "ok", f"the certificate of {host} was verified{_ca_bundle(url)}"
    if failure.category == "tls":
        return "failed", ""
    if failure.category in ("timeout", "reset"):
        return "skipped", "no answer came to confirm it"
    return "skipped", "no connection"


def _ca_bundle(url: str) -> str:
    """`` against PATH`` when REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE names the CAs, as requests
    reads them; empty for its default bundle."""
    import requests  # noqa: PLC0415

    with requests.Session() as session:
        verify = session.merge_environment_settings(url, {}, None, None, None)["verify"]
    return f" against {verify}" if isinstance(verify, str) else ""
