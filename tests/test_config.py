"""Settings: argument, then environment variable, then default; every bad value refused by name."""

from __future__ import annotations

import gc
import inspect
import itertools
import logging
import math
import os
import pathlib
import typing
from collections.abc import Iterator
from itertools import takewhile
from typing import Any, Optional, Union

import pytest
from support import flush_threads, hand_over

from humanloop_logging import (
    ConfigurationError,
    FeedbackHandler,
    FeedbackProcessor,
    FeedbackShipper,
    FeedbackSink,
    FeedbackValidationError,
    UnprocessableEntityError,
)
from humanloop_logging._config import (
    ENV,
    KEYWORDS,
    NAMES,
    POSITIONAL,
    SETTINGS,
    Settings,
    SettingsArgs,
    resolve,
    settings_table,
)
from humanloop_logging.shipper import SETTING_NAMES
from humanloop_logging.testing import FakeHumanloop

pytestmark = pytest.mark.timeout(30)

SECRET = "hl-SECRET-51d0c2aa9e"
ROOT = pathlib.Path(__file__).resolve().parents[1]

_names = itertools.count()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HUMANLOOP_* variable from the outside leaks into a test."""
    for name in list(os.environ):
        if name.startswith("HUMANLOOP_"):
            monkeypatch.delenv(name)


class Shippers:
    """Builds shippers and closes every one at teardown."""

    def __init__(self) -> None:
        self.made: list[FeedbackShipper] = []

    def __call__(self, **settings: Any) -> FeedbackShipper:
        shipper = FeedbackShipper(**settings)
        self.made.append(shipper)
        return shipper


@pytest.fixture
def shippers() -> Iterator[Shippers]:
    made = Shippers()
    yield made
    for shipper in made.made:
        shipper.close(timeout=1.0)


# -- fallbacks -----------------------------------------------------------------------------------


def test_api_key_and_base_url_come_from_the_environment(
    fake_humanloop: FakeHumanloop, monkeypatch: pytest.MonkeyPatch, shippers: Shippers
) -> None:
    """HUMANLOOP_API_KEY and HUMANLOOP_BASE_URL are used when no argument is given."""
    monkeypatch.setenv("HUMANLOOP_API_KEY", fake_humanloop.api_key)
    monkeypatch.setenv("HUMANLOOP_BASE_URL", fake_humanloop.base_url)
    shipper = shippers(flush_interval=60.0)

    hand_over(shipper, "dp-1")

    assert shipper.flush(5.0)
    assert [r.status for r in fake_humanloop.requests] == [200]
    assert fake_humanloop.requests[0].headers["x-api-key"] == fake_humanloop.api_key


def test_arguments_beat_the_environment(
    fake_humanloop: FakeHumanloop, monkeypatch: pytest.MonkeyPatch, shippers: Shippers
) -> None:
    """api_key= and base_url= win over HUMANLOOP_API_KEY and HUMANLOOP_BASE_URL."""
    monkeypatch.setenv("HUMANLOOP_API_KEY", "hl-from-env")
    monkeypatch.setenv("HUMANLOOP_BASE_URL", "https://unused.invalid/v4")
    shipper = shippers(
        api_key=fake_humanloop.api_key, base_url=fake_humanloop.base_url, flush_interval=60.0
    )

    hand_over(shipper, "dp-1")

    assert shipper.flush(5.0)
    assert [r.status for r in fake_humanloop.requests] == [200]


def test_default_base_url(shippers: Shippers) -> None:
    """Without argument or HUMANLOOP_BASE_URL the base URL is https://api.humanloop.com/v4."""
    shipper = shippers(api_key="hl-key")
    assert shipper.settings.base_url == "https://api.humanloop.com/v4"


def test_trailing_slash_on_base_url_still_reaches_feedback(
    fake_humanloop: FakeHumanloop, shippers: Shippers
) -> None:
    """A base_url ending in / posts to .../v4/feedback, not .../v4//feedback."""
    shipper = shippers(
        api_key=fake_humanloop.api_key,
        base_url=fake_humanloop.base_url + "/",
        flush_interval=60.0,
    )
    hand_over(shipper, "dp-1")

    assert shipper.flush(5.0)
    assert [(r.path, r.status) for r in fake_humanloop.requests] == [("/v4/feedback", 200)]


