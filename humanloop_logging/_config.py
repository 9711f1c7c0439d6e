"""Settings: declared once, here; argument, then environment variable, then default; validated once.

Each setting is one field of :class:`Settings`, made by :func:`setting`: its type is the field's
annotation, and its default, environment variable, rule (``_rules.py``) and one line of
documentation ride along in the field. Everything else is read off those fields: :func:`resolve`,
the constructors' run-time signatures (:func:`takes_settings`), ``shipper.SETTING_NAMES`` and the
settings table of docs/settings.md (:func:`settings_table`, which the documentation renders when
it is built; ``python -m humanloop_logging._config`` prints it). Only :class:`SettingsArgs`, which
type checkers need spelled out, repeats names and types; tests/test_config.py holds it, the
signatures and the settings page to these fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, TypedDict, TypeVar, Union, overload
from urllib.parse import urlsplit

from ._report import ErrorCallback
from ._rules import (
    API_KEY,
    CALLBACK,
    FLAG,
    NAME,
    PATH,
    TEXT,
    Rule,
    base_url,
    is_loopback,
    seconds,
    whole,
)
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Unpack

#: ``before_send``: a record's fields in, the record to send (changed or not) or None out.
BeforeSend = Callable[[dict[str, Any]], Optional[Mapping[str, Any]]]

DEFAULT_BASE_URL = "https://api.humanloop.com/v4"
DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_IN_FLIGHT = 4
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_MAX_QUEUE_SIZE = 10_000
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RETRY_TIME = 60.0
DEFAULT_EXIT_TIMEOUT = 5.0
DEFAULT_MAX_SPOOL_BYTES = 100 * 2**20
DEFAULT_SPOOL_MAX_AGE = 7 * 86_400.0
#: The smallest spool accepted; a smaller one would hold too little to ride out an outage.
MIN_SPOOL_BYTES = 64 * 2**10

#: The settings constructors also take by position, in this order; the rest are keyword-only.
POSITIONAL = ("api_key", "base_url")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Declared:
    """One setting as declared: read off a field of :class:`Settings`."""

    name: str
    default: object
    required: bool
    env: Optional[str]
    rule: Rule[Any]
    doc: str


_SPEC = "humanloop_logging.setting"


@overload
def setting(
    rule: Rule[T], *, env: Optional[str], doc: str, repr: bool = ..., compare: bool = ...
) -> T: ...
@overload
def setting(
    rule: Rule[T],
    default: T,
    *,
    env: Optional[str],
    doc: str,
    repr: bool = ...,
    compare: bool = ...,
) -> T: ...
@overload
def setting(
    rule: Rule[T],
    default: None,
    *,
    env: Optional[str],
    doc: str,
    repr: bool = ...,
    compare: bool = ...,
) -> Optional[T]: ...
def setting(
    rule: Rule[Any],
    default: object = dataclasses.MISSING,
    *,
    env: Optional[str],
    doc: str,
    repr: bool = True,
    compare: bool = True,
) -> Any:
    """Declare one field of :class:`Settings`; no default means required."""
    metadata = {_SPEC: (env, rule, doc)}
    return dataclasses.field(default=default, repr=repr, compare=compare, metadata=metadata)


# -- the declaration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one shipper, and the declaration of every setting, in order.

    A new setting is one more field here and its line in :class:`SettingsArgs`;
    tests/test_config.py says what else must follow (the settings page). The key is kept out of
    ``repr``.
    """

    api_key: str = setting(
        API_KEY,
        env="HUMANLOOP_API_KEY",
        doc="sent as `X-API-KEY`; never logged, never in a `repr` or an exception",
        repr=False,
    )
    base_url: str = setting(
        base_url(DEFAULT_BASE_URL),
        DEFAULT_BASE_URL,
        env="HUMANLOOP_BASE_URL",
        doc="requests go to `{base_url}/feedback`",
    )
    enabled: bool = setting(
        FLAG,
        True,
        env="HUMANLOOP_FEEDBACK_ENABLED",
        doc="`False`: nothing is sent, no thread starts and no API key is needed; records are "
        "still captured, validated and counted (`withheld`)",
    )
    name: str = setting(
        NAME,
        "default",
        env="HUMANLOOP_FEEDBACK_NAME",
        doc="names this shipper in metrics (the `shipper` label)",
    )
    batch_size: int = setting(
        whole(1),
        DEFAULT_BATCH_SIZE,
        env="HUMANLOOP_FEEDBACK_BATCH_SIZE",
        doc="records in one request; a full batch is sent at once, and while more than a "
        "batch waits a request takes up to 5 times as many",
    )
    max_in_flight: int = setting(
        whole(1),
        DEFAULT_MAX_IN_FLIGHT,
        env="HUMANLOOP_FEEDBACK_MAX_IN_FLIGHT",
        doc="most requests in flight at once; 429, 503 and outages lower it, successes raise it "
        "back (AIMD)",
    )
    flush_interval: float = setting(
        seconds(allow_zero=False),
        DEFAULT_FLUSH_INTERVAL,
        env="HUMANLOOP_FEEDBACK_FLUSH_INTERVAL",
        doc="longest a record waits for its batch to fill",
    )
    max_queue_size: int = setting(
        whole(1),
        DEFAULT_MAX_QUEUE_SIZE,
        env="HUMANLOOP_FEEDBACK_MAX_QUEUE_SIZE",
        doc="records waiting beyond this are dropped and counted",
    )
    timeout: float = setting(
        seconds(allow_zero=False),
        DEFAULT_TIMEOUT,
        env="HUMANLOOP_FEEDBACK_TIMEOUT",
        doc="the most one request may take in total, connecting to last byte "
        "(a server trickling its answer is cut off too)",
    )
    max_retry_time: float = setting(
        seconds(allow_zero=True),
        DEFAULT_MAX_RETRY_TIME,
        env="HUMANLOOP_FEEDBACK_MAX_RETRY_TIME",
        doc="how long one batch is retried before it is given up on (`0`: no retries)",
    )
    exit_timeout: float = setting(
        seconds(allow_zero=True),
        DEFAULT_EXIT_TIMEOUT,
        env="HUMANLOOP_FEEDBACK_EXIT_TIMEOUT",
        doc="total time `close()` and the exit hook spend draining",
    )
    default_user: Optional[str] = setting(
        TEXT,
        None,
        env="HUMANLOOP_FEEDBACK_USER",
        doc="`user` for records that do not name one",
    )
    blocking: bool = setting(
        FLAG,
        False,
        env="HUMANLOOP_FEEDBACK_BLOCKING",
        doc="send on the caller's thread (scripts, serverless); see below",
    )
    allow_insecure_http: bool = setting(
        FLAG,
        False,
        env="HUMANLOOP_ALLOW_INSECURE_HTTP",
        doc="allow `http://` to a host that is not loopback",
    )
    spool_path: Optional[str] = setting(
        PATH,
        None,
        env="HUMANLOOP_FEEDBACK_SPOOL_PATH",
        doc="SQLite file that keeps feedback across crashes, restarts and outages; off by default",
    )
    max_spool_bytes: int = setting(
        whole(MIN_SPOOL_BYTES, bytes_=True),
        DEFAULT_MAX_SPOOL_BYTES,
        env="HUMANLOOP_FEEDBACK_MAX_SPOOL_BYTES",
        doc="the spool's size limit; past it the oldest records are dropped and counted",
    )
    spool_max_age: float = setting(
        seconds(allow_zero=False),
        DEFAULT_SPOOL_MAX_AGE,
        env="HUMANLOOP_FEEDBACK_SPOOL_MAX_AGE",
        doc="records older than this are given up on, counted failed",
    )
    on_error: Optional[ErrorCallback] = setting(  # noqa: RUF009 (a field(), made once)
        CALLBACK,
        None,
        env=None,
        doc="`callable(HumanloopLoggingError)`, called for every record refused, rejected or "
        "given up on",
        repr=False,
        compare=False,
    )
    before_send: Optional[BeforeSend] = setting(  # noqa: RUF009 (a field(), made once)
        CALLBACK,
        None,
        env=None,
        doc="`callable(dict) -> dict or None`, run on the flush thread before a record is "
        "validated: return it changed, or None to drop it (counted `filtered`)",
        repr=False,
        compare=False,
    )

    @property
    def feedback_url(self) -> str:
        return f"{self.base_url}/feedback"


