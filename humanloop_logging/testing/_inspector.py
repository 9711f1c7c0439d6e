"""The live inspector's routes: its page, its JSON API, and who may use them.

``GET /`` is the page (files of ``inspector/`` in this package); the API lives under
``/_inspector/``, a prefix the real service answers 404, so no client of ``/v4/feedback`` can tell
the inspector is there. The page shows what applications sent, so every route checks that the
``Host`` header names the address the stand-in is bound to (a page on another site whose name was
made to resolve to 127.0.0.1 is refused), and the one route that changes state, ``POST
/_inspector/api/faults``, also needs ``Content-Type: application/json`` and an ``Origin`` of that
same address, which a cross-site form or script cannot send.
"""

from __future__ import annotations

import email.message
import ipaddress
import json
import math
import threading
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit

from humanloop_logging._rules import is_loopback

from ._inspector_feed import InspectorFeed
from ._recorded import RecordedRequest
from ._server import _Answer, _json_bytes

if TYPE_CHECKING:
    from ._fake import FakeHumanloop

PREFIX = "/_inspector/"
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    PREFIX + "static/inspector.css": ("inspector.css", "text/css; charset=utf-8"),
    PREFIX + "static/inspector.js": ("inspector.js", "text/javascript; charset=utf-8"),
    # Named by the page, so that the browser does not ask the service for /favicon.ico.
    PREFIX + "static/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
_COMMON = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"))
_PAGE = (
    *_COMMON,
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
)
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


@cache
def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("inspector", name).read_bytes()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def address_allowed(netloc: str, bound_host: str, port: int) -> bool:
    """Whether ``netloc`` (a Host header, an Origin's host and port) is the bound address.

    The port must be the bound one; the name the bound host, or ``localhost`` when bound to a
    loopback or wildcard address; bound to a wildcard, any IP address (rebinding needs a name).
    """
    try:
        split = urlsplit("//" + netloc)
        name, given_port = split.hostname, split.port
    except ValueError:
        return False
    if not name or given_port != port or "," in netloc:
        return False
    bound = bound_host.strip("[]").lower()
    if name == bound:
        return True
    if name == "localhost":
        return bound in _WILDCARDS or is_loopback(bound)
    return bound in _WILDCARDS and _is_ip(name)


def _is_json(content_type: Optional[str]) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_type() == "application/json"


def _json_answer(status: int, content: Any, headers: tuple[tuple[str, str], ...] = ()) -> _Answer:
    return _Answer(status, _json_bytes(content), (*_COMMON, *headers))


def _refused(reason: str) -> _Answer:
    return _json_answer(403, {"detail": reason})


class Inspector:
    """Answers the inspector's routes for one :class:`FakeHumanloop`."""

    def __init__(self, fake: FakeHumanloop) -> None:
        self._fake = fake
        self.feed = InspectorFeed(fake._faults_state)

    # -- what the stand-in tells it --------------------------------------------------------------

    def observe(self, request: RecordedRequest, items: Optional[list[Any]]) -> None:
        self.feed.observe(request, items)

    def faults_changed(self) -> None:
        self.feed.faults_changed()

    def cleared(self) -> None:
        self.feed.clear()

    def wake(self) -> None:
        self.feed.wake()

    # -- routes ----------------------------------------------------------------------------------

    @staticmethod
    def owns(target: str) -> bool:
        """Whether a request target is the inspector's (its page or anything under its prefix)."""
        path = urlsplit(target).path
        return path == "/" or path.startswith(PREFIX)

    def answer(
        self,
        *,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        stop_event: threading.Event,
    ) -> _Answer:
        """The answer to one request for the page or its API (never recorded as a request)."""
        fake = self._fake
        host = headers.get("host", "")
        if not address_allowed(host, fake.host, fake.port):
            return _refused("The inspector answers only at the address the stand-in is bound to")
        route = urlsplit(path).path
        if route == PREFIX + "api/faults":
            if method != "POST":
                return _json_answer(405, {"detail": "Method Not Allowed"}, (("Allow", "POST"),))
            return self._set_faults(headers, body)
        if method != "GET":
            return _json_answer(405, {"detail": "Method Not Allowed"}, (("Allow", "GET"),))
        if route in _STATIC:
            name, content_type = _STATIC[route]
            return _Answer(200, _asset(name), _PAGE, content_type)
        if route == PREFIX + "api/state":
            return _json_answer(200, self.feed.snapshot())
        if route == PREFIX + "api/events":
            return _Answer(
                200, b"", _COMMON, "text/event-stream; charset=utf-8", self.feed.stream(stop_event)
            )
        if route == PREFIX + "recorded.jsonl":
            lines = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in fake.received)
            disposition = ("Content-Disposition", 'attachment; filename="recorded.jsonl"')
            return _Answer(
                200,
                lines.encode("utf-8"),
                (*_COMMON, disposition),
                "application/x-ndjson; charset=utf-8",
            )
        return _json_answer(404, {"detail": "Not Found"})

    def _set_faults(self, headers: Mapping[str, str], body: bytes) -> _Answer:
        fake = self._fake
        if not _is_json(headers.get("content-type")):
            return _refused("Switches take a JSON body (Content-Type: application/json)")
        origin = headers.get("origin", "")
        split = urlsplit(origin)
        if split.scheme != "http" or not address_allowed(split.netloc, fake.host, fake.port):
            return _refused("Switches are taken only from the inspector's own page (Origin)")
        try:
            change = json.loads(body)
        except ValueError:
            return _json_answer(400, {"detail": "The body is not JSON"})
        try:
            self._apply(change)
        except ValueError as exc:
            return _json_answer(400, {"detail": str(exc)})
        return _json_answer(200, {"faults": fake._faults_state()})

    def _apply(self, change: Any) -> None:
        """Switch the faults a JSON object names; ValueError (nothing switched) if one is wrong."""
        if not isinstance(change, dict) or not change:
            raise ValueError("Send an object with latency, fail_next, rate_limit or refuse_key")
        unknown = sorted(set(change) - {"latency", "fail_next", "rate_limit", "refuse_key"})
        if unknown:
            raise ValueError(f"Unknown switch: {', '.join(unknown)}")
        for name in ("latency", "fail_next", "rate_limit"):
            value = change.get(name)
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{name} must be a number >= 0")
        if "refuse_key" in change and not isinstance(change["refuse_key"], bool):
            raise ValueError("refuse_key must be true or false")
        fail_next = change.get("fail_next")
        if fail_next is not None and not float(fail_next).is_integer():
            raise ValueError("fail_next must be a whole number")
        fake = self._fake
        if change.get("latency") is not None:
            fake.set_latency(change["latency"])
        if "rate_limit" in change:
            fake.set_rate_limit(change["rate_limit"])
        if fail_next is not None:
            if fail_next:
                fake.fail_next(int(fail_next), 503)
            else:
                fake._drop_failures()
        if "refuse_key" in change:
            fake.refuse_key(change["refuse_key"])