ENV_SETTINGS: list[tuple[str, str, str, Any]] = [
    ("HUMANLOOP_FEEDBACK_BATCH_SIZE", "7", "batch_size", 7),
    ("HUMANLOOP_FEEDBACK_BATCH_SIZE", " 7 ", "batch_size", 7),
    ("HUMANLOOP_FEEDBACK_MAX_IN_FLIGHT", "2", "max_in_flight", 2),
    ("HUMANLOOP_FEEDBACK_FLUSH_INTERVAL", "2.5", "flush_interval", 2.5),
    ("HUMANLOOP_FEEDBACK_MAX_QUEUE_SIZE", "50", "max_queue_size", 50),
    ("HUMANLOOP_FEEDBACK_TIMEOUT", "3", "timeout", 3.0),
    ("HUMANLOOP_FEEDBACK_MAX_RETRY_TIME", "0", "max_retry_time", 0.0),
    ("HUMANLOOP_FEEDBACK_EXIT_TIMEOUT", "1.5", "exit_timeout", 1.5),
    ("HUMANLOOP_FEEDBACK_USER", "svc", "default_user", "svc"),
    ("HUMANLOOP_FEEDBACK_ENABLED", "off", "enabled", False),
    ("HUMANLOOP_FEEDBACK_ENABLED", "yes", "enabled", True),
    ("HUMANLOOP_FEEDBACK_NAME", " api ", "name", "api"),
    ("HUMANLOOP_FEEDBACK_BLOCKING", "true", "blocking", True),
    ("HUMANLOOP_FEEDBACK_BLOCKING", "0", "blocking", False),
    ("HUMANLOOP_ALLOW_INSECURE_HTTP", "1", "allow_insecure_http", True),
    ("HUMANLOOP_FEEDBACK_MAX_SPOOL_BYTES", "65536", "max_spool_bytes", 65536),
    ("HUMANLOOP_FEEDBACK_SPOOL_MAX_AGE", "3600", "spool_max_age", 3600.0),
]


@pytest.mark.parametrize("case", ENV_SETTINGS, ids=[f"{c[0]}={c[1]!r}" for c in ENV_SETTINGS])
def test_settings_fall_back_to_their_environment_variables(
    monkeypatch: pytest.MonkeyPatch, shippers: Shippers, case: tuple[str, str, str, Any]
) -> None:
    """Each HUMANLOOP_FEEDBACK_* variable sets its setting, parsed to the right type."""
    variable, raw, attribute, expected = case
    monkeypatch.setenv(variable, raw)
    shipper = shippers(api_key="hl-key")

    value = getattr(shipper.settings, attribute)
    assert value == expected
    assert type(value) is type(expected)


def test_argument_beats_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch, shippers: Shippers
) -> None:
    """An argument wins over its HUMANLOOP_FEEDBACK_* variable."""
    monkeypatch.setenv("HUMANLOOP_FEEDBACK_BATCH_SIZE", "7")
    monkeypatch.setenv("HUMANLOOP_FEEDBACK_USER", "env-user")
    shipper = shippers(api_key="hl-key", batch_size=3, default_user="arg-user")
    assert (shipper.settings.batch_size, shipper.settings.default_user) == (3, "arg-user")


def test_batch_size_from_the_environment_shapes_the_requests(
    fake_humanloop: FakeHumanloop, monkeypatch: pytest.MonkeyPatch, shippers: Shippers
) -> None:
    """HUMANLOOP_FEEDBACK_BATCH_SIZE=2 makes full batches of two go without flush()."""
    monkeypatch.setenv("HUMANLOOP_FEEDBACK_BATCH_SIZE", "2")
    monkeypatch.setenv("HUMANLOOP_FEEDBACK_FLUSH_INTERVAL", "60")
    shipper = shippers(api_key=fake_humanloop.api_key, base_url=fake_humanloop.base_url)
    for index in range(2):
        hand_over(shipper, f"dp-{index}")
    assert fake_humanloop.wait_for_items(2, timeout=5.0)
    for index in range(2, 4):
        hand_over(shipper, f"dp-{index}")

    assert fake_humanloop.wait_for_items(4, timeout=5.0)
    assert [r.item_count for r in fake_humanloop.requests] == [2, 2]