class SettingsArgs(TypedDict, total=False):
    """The keyword-only settings, for ``**settings: Unpack[SettingsArgs]``; None means unset.

    Type checkers cannot derive this from :class:`Settings`, so it repeats the names and types;
    tests/test_config.py holds it to the declaration.
    """

    enabled: Optional[bool]
    name: Optional[str]
    batch_size: Optional[int]
    max_in_flight: Optional[int]
    flush_interval: Optional[float]
    max_queue_size: Optional[int]
    timeout: Optional[float]
    max_retry_time: Optional[float]
    exit_timeout: Optional[float]
    default_user: Optional[str]
    blocking: Optional[bool]
    allow_insecure_http: Optional[bool]
    spool_path: Optional[Union[str, os.PathLike[str]]]
    max_spool_bytes: Optional[int]
    spool_max_age: Optional[float]
    on_error: Optional[ErrorCallback]
    before_send: Optional[BeforeSend]


def _declared(field: dataclasses.Field[Any]) -> Declared:
    env, rule, doc = field.metadata[_SPEC]
    required = field.default is dataclasses.MISSING
    return Declared(field.name, None if required else field.default, required, env, rule, doc)


#: Every setting, in declaration order (the order of signatures and of the settings table).
SETTINGS = tuple(_declared(field) for field in dataclasses.fields(Settings))
NAMES = tuple(declared.name for declared in SETTINGS)
_BY_NAME = {declared.name: declared for declared in SETTINGS}
#: The settings constructors take as ``**settings``.
KEYWORDS = tuple(name for name in NAMES if name not in POSITIONAL)
ENV = {declared.name: declared.env for declared in SETTINGS if declared.env}


