"""What each setting accepts: its check, how environment text is read, how its default is shown.

A ``Rule`` is all :func:`_config.setting` needs besides a name, a default and a line of
documentation. Checks raise ValueError with the words that follow the setting's name, so
``_config.resolve`` words every refusal the same way, for an argument and for a variable. Checks
that may be handed the API key by mistake (the key, the URL) never echo what they were given.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _show(default: object) -> str:
    return f"`{default}`"


@dataclass(frozen=True)
class Rule(Generic[T]):
    """What one setting accepts, and how its environment text and default are read.

    ``check`` returns the value to keep, or raises ValueError with the words that follow the
    setting's name. ``parse`` turns environment text into a value for ``check`` and refuses
    nothing itself, so an argument and a variable are refused in the same words.
    """

    check: Callable[[object], T]
    parse: Callable[[str], object] = str
    #: The default as the settings table shows it.
    show: Callable[[T], str] = _show
    #: Argument types accepted beyond the setting's own (converted by ``check``).
    accepts: tuple[object, ...] = ()
    #: Added to the message when a required setting is missing.
    hint: str = ""


def _lenient(convert: Callable[[str], object]) -> Callable[[str], object]:
    """Environment text converted, or left as text for the check to refuse in its own words."""

    def parse(raw: str) -> object:
        try:
            return convert(raw)
        except ValueError:
            return raw

    return parse


def _parse_flag(raw: str) -> object:
    lowered = raw.lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else raw


def _check_flag(value: object) -> bool:
    if not isinstance(value, bool):  # "false" or 0 must never mean yes
        raise ValueError(
            f"must be True or False (in the environment {'/'.join(_TRUE)} or "
            f"{'/'.join(_FALSE)}), got {value!r}"
        )
    return value


def _in_units(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 2**20 else f"{size >> 10} KiB"


def whole(minimum: int, *, bytes_: bool = False) -> Rule[int]:
    """A whole number >= ``minimum``; ``bytes_`` shows it in KiB or MiB too."""

    def words(number: int) -> str:
        return f"{number} ({_in_units(number)})" if bytes_ else str(number)

    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"must be a whole number >= {words(minimum)}, got {value!r}")
        return value

    show = (lambda size: f"`{size}` ({_in_units(size)})") if bytes_ else _show
    return Rule(check, parse=_lenient(int), show=show)


def _show_seconds(default: float) -> str:
    days = f" ({default / 86_400:g} days)" if default >= 86_400 else ""
    return f"`{default!r}` s{days}"


def seconds(*, allow_zero: bool) -> Rule[float]:
    """A finite number of seconds, > 0 (or >= 0 with ``allow_zero``); never a bool or NaN."""

    bound = ">= 0" if allow_zero else "> 0"

    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ValueError(f"must be a number of seconds, got {value!r}")
        if math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
            raise ValueError(f"must be a finite number {bound}, got {value!r}")
        return float(value)

    return Rule(check, parse=_lenient(float), show=_show_seconds)


def _check_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    return value


def _check_api_key(value: object) -> str:
    # Never echoed: whatever was passed here may be the key.
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    key = value.strip()
    if not key:
        raise ValueError("must not be empty")
    if key.lower().startswith(("http://", "https://")):
        raise ValueError(
            "looks like a URL: pass the key as api_key and the URL as base_url "
            "(FeedbackHandler(api_key, base_url), or by keyword)"
        )
    if any(ord(char) > 0xFF for char in key):
        # http.client writes a header as Latin-1. Refused now: at the first send, the encoding
        # error would repeat the key in its repr.
        raise ValueError("has characters an HTTP header cannot carry (beyond Latin-1)")
    return key


def base_url(default: str) -> Rule[str]:
    """An http(s) URL without query, fragment or credentials; ``default`` is the example the
    refusal gives."""

    def check(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {type(value).__name__}")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Not echoed: text that is no URL at all may be the key, passed in the wrong place.
            got = (
                f"a {parts.scheme!r} URL"
                if parts.scheme and parts.netloc
                else "text that is no URL"
            )
            raise ValueError(
                f"must be an http(s) URL such as {default}, got {got} "
                "(api_key and base_url swapped?)"
            )
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; pass api_key instead")
        return value.rstrip("/")

    return Rule(check)


def _check_path(value: object) -> str:
    path = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"must be a non-empty path, got {value!r}")
    # Absolute now: a later chdir (daemons do) must not move the file.
    return os.path.abspath(os.path.expanduser(path))


def _check_callback(value: object) -> Callable[..., Any]:
    if not callable(value):
        raise ValueError(f"must be callable, got {value!r}")
    return value


def _check_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value.strip()


API_KEY = Rule(
    _check_api_key,
    show=lambda _: "(required)",
    hint=" (for local tests, FakeHumanloop.api_key; to run without sending feedback, set "
    "HUMANLOOP_FEEDBACK_ENABLED=0)",
)
TEXT = Rule(_check_text)
FLAG = Rule(_check_flag, parse=_parse_flag)
PATH = Rule(_check_path, accepts=(os.PathLike[str],))
CALLBACK: Rule[Callable[..., Any]] = Rule(_check_callback)
NAME = Rule(_check_name)


def is_loopback(host: str) -> bool:
    """True for a host only this machine can reach (``127.0.0.1``, ``[::1]``, ``localhost`` and
    its subdomains): plain http:// to it cannot expose the key, and the inspector may be served."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