def test_blocking_from_the_environment_sends_on_the_callers_thread(
    fake_humanloop: FakeHumanloop, monkeypatch: pytest.MonkeyPatch, shippers: Shippers
) -> None:
    """HUMANLOOP_FEEDBACK_BLOCKING=1: the record is at the server when the call returns."""
    monkeypatch.setenv("HUMANLOOP_FEEDBACK_BLOCKING", "1")
    shipper = shippers(api_key=fake_humanloop.api_key, base_url=fake_humanloop.base_url)

    hand_over(shipper, "dp-1")

    assert len(fake_humanloop.received) == 1


# -- refusals ------------------------------------------------------------------------------------


def test_missing_api_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """No api_key and no HUMANLOOP_API_KEY: a ConfigurationError that says where to set it."""
    with pytest.raises(ConfigurationError, match="HUMANLOOP_API_KEY"):
        FeedbackShipper()
    monkeypatch.setenv("HUMANLOOP_API_KEY", "   ")
    with pytest.raises(ConfigurationError, match="HUMANLOOP_API_KEY"):
        FeedbackShipper()


@pytest.mark.parametrize(
    ("variable", "raw", "setting"),
    [
        ("HUMANLOOP_FEEDBACK_BATCH_SIZE", "many", "batch_size"),
        ("HUMANLOOP_FEEDBACK_BATCH_SIZE", "1.5", "batch_size"),
        ("HUMANLOOP_FEEDBACK_BATCH_SIZE", "0", "batch_size"),
        ("HUMANLOOP_FEEDBACK_MAX_QUEUE_SIZE", "-5", "max_queue_size"),
        ("HUMANLOOP_FEEDBACK_FLUSH_INTERVAL", "soon", "flush_interval"),
        ("HUMANLOOP_FEEDBACK_FLUSH_INTERVAL", "0", "flush_interval"),
        ("HUMANLOOP_FEEDBACK_FLUSH_INTERVAL", "nan", "flush_interval"),
        ("HUMANLOOP_FEEDBACK_TIMEOUT", "inf", "timeout"),
        ("HUMANLOOP_FEEDBACK_TIMEOUT", "-1", "timeout"),
        ("HUMANLOOP_FEEDBACK_MAX_RETRY_TIME", "-1", "max_retry_time"),
        ("HUMANLOOP_FEEDBACK_EXIT_TIMEOUT", "forever", "exit_timeout"),
        ("HUMANLOOP_FEEDBACK_BLOCKING", "maybe", "blocking"),
        ("HUMANLOOP_FEEDBACK_ENABLED", "perhaps", "enabled"),
        ("HUMANLOOP_ALLOW_INSECURE_HTTP", "sure", "allow_insecure_http"),
        ("HUMANLOOP_BASE_URL", "ftp://api.humanloop.com/v4", "base_url"),
        ("HUMANLOOP_FEEDBACK_MAX_SPOOL_BYTES", "lots", "max_spool_bytes"),
        ("HUMANLOOP_FEEDBACK_MAX_SPOOL_BYTES", "65535", "max_spool_bytes"),
        ("HUMANLOOP_FEEDBACK_MAX_SPOOL_BYTES", "1e8", "max_spool_bytes"),
        ("HUMANLOOP_FEEDBACK_SPOOL_MAX_AGE", "0", "spool_max_age"),
        ("HUMANLOOP_FEEDBACK_SPOOL_MAX_AGE", "inf", "spool_max_age"),
        ("HUMANLOOP_FEEDBACK_SPOOL_MAX_AGE", "a week", "spool_max_age"),
    ],
)
def test_bad_environment_value_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, setting: str
) -> None:
    """A bad HUMANLOOP_* value is a ConfigurationError (a ValueError) naming the setting and the
    variable it came from."""
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ConfigurationError) as caught:
        FeedbackShipper(api_key="hl-key")
    assert isinstance(caught.value, ValueError)
    assert setting in str(caught.value)
    assert variable in str(caught.value)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("batch_size", 0),
        ("batch_size", -1),
        ("batch_size", 1.5),
        ("batch_size", True),
        ("batch_size", "10"),
        ("max_queue_size", 0),
        ("flush_interval", 0),
        ("flush_interval", -1.0),
        ("flush_interval", math.nan),
        ("flush_interval", math.inf),
        ("flush_interval", "1"),
        ("timeout", 0),
        ("timeout", math.inf),
        ("max_retry_time", -0.1),
        ("max_retry_time", math.nan),
        ("exit_timeout", -1),
        ("exit_timeout", math.inf),
        ("default_user", 5),
        ("blocking", "no"),
        ("spool_path", ""),
        ("spool_path", "   "),
        ("spool_path", 5),
        ("spool_path", b"/tmp/spool.db"),
        ("max_spool_bytes", 65_535),
        ("max_spool_bytes", 2.0**20),
        ("max_spool_bytes", True),
        ("max_spool_bytes", "104857600"),
        ("spool_max_age", 0),
        ("spool_max_age", -1.0),
        ("spool_max_age", math.inf),
        ("spool_max_age", math.nan),
        ("on_error", "print"),
    ],
)
def test_bad_argument_is_refused_by_name(setting: str, value: Any) -> None:
    """A bad argument is a ConfigurationError (a ValueError) whose message names the setting."""
    with pytest.raises(ConfigurationError) as caught:
        FeedbackShipper(api_key="hl-key", **{setting: value})
    assert isinstance(caught.value, ValueError)
    assert setting in str(caught.value)