# -- resolving -------------------------------------------------------------------------------------


def refuse_unknown(owner: Callable[..., object], given: Mapping[str, object]) -> None:
    """Refuse keywords no setting declares, as Python refuses a name a signature lacks.

    ``**settings`` would otherwise swallow a misspelt setting silently; the closest known name
    (settings and ``owner``'s own parameters) is suggested.
    """
    unknown = sorted(given.keys() - set(KEYWORDS))
    if not unknown:
        return
    known = [*NAMES, *inspect.signature(owner).parameters]
    problems = []
    for name in unknown:
        # Same words in another order first (spool_max_bytes), then spelling (batchsize).
        words = sorted(name.lower().split("_"))
        close = [k for k in known if sorted(k.split("_")) == words]
        close = close or difflib.get_close_matches(name, known, n=1)
        problems.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    what = "unexpected keyword arguments" if len(unknown) > 1 else "an unexpected keyword argument"
    qualname = getattr(owner, "__qualname__", repr(owner))
    raise TypeError(f"{qualname}() got {what} {', '.join(problems)}")


def _resolve_one(declared: Declared, given: object, environ: Mapping[str, str]) -> object:
    """Argument, else environment variable, else default; checked by the setting's rule."""
    value, source = given, ""
    if value is None and declared.env is not None:
        raw = environ.get(declared.env, "").strip()
        if raw:
            value, source = declared.rule.parse(raw), declared.env
    name = declared.name
    if value is None:
        if declared.required:
            where = f" or set {declared.env}" if declared.env else ""
            raise ConfigurationError(f"no {name}: pass {name}={where}{declared.rule.hint}")
        return declared.default
    try:
        return declared.rule.check(value)
    except ValueError as exc:
        raise ConfigurationError(
            f"{name} {exc}" + (f" (from {source})" if source else "")
        ) from None


def resolve(
    api_key: Optional[str] = None,
    base_url: Optional[str] = None,
    *,
    environ: Optional[Mapping[str, str]] = None,
    **given: Unpack[SettingsArgs],
) -> Settings:
    """Build validated settings; every problem is a ConfigurationError naming the setting (and
    the environment variable, for a value read from one). Unknown keywords are a TypeError."""
    refuse_unknown(resolve, given)
    env = os.environ if environ is None else environ
    arguments = {"api_key": api_key, "base_url": base_url, **given}
    values: dict[str, Any] = {
        declared.name: _resolve_one(declared, arguments.get(declared.name), env)
        for declared in SETTINGS
        if declared.name != "api_key"
    }
    key = _BY_NAME["api_key"]
    if values["enabled"] or arguments["api_key"] is not None or env.get(key.env or "", "").strip():
        values["api_key"] = _resolve_one(key, arguments["api_key"], env)
    else:
        values["api_key"] = ""  # nothing is sent, so no key is needed
    settings = Settings(**values)
    url = urlsplit(settings.base_url)
    host = url.hostname or ""
    if url.scheme == "http" and not settings.allow_insecure_http and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to send the API key over plain http:// to {host}; use https://, or pass "
            f"allow_insecure_http=True ({ENV['allow_insecure_http']}=1) if you mean it"
        )
    return settings


# -- what is derived from the declaration ----------------------------------------------------------


def takes_settings(init: F) -> F:
    """Show a constructor's ``**settings`` as the declared keywords at run time.

    ``help()``, ``inspect.signature`` and editors that read signatures at run time then list
    every setting; type checkers read ``Unpack[SettingsArgs]`` instead.
    """
    signature = inspect.signature(init)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    annotations = SettingsArgs.__annotations__
    settings = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=getattr(annotations[name], "__forward_arg__", annotations[name]),
        )
        for name in KEYWORDS
    ]
    keyword_only = [p for p in own if p.kind is p.KEYWORD_ONLY]
    before = [p for p in own if p.kind is not p.KEYWORD_ONLY]
    shown = signature.replace(parameters=[*before, *settings, *keyword_only])
    init.__signature__ = shown  # type: ignore[attr-defined]
    return init


def settings_table() -> str:
    """The settings table of docs/settings.md, as the declaration says it (its ``settings-table``
    directive renders this when the documentation is built)."""
    lines = [
        "| setting | default | environment variable | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for declared in SETTINGS:
        default = (
            declared.rule.show(declared.default)
            if declared.required or declared.default is not None
            else "none"
        )
        env = f" `{declared.env}` " if declared.env else " "
        lines.append(f"| `{declared.name}` | {default} |{env}| {declared.doc} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
