"""Settings: argument, then environment variable, then default; validated once, at construction."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from .exceptions import ConfigurationError

DEFAULT_BASE_URL = "https://api.humanloop.com/v4"
DEFAULT_BATCH_SIZE = 100
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_MAX_QUEUE_SIZE = 10_000
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RETRY_TIME = 60.0
DEFAULT_EXIT_TIMEOUT = 5.0

#: Feedback fields, and the record attribute / event-dict key each is read from by default.
FEEDBACK_FIELDS = ("data_id", "type", "value", "user", "created_at", "unset")

ENV = {
    "api_key": "HUMANLOOP_API_KEY",
    "base_url": "HUMANLOOP_BASE_URL",
    "batch_size": "HUMANLOOP_FEEDBACK_BATCH_SIZE",
    "flush_interval": "HUMANLOOP_FEEDBACK_FLUSH_INTERVAL",
    "max_queue_size": "HUMANLOOP_FEEDBACK_MAX_QUEUE_SIZE",
    "timeout": "HUMANLOOP_FEEDBACK_TIMEOUT",
    "max_retry_time": "HUMANLOOP_FEEDBACK_MAX_RETRY_TIME",
    "exit_timeout": "HUMANLOOP_FEEDBACK_EXIT_TIMEOUT",
    "default_user": "HUMANLOOP_FEEDBACK_USER",
    "blocking": "HUMANLOOP_FEEDBACK_BLOCKING",
    "allow_insecure_http": "HUMANLOOP_ALLOW_INSECURE_HTTP",
}

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one shipper. The key is kept out of ``repr``."""

    api_key: str = field(repr=False)
    base_url: str
    batch_size: int
    flush_interval: float
    max_queue_size: int
    timeout: float
    max_retry_time: float
    exit_timeout: float
    default_user: str | None
    blocking: bool
    allow_insecure_http: bool

    @property
    def feedback_url(self) -> str:
        return f"{self.base_url}/feedback"


def _pick(
    name: str,
    given: T | None,
    parse: Callable[[str], T],
    default: T,
    environ: Mapping[str, str],
) -> T:
    if given is not None:
        return given
    raw = environ.get(ENV[name], "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ConfigurationError(f"{ENV[name]}={raw!r} is not a valid {name}") from None


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(base_url: str, allow_insecure_http: bool) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Not echoed: text that is no URL at all may be the key, passed in the wrong place.
        got = f"a {parts.scheme!r} URL" if parts.scheme and parts.netloc else "text that is no URL"
        raise ConfigurationError(
            f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {got} "
            "(api_key and base_url swapped?)"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError("base_url must not have a query or fragment")
    if parts.username or parts.password:
        raise ConfigurationError("base_url must not carry credentials; pass api_key instead")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"refusing to send the API key over plain http:// to {parts.hostname}; use https://, "
            "or pass allow_insecure_http=True (HUMANLOOP_ALLOW_INSECURE_HTTP=1) if you mean it"
        )
    return base_url.rstrip("/")


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or math.isinf(value):
        raise ConfigurationError(f"{name} must be a finite number > 0, got {value!r}")


def resolve(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    batch_size: int | None = None,
    flush_interval: float | None = None,
    max_queue_size: int | None = None,
    timeout: float | None = None,
    max_retry_time: float | None = None,
    exit_timeout: float | None = None,
    default_user: str | None = None,
    blocking: bool | None = None,
    allow_insecure_http: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build validated settings; every problem is a ConfigurationError naming the setting."""
    env = os.environ if environ is None else environ
    key = _pick("api_key", api_key, str, "", env)
    if not isinstance(key, str) or not key.strip():
        raise ConfigurationError(
            f"no Humanloop API key: pass api_key= or set {ENV['api_key']} "
            "(for local tests, FakeHumanloop.api_key)"
        )
    if key.strip().lower().startswith(("http://", "https://")):
        raise ConfigurationError(
            "api_key looks like a URL: pass the key as api_key and the URL as base_url "
            "(FeedbackHandler(api_key, base_url), or by keyword)"
        )
    insecure = _pick("allow_insecure_http", allow_insecure_http, _parse_bool, False, env)
    if not isinstance(insecure, bool):  # "false" must never mean yes
        raise ConfigurationError(f"allow_insecure_http must be True or False, got {insecure!r}")
    raw_url = _pick("base_url", base_url, str, DEFAULT_BASE_URL, env)
    if not isinstance(raw_url, str):
        raise ConfigurationError(f"base_url must be a string, got {type(raw_url).__name__}")
    settings = Settings(
        api_key=key.strip(),
        base_url=_check_url(raw_url, insecure),
        batch_size=_pick("batch_size", batch_size, int, DEFAULT_BATCH_SIZE, env),
        flush_interval=_pick("flush_interval", flush_interval, float, DEFAULT_FLUSH_INTERVAL, env),
        max_queue_size=_pick("max_queue_size", max_queue_size, int, DEFAULT_MAX_QUEUE_SIZE, env),
        timeout=_pick("timeout", timeout, float, DEFAULT_TIMEOUT, env),
        max_retry_time=_pick("max_retry_time", max_retry_time, float, DEFAULT_MAX_RETRY_TIME, env),
        exit_timeout=_pick("exit_timeout", exit_timeout, float, DEFAULT_EXIT_TIMEOUT, env),
        default_user=_pick("default_user", default_user, str, None, env),
        blocking=_pick("blocking", blocking, _parse_bool, False, env),
        allow_insecure_http=insecure,
    )
    for name in ("blocking", "allow_insecure_http"):
        if not isinstance(getattr(settings, name), bool):
            raise ConfigurationError(
                f"{name} must be True or False, got {getattr(settings, name)!r}"
            )
    for name in ("batch_size", "max_queue_size"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be a whole number >= 1, got {value!r}")
    _positive("flush_interval", settings.flush_interval)
    _positive("timeout", settings.timeout)
    _positive("max_retry_time", settings.max_retry_time, allow_zero=True)
    _positive("exit_timeout", settings.exit_timeout, allow_zero=True)
    if settings.default_user is not None and not isinstance(settings.default_user, str):
        raise ConfigurationError(f"default_user must be a string, got {settings.default_user!r}")
    return settings


def resolve_fields(fields: Mapping[str, str] | None) -> tuple[str, str, str, str, str, str]:
    """The attribute or key each feedback field is read from, in FEEDBACK_FIELDS order."""
    names = {name: name for name in FEEDBACK_FIELDS}
    for feedback_field, attribute in (fields or {}).items():
        if feedback_field not in names:
            raise ConfigurationError(
                f"fields: unknown feedback field {feedback_field!r}; known: {FEEDBACK_FIELDS}"
            )
        if not isinstance(attribute, str) or not attribute:
            raise ConfigurationError(f"fields[{feedback_field!r}] must be a non-empty string")
        names[feedback_field] = attribute
    if len(set(names.values())) != len(names):
        raise ConfigurationError(f"fields: two feedback fields read the same name: {names}")
    data_id, type_, value, user, created_at, unset = (names[name] for name in FEEDBACK_FIELDS)
    return data_id, type_, value, user, created_at, unset