@pytest.mark.parametrize(
    "base_url",
    [
        "api.humanloop.com/v4",
        "ftp://api.humanloop.com/v4",
        "https://api.humanloop.com/v4?x=1",
        "https://api.humanloop.com/v4#top",
        "https://user:pass@api.humanloop.com/v4",
        "https:///v4",
    ],
)
def test_bad_base_url_is_refused(base_url: str) -> None:
    """A base_url that is not a plain http(s) URL is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        FeedbackShipper(api_key="hl-key", base_url=base_url)


@pytest.mark.parametrize(
    "adapter", [FeedbackHandler, FeedbackProcessor, FeedbackSink, FeedbackShipper]
)
def test_swapped_key_and_url_are_refused_without_showing_the_key(adapter: Any) -> None:
    """FeedbackHandler(url, key), positional arguments in the wrong order: a clear error that
    does not repeat the key, whichever argument is checked first."""
    key = "hl_sk_0123456789abcdef"
    with pytest.raises(ConfigurationError) as raised:
        adapter("https://api.humanloop.com/v4", key)
    assert key not in str(raised.value)
    assert "base_url" in str(raised.value)
    with pytest.raises(ConfigurationError) as raised:
        adapter(key, key)  # the key given twice: still never echoed as a bad URL
    assert key not in str(raised.value)


@pytest.mark.parametrize("source", ["argument", "environment"])
def test_a_key_no_http_header_can_carry_is_refused_without_showing_it(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key with characters beyond Latin-1 can never be sent as a header: it is refused at
    construction, not reported at the first send in an error that repeats it."""
    key = "hl-ключ-0123"
    given: dict[str, Any] = {"api_key": key}
    if source == "environment":
        monkeypatch.setenv("HUMANLOOP_API_KEY", key)
        given = {}
    with pytest.raises(ConfigurationError) as raised:
        FeedbackShipper(**given)
    chain = [raised.value, raised.value.__cause__, raised.value.__context__]
    said = " ".join(f"{error!r} {error.args!r}" for error in chain if error is not None)
    assert "ключ" not in said
    assert "api_key" in said
    assert ("HUMANLOOP_API_KEY" in said) is (source == "environment")


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.example.com/v4",
        "HTTP://api.example.com/v4",
        "http://10.1.2.3/v4",
        "http://[2001:db8::1]/v4",
    ],
)
def test_plain_http_to_a_remote_host_is_refused(
    base_url: str, monkeypatch: pytest.MonkeyPatch, shippers: Shippers
) -> None:
    """http:// to a non-loopback host is refused unless allow_insecure_http is set."""
    with pytest.raises(ConfigurationError) as caught:
        FeedbackShipper(api_key=SECRET, base_url=base_url)
    assert SECRET not in str(caught.value)

    assert shippers(api_key="k", base_url=base_url, allow_insecure_http=True).settings.base_url
    monkeypatch.setenv("HUMANLOOP_ALLOW_INSECURE_HTTP", "1")
    assert shippers(api_key="k", base_url=base_url).settings.base_url == base_url


@pytest.mark.parametrize("flag", ["false", "0", 0], ids=["str-false", "str-0", "int-0"])
def test_only_a_real_true_allows_plain_http(flag: Any) -> None:
    """allow_insecure_http="false" (a string, from some config file) must not open plain http."""
    with pytest.raises(ConfigurationError) as caught:
        FeedbackShipper(
            api_key=SECRET, base_url="http://api.example.com/v4", allow_insecure_http=flag
        )
    assert "allow_insecure_http" in str(caught.value) or "http://" in str(caught.value)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:9/v4",
        "http://127.8.9.10/v4",
        "http://localhost:9/v4",
        "http://LOCALHOST/v4",
        "http://[::1]:9/v4",
    ],
)
def test_plain_http_to_loopback_is_allowed(base_url: str, shippers: Shippers) -> None:
    """http:// to a loopback address needs no opt-in."""
    assert shippers(api_key="k", base_url=base_url).settings.allow_insecure_http is False


@pytest.mark.parametrize("adapter", [FeedbackHandler, FeedbackProcessor, FeedbackSink])
@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("api_key", "hl-other"),
        ("batch_size", 5),
        ("flush_interval", 1.0),
        ("on_error", print),
        ("blocking", False),
        ("default_user", "svc"),
    ],
)
def test_shipper_and_settings_are_exclusive(
    shippers: Shippers, adapter: Any, setting: str, value: Any
) -> None:
    """An adapter given a shipper refuses settings too, naming them, instead of ignoring them."""
    shipper = shippers(api_key="hl-key")
    with pytest.raises(ConfigurationError) as caught:
        adapter(shipper=shipper, **{setting: value})
    assert setting in str(caught.value)


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "feedback_type"},
        {"type": ""},
        {"type": 5},
        {"type": "data_id"},
        {"value": "user"},
    ],
)
def test_bad_fields_are_refused(fields: Any) -> None:
    """fields= with an unknown field, an empty or non-string name, or a clash is refused."""
    with pytest.raises(ConfigurationError):
        FeedbackHandler(api_key="hl-key", fields=fields)


def test_a_refused_handler_leaves_no_thread_behind() -> None:
    """A handler refused at construction (bad fields) does not leave a flush thread running."""
    before = flush_threads()
    with pytest.raises(ConfigurationError):
        FeedbackHandler(api_key="hl-key", fields={"kind": "x"})
    gc.collect()

    for thread in flush_threads(before):
        thread.join(2.0)
    assert flush_threads(before) == []


# -- the public signatures ------------------------------------------------------------------------

SHARED = [
    "batch_size",
    "flush_interval",
    "max_queue_size",
    "timeout",
    "max_retry_time",
    "exit_timeout",
    "on_error",
    "shipper",
    "default_user",
    "blocking",
    "allow_insecure_http",
    "fields",
]


#: Each constructor's own keywords, after the settings.
OWN = {
    FeedbackHandler: ["shipper", "fields", "level"],
    FeedbackProcessor: ["shipper", "fields", "drop"],
    FeedbackSink: ["shipper", "fields"],
    FeedbackShipper: ["transport"],
}


@pytest.mark.parametrize("owner", list(OWN), ids=lambda owner: owner.__name__)
def test_adapter_signatures(owner: Any) -> None:
    """api_key and base_url may be positional; every other setting is keyword-only, None by
    default, in declaration order, then the constructor's own keywords."""
    own = OWN[owner]
    parameters = list(inspect.signature(owner).parameters.values())
    names = [p.name for p in parameters]
    assert names == [*POSITIONAL, *KEYWORDS, *own]
    assert POSITIONAL == ("api_key", "base_url")
    assert set(SHARED) - {"shipper", "fields"} <= set(KEYWORDS)
    kinds = {p.name: p.kind for p in parameters}
    assert kinds["api_key"] is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert kinds["base_url"] is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(kinds[name] is inspect.Parameter.KEYWORD_ONLY for name in [*KEYWORDS, *own])
    defaults = {p.name: p.default for p in parameters}
    assert all(defaults[name] is None for name in [*POSITIONAL, *KEYWORDS, *own[:-1]])
    assert defaults[own[-1]] in (logging.NOTSET, False, None)


@pytest.mark.parametrize("owner", list(OWN), ids=lambda owner: owner.__name__)
def test_settings_reach_constructors_as_typed_keywords(owner: Any) -> None:
    """In the source each constructor takes ``**settings: Unpack[SettingsArgs]``, which type
    checkers read; the run-time signature shows the same names with SettingsArgs' types."""
    init = owner.__init__
    assert init.__code__.co_flags & inspect.CO_VARKEYWORDS
    assert list(init.__annotations__.values()).count("Unpack[SettingsArgs]") == 1
    assert init.__annotations__["api_key"] == init.__annotations__["base_url"] == "Optional[str]"
    shown = inspect.signature(owner).parameters
    for name in KEYWORDS:
        assert shown[name].annotation == SettingsArgs.__annotations__[name].__forward_arg__


def _members(hint: Any) -> set[Any]:
    """The types a hint allows: a Union's members, or the hint itself."""
    return set(typing.get_args(hint)) if typing.get_origin(hint) is Union else {hint}


def test_settings_args_match_the_declaration() -> None:
    """SettingsArgs repeats, in order, exactly the declared keyword settings, each typed as
    Optional of its Settings field's type (widened by what its rule also accepts)."""
    arguments = typing.get_type_hints(SettingsArgs)
    declared = typing.get_type_hints(Settings)
    assert list(arguments) == list(KEYWORDS)
    assert [s.name for s in SETTINGS] == list(NAMES) == list(declared)
    assert declared["api_key"] is declared["base_url"] is str
    for setting in SETTINGS:
        if setting.name in KEYWORDS:
            expected = {*_members(declared[setting.name]), *setting.rule.accepts, type(None)}
            assert _members(arguments[setting.name]) == expected, setting.name


def test_setting_names_derive_from_the_declaration() -> None:
    """shipper.SETTING_NAMES and ENV are read off the declaration, one variable per setting."""
    assert tuple(SETTING_NAMES) == NAMES
    assert set(SHARED) - {"shipper", "fields"} <= set(NAMES)
    assert {s.name: s.env for s in SETTINGS if s.env is not None} == ENV
    assert len(set(ENV.values())) == len(ENV)
    assert all(variable.startswith("HUMANLOOP_") for variable in ENV.values())
    assert set(NAMES) - set(ENV) == {"on_error", "before_send"}  # callables


def test_every_environment_variable_is_tested() -> None:
    """Each declared variable has a case in ENV_SETTINGS or a test of its own here."""
    own_tests = {"HUMANLOOP_API_KEY", "HUMANLOOP_BASE_URL", "HUMANLOOP_FEEDBACK_SPOOL_PATH"}
    assert {case[0] for case in ENV_SETTINGS} | own_tests == set(ENV.values())


def test_defaults_are_the_declared_ones() -> None:
    """With no argument and no variable, resolve() gives each declared default, which its own
    rule accepts unchanged."""
    settings = resolve(api_key="hl-key", environ={})
    for setting in SETTINGS:
        if setting.required:
            continue
        value = getattr(settings, setting.name)
        assert value == setting.default, setting.name
        assert type(value) is type(setting.default), setting.name
        if setting.default is not None:
            assert setting.rule.check(setting.default) == setting.default


def test_the_settings_page_shows_the_declaration() -> None:
    """docs/settings.md renders the settings table from the declaration (the ``settings-table``
    directive, which writes ``settings_table()``'s rows at build time) instead of keeping a copy;
    its table of the constructors' other arguments names every argument that is no setting
    (``level``, the stdlib handler's own, aside)."""
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert "```{settings-table}\n```" in page
    assert settings_table().splitlines()[2] not in page, "the page copies a generated row"
    lines = page.splitlines()
    header = lines.index("| argument | default | meaning |")
    rows = list(takewhile(lambda line: line.startswith("|"), lines[header + 2 :]))
    rest = {row.split("|")[1].strip().strip("`") for row in rows}
    arguments = {name for owner in OWN for name in inspect.signature(owner).parameters}
    others = arguments - set(NAMES) - {"self", "level"}
    assert rest == others


# -- unknown keywords ------------------------------------------------------------------------------


@pytest.mark.parametrize("owner", list(OWN), ids=lambda owner: owner.__name__)
@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("batchsize", "batch_size"),
        ("flush_intervall", "flush_interval"),
        ("onerror", "on_error"),
        ("spool_max_bytes", "max_spool_bytes"),
        ("max_spool_size", "max_spool_bytes"),
        ("spool", "spool_path"),
        ("colour", None),
    ],
)
def test_an_unknown_keyword_is_refused_with_the_closest_name(
    owner: Any, typo: str, meant: Optional[str]
) -> None:
    """A misspelt setting is a TypeError naming the constructor and the word, suggesting the
    declared name it is closest to, never silently ignored."""
    with pytest.raises(TypeError) as caught:
        owner(api_key="hl-key", **{typo: 5})
    message = str(caught.value)
    assert message.startswith(f"{owner.__name__}() got an unexpected keyword argument {typo!r}")
    if meant is None:
        assert "did you mean" not in message
    else:
        assert message.endswith(f"(did you mean {meant!r}?)")


@pytest.mark.parametrize("adapter", [FeedbackHandler, FeedbackProcessor, FeedbackSink])
def test_an_unknown_keyword_suggests_the_adapters_own_arguments(
    adapter: Any, shippers: Shippers
) -> None:
    """A misspelt adapter argument (shiper=) is suggested too, and a typo beside shipper= is
    refused as a typo, not as a setting clashing with the shipper."""
    with pytest.raises(TypeError, match=r"'shiper' \(did you mean 'shipper'\?\)"):
        adapter(shiper=shippers(api_key="hl-key"))
    with pytest.raises(TypeError, match=r"'flushinterval' \(did you mean 'flush_interval'\?\)"):
        adapter(shipper=shippers(api_key="hl-key"), flushinterval=1.0)


def test_resolve_refuses_unknown_keywords_too() -> None:
    """resolve(), the one place values are read, refuses names no setting declares."""
    with pytest.raises(TypeError, match=r"resolve\(\) got .* 'batchsize' \(did you mean"):
        resolve(api_key="hl-key", batchsize=3)  # type: ignore[call-arg]


# -- the spool's settings --------------------------------------------------------------------------


def test_spool_is_off_by_default_and_bounded_when_on() -> None:
    """No spool_path: no spool; its limits default to 100 MiB and 7 days."""
    settings = resolve(api_key="hl-key", environ={})
    assert settings.spool_path is None
    assert settings.max_spool_bytes == 100 * 2**20 == 104_857_600
    assert settings.spool_max_age == 7 * 24 * 3600.0
    assert type(settings.spool_max_age) is float


def test_spool_path_from_the_environment_expands_home() -> None:
    """HUMANLOOP_FEEDBACK_SPOOL_PATH=~/... is read, ~ expanded; blank means no spool."""
    environ = {"HUMANLOOP_FEEDBACK_SPOOL_PATH": " ~/hl-spool.db "}
    settings = resolve(api_key="hl-key", environ=environ)
    assert settings.spool_path == os.path.join(os.path.expanduser("~"), "hl-spool.db")
    blank = {"HUMANLOOP_FEEDBACK_SPOOL_PATH": "   "}
    assert resolve(api_key="hl-key", environ=blank).spool_path is None


def test_spool_path_argument_beats_the_environment_and_is_made_absolute(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spool_path= (a str or a Path) wins over the variable, and is kept as an absolute str so
    that a later chdir does not move the spool."""
    environ = {"HUMANLOOP_FEEDBACK_SPOOL_PATH": "/elsewhere/spool.db"}
    given = resolve(api_key="hl-key", spool_path=tmp_path / "spool.db", environ=environ)
    assert given.spool_path == str(tmp_path / "spool.db")
    monkeypatch.chdir(tmp_path)
    relative = resolve(api_key="hl-key", spool_path="spool.db", environ={})
    assert relative.spool_path == str(tmp_path / "spool.db")


@pytest.mark.parametrize(
    ("variable", "raw", "attribute", "expected"),
    [
        ("HUMANLOOP_FEEDBACK_MAX_SPOOL_BYTES", "65536", "max_spool_bytes", 65_536),
        ("HUMANLOOP_FEEDBACK_MAX_SPOOL_BYTES", "1_000_000", "max_spool_bytes", 1_000_000),
        ("HUMANLOOP_FEEDBACK_SPOOL_MAX_AGE", "0.5", "spool_max_age", 0.5),
    ],
)
def test_spool_limits_from_the_environment(
    variable: str, raw: str, attribute: str, expected: Any
) -> None:
    """The spool's limits are read from their variables; 64 KiB is the smallest size."""
    settings = resolve(api_key="hl-key", environ={variable: raw})
    value = getattr(settings, attribute)
    assert (value, type(value)) == (expected, type(expected))


def test_too_small_a_spool_names_the_floor() -> None:
    """max_spool_bytes below 64 KiB is refused with the smallest accepted size."""
    with pytest.raises(ConfigurationError, match=r"max_spool_bytes must be .*65536 \(64 KiB\)"):
        resolve(api_key="hl-key", max_spool_bytes=1024, environ={})


# -- the key stays out of sight, even from the environment ----------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("HUMANLOOP_API_KEY", f"https://{SECRET}.example/v4"),
        ("HUMANLOOP_BASE_URL", SECRET),
    ],
)
def test_environment_errors_do_not_echo_what_may_be_the_key(variable: str, raw: str) -> None:
    """A key in HUMANLOOP_BASE_URL, or a URL-like HUMANLOOP_API_KEY, is refused by name without
    repeating the value."""
    environ = {"HUMANLOOP_API_KEY": "hl-key", variable: raw}
    with pytest.raises(ConfigurationError) as caught:
        resolve(environ=environ)
    assert SECRET not in str(caught.value)
    assert variable in str(caught.value)


@pytest.mark.parametrize("owner", [FeedbackHandler, FeedbackProcessor, FeedbackShipper])
def test_flush_takes_a_timeout_defaulting_to_five_seconds(owner: Any) -> None:
    """flush(timeout=5.0) on every public object that queues feedback."""
    parameter = inspect.signature(owner.flush).parameters["timeout"]
    assert parameter.default == 5.0


# -- the key stays out of sight ------------------------------------------------------------------


def test_reprs_hide_the_api_key(fake_humanloop: FakeHumanloop) -> None:
    """repr() of handler, processor, sink, shipper and settings never shows the API key."""
    shipper = FeedbackShipper(api_key=SECRET, base_url=fake_humanloop.base_url)
    handler = FeedbackHandler(api_key=SECRET, base_url=fake_humanloop.base_url)
    processor = FeedbackProcessor(api_key=SECRET, base_url=fake_humanloop.base_url)
    sink = FeedbackSink(api_key=SECRET, base_url=fake_humanloop.base_url)
    try:
        for thing in (shipper, handler, processor, sink, shipper.settings, sink.shipper.settings):
            assert SECRET not in repr(thing)
            assert SECRET not in str(thing)
        assert fake_humanloop.base_url in repr(shipper)
    finally:
        handler.close()
        processor.close()
        sink.close()
        shipper.close()


def test_reported_errors_hide_the_api_key(fake_humanloop: FakeHumanloop) -> None:
    """Validation and 422 errors reported to on_error never carry the key."""
    errors: list[Exception] = []
    shipper = FeedbackShipper(
        api_key=fake_humanloop.api_key,
        base_url=fake_humanloop.base_url,
        flush_interval=60.0,
        on_error=errors.append,
    )
    logger = logging.getLogger(f"tests.config.{next(_names)}")
    logger.propagate = False
    handler = FeedbackHandler(shipper=shipper)
    logger.addHandler(handler)
    try:
        fake_humanloop.reject_data_ids("dp-gone")
        logger.warning("x", extra={"data_id": "dp-gone", "type": "rating", "value": "good"})
        logger.warning("x", extra={"data_id": 5, "type": "rating", "value": "good"})
        assert shipper.flush(5.0)
    finally:
        logger.removeHandler(handler)
        handler.close()
        shipper.close()

    assert {type(error) for error in errors} == {
        UnprocessableEntityError,
        FeedbackValidationError,
    }
    for error in errors:
        text = f"{error} {error!r} {vars(error)!r}"
        assert fake_humanloop.api_key not in text
