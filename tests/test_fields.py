"""``fields=``: which record attributes and event keys carry feedback, when an app's own records
already use ``type`` or ``value`` for something else (docs/settings.md: "When your records already
use `type` or `value`")."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import pytest
import structlog
from structlog.testing import LogCapture
from support import own_logger

from humanloop_logging import (
    ConfigurationError,
    FeedbackHandler,
    FeedbackProcessor,
    FeedbackShipper,
    FeedbackValidationError,
)
from humanloop_logging.testing import ErrorLog, FakeHumanloop

pytestmark = pytest.mark.timeout(30)

ADAPTERS = ("handler", "processor")

#: Every feedback field renamed, as an app might to keep them apart from its own attributes.
ALL_RENAMED = {
    "data_id": "hl_data_id",
    "type": "hl_type",
    "value": "hl_value",
    "user": "hl_user",
    "created_at": "hl_created_at",
    "unset": "hl_unset",
}


class Adapter:
    """A FeedbackHandler on a logger of its own, or a FeedbackProcessor called as structlog does;
    ``log`` passes its keyword arguments as ``extra=`` or as the event dict's keys, and returns
    what went on past the adapter (the record's attributes, or the event dict)."""

    def __init__(self, kind: str, fake: FakeHumanloop, fields: Optional[dict[str, Any]]) -> None:
        self.errors = ErrorLog()
        settings: dict[str, Any] = {
            "api_key": fake.api_key,
            "base_url": fake.base_url,
            "flush_interval": 60.0,
            "on_error": self.errors,
            "fields": fields,
        }
        self.passed: list[dict[str, Any]] = []
        self._close: Callable[[], None]
        if kind == "handler":
            handler = FeedbackHandler(**settings)
            logger = own_logger()
            logger.addHandler(handler)
            logger.addHandler(Passed(self.passed))
            self.shipper = handler.shipper
            self._log: Callable[..., None] = lambda **extra: logger.info("event", extra=extra)

            def close() -> None:
                logger.handlers.clear()
                handler.close()

            self._close = close
        else:
            processor = FeedbackProcessor(**settings)
            self.shipper = processor.shipper

            def log(**keys: Any) -> None:
                self.passed.append(dict(processor(None, "info", {"event": "event", **keys})))

            self._log = log
            self._close = processor.close

    def log(self, **fields: Any) -> dict[str, Any]:
        self._log(**fields)
        return self.passed[-1]

    def close(self) -> None:
        self._close()


class Passed(logging.Handler):
    """Keeps the attributes of every record it handles: what the application's own handlers see."""

    def __init__(self, into: list[dict[str, Any]]) -> None:
        super().__init__()
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(dict(record.__dict__))


@pytest.fixture
def adapters(fake_humanloop: FakeHumanloop) -> Iterator[Callable[..., Adapter]]:
    made: list[Adapter] = []

    def make(kind: str, fields: Optional[dict[str, Any]] = None) -> Adapter:
        adapter = Adapter(kind, fake_humanloop, fields)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


@pytest.fixture
def reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


# -- what is feedback by default -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ADAPTERS)
def test_an_apps_own_type_without_data_id_passes_untouched(
    kind: str, adapters: Callable[..., Adapter], fake_humanloop: FakeHumanloop
) -> None:
    """``type`` (and ``value``) of the app's own, without a data_id, is not feedback: nothing is
    queued, and the record goes on with its attributes as they were."""
    adapter = adapters(kind)
    passed = adapter.log(type="audit", value=3, actor="ana")

    assert adapter.shipper.flush(5.0)
    assert (passed["type"], passed["value"], passed["actor"]) == ("audit", 3, "ana")
    assert adapter.shipper.stats().enqueued == 0
    assert fake_humanloop.requests == []


@pytest.mark.parametrize("kind", ADAPTERS)
def test_with_a_data_id_present_an_apps_own_type_is_taken_as_feedback(
    kind: str, adapters: Callable[..., Adapter], fake_humanloop: FakeHumanloop
) -> None:
    """With the default names, data_id and type together make a record feedback, whatever the app
    meant by them: an "audit" with no value is taken and sent (the API's value is optional), so
    it reaches Humanloop as feedback of type "audit"."""
    adapter = adapters(kind)
    adapter.log(data_id="dp-1", type="audit")

    assert adapter.shipper.flush(5.0)
    stats = adapter.shipper.stats()
    assert (stats.enqueued, stats.rejected, stats.sent) == (1, 0, 1)
    assert adapter.errors.of(FeedbackValidationError) == []
    [item] = fake_humanloop.received
    assert (item["data_id"], item["type"], "value" in item) == ("dp-1", "audit", False)


def test_a_data_id_bound_for_the_request_makes_every_event_with_a_type_feedback(
    fake_humanloop: FakeHumanloop, reset_structlog: None
) -> None:
    """structlog with data_id bound through contextvars: an event that uses ``type`` for itself is
    sent as feedback under the default names, and is not once ``type`` and ``value`` are renamed."""
    sent = []
    for fields in (None, {"type": "feedback_type", "value": "feedback_value"}):
        fake_humanloop.clear()
        capture = LogCapture()
        processor = FeedbackProcessor(
            api_key=fake_humanloop.api_key, base_url=fake_humanloop.base_url, fields=fields
        )
        structlog.configure(
            processors=[structlog.contextvars.merge_contextvars, processor, capture],
            cache_logger_on_first_use=False,
        )
        structlog.contextvars.bind_contextvars(data_id="dp-1")
        structlog.get_logger().info("cache lookup", type="miss", value="answers")
        assert processor.flush(5.0)
        processor.close()
        sent.append([(item["type"], item["value"]) for item in fake_humanloop.received])
        assert [(e["type"], e["value"]) for e in capture.entries] == [("miss", "answers")]
    assert sent == [[("miss", "answers")], []]


# -- renamed ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ADAPTERS)
def test_renamed_type_and_value_leave_the_apps_own_alone(
    kind: str, adapters: Callable[..., Adapter], fake_humanloop: FakeHumanloop
) -> None:
    """fields={"type": "feedback_type", "value": "feedback_value"}: the app's own type and value,
    data_id or not, pass untouched and queue nothing; the renamed ones are feedback."""
    adapter = adapters(kind, {"type": "feedback_type", "value": "feedback_value"})
    own = adapter.log(data_id="dp-1", type="audit", value=3)
    adapter.log(data_id="dp-2", feedback_type="rating", feedback_value="good", type="ui")

    assert adapter.shipper.flush(5.0)
    assert (own["data_id"], own["type"], own["value"]) == ("dp-1", "audit", 3)
    [item] = fake_humanloop.received
    assert (item["data_id"], item["type"], item["value"]) == ("dp-2", "rating", "good")
    assert adapter.shipper.stats().enqueued == 1
    assert adapter.errors.errors == []


@pytest.mark.parametrize("kind", ADAPTERS)
def test_all_six_fields_can_be_renamed(
    kind: str, adapters: Callable[..., Adapter], fake_humanloop: FakeHumanloop
) -> None:
    """Each of data_id, type, value, user, created_at and unset is read from its new name, and the
    default names then mean nothing."""
    adapter = adapters(kind, ALL_RENAMED)
    when = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
    adapter.log(hl_data_id="dp-1", hl_type="rating", hl_value="good", hl_user="ana")
    adapter.log(hl_data_id="dp-2", hl_type="comment", hl_value="ok", hl_created_at=when)
    adapter.log(hl_data_id="dp-3", hl_type="rating", hl_unset=True)
    adapter.log(data_id="dp-4", type="rating", value="good", user="bo", unset=False)

    assert adapter.shipper.flush(5.0)
    by_id = {item["data_id"]: item for item in fake_humanloop.received}
    assert sorted(by_id) == ["dp-1", "dp-2", "dp-3"]
    assert (by_id["dp-1"]["type"], by_id["dp-1"]["value"], by_id["dp-1"]["user"]) == (
        "rating",
        "good",
        "ana",
    )
    assert datetime.fromisoformat(by_id["dp-2"]["created_at"]) == when
    assert (by_id["dp-3"]["unset"], "value" in by_id["dp-3"]) == (True, False)
    assert adapter.errors.errors == []


@pytest.mark.parametrize("kind", ADAPTERS)
def test_two_fields_may_swap_names(
    kind: str, adapters: Callable[..., Adapter], fake_humanloop: FakeHumanloop
) -> None:
    """Renaming a field to another's name is fine when that one is renamed too."""
    adapter = adapters(kind, {"type": "value", "value": "type"})
    adapter.log(data_id="dp-1", value="rating", type="good")

    assert adapter.shipper.flush(5.0)
    [item] = fake_humanloop.received
    assert (item["type"], item["value"]) == ("rating", "good")


def test_a_processor_and_handler_sharing_a_shipper_send_a_renamed_event_once(
    fake_humanloop: FakeHumanloop, reset_structlog: None
) -> None:
    """Given the same mapping, a handler recognises a renamed event the processor already sent on
    its way to stdlib logging, and sends it only once; the app's own type stays its own."""
    fields = {"type": "feedback_type", "value": "feedback_value"}
    shipper = FeedbackShipper(
        api_key=fake_humanloop.api_key, base_url=fake_humanloop.base_url, flush_interval=60.0
    )
    logger = own_logger()
    logger.addHandler(FeedbackHandler(shipper=shipper, fields=fields))
    try:
        structlog.configure(
            processors=[
                FeedbackProcessor(shipper=shipper, fields=fields),
                structlog.stdlib.render_to_log_kwargs,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=False,
        )
        log = structlog.get_logger(logger.name)
        log.info("rated", data_id="dp-1", feedback_type="rating", feedback_value="good")
        log.info("audit", data_id="dp-2", type="login", value="ok")
        assert shipper.flush(5.0)
    finally:
        logger.handlers.clear()
        shipper.close()
    assert [(item["data_id"], item["type"]) for item in fake_humanloop.received] == [
        ("dp-1", "rating")
    ]
    assert shipper.stats().enqueued == 1


# -- bad mappings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ADAPTERS)
@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"kind": "x"}, "'kind' is not a feedback field; the keys of fields are feedback fields"),
        ({"typ": "x"}, "'typ' is not a feedback field (did you mean 'type'?)"),
        ({"type": 5}, "fields['type'] must be a non-empty string naming the attribute"),
        ({"type": ""}, "fields['type'] must be a non-empty string"),
        ({"value": None}, "got None"),
        ({"type": "value"}, "'type' and 'value' would both be read from 'value'"),
        ({"type": "tag", "value": "tag"}, "'type' and 'value' would both be read from 'tag'"),
        ({"data_id": "type"}, "'data_id' and 'type' would both be read from 'type'"),
        ([("type", "feedback_type")], "fields must be a mapping of feedback field"),
        ("feedback_type", "got str"),
    ],
)
def test_a_bad_mapping_is_a_configuration_error_naming_the_fix(
    kind: str, fields: Any, says: str, fake_humanloop: FakeHumanloop
) -> None:
    """An unknown field, a name that is not a non-empty string, two fields read from one name, or
    not a mapping at all: a ConfigurationError at construction that says what to change."""
    adapter = FeedbackHandler if kind == "handler" else FeedbackProcessor
    with pytest.raises(ConfigurationError) as caught:
        adapter(api_key=fake_humanloop.api_key, base_url=fake_humanloop.base_url, fields=fields)
    assert says in str(caught.value)


@pytest.mark.parametrize("name", ["name", "msg", "levelname", "created", "message", "asctime"])
def test_a_handler_refuses_a_name_every_log_record_has(
    name: str, fake_humanloop: FakeHumanloop
) -> None:
    """A LogRecord attribute (which every record has, and extra= cannot set) cannot mark feedback
    for a handler; a structlog event key of that name is the processor's to read."""
    fields = {"type": name}
    with pytest.raises(ConfigurationError) as caught:
        FeedbackHandler(api_key=fake_humanloop.api_key, fields=fields)
    assert f"every LogRecord has a {name!r} attribute of its own" in str(caught.value)
    processor = FeedbackProcessor(
        api_key=fake_humanloop.api_key, base_url=fake_humanloop.base_url, fields=fields
    )
    try:
        processor(None, "info", {"event": "e", "data_id": "dp-1", name: "rating", "value": "ok"})
        assert processor.flush(5.0)
    finally:
        processor.close()
    assert [item["type"] for item in fake_humanloop.received] == ["rating"]


# -- dictConfig ------------------------------------------------------------------------------------


@pytest.fixture
def dictconfig_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.fields.dictconfig")
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def configure(fake: FakeHumanloop, fields: object) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "humanloop": {
                    "()": "humanloop_logging.FeedbackHandler",
                    "api_key": fake.api_key,
                    "base_url": fake.base_url,
                    "fields": fields,
                }
            },
            "loggers": {
                "tests.fields.dictconfig": {
                    "level": "INFO",
                    "handlers": ["humanloop"],
                    "propagate": False,
                }
            },
        }
    )


def test_fields_in_a_dictconfig_handler_entry(
    fake_humanloop: FakeHumanloop, dictconfig_logger: logging.Logger
) -> None:
    """``"fields": {...}`` in a dictConfig handler entry renames as the keyword does."""
    configure(fake_humanloop, {"type": "feedback_type", "value": "feedback_value"})
    [handler] = dictconfig_logger.handlers
    assert isinstance(handler, FeedbackHandler)
    dictconfig_logger.info("audit", extra={"data_id": "dp-1", "type": "login", "value": 1})
    dictconfig_logger.info(
        "rated", extra={"data_id": "dp-2", "feedback_type": "rating", "feedback_value": "good"}
    )

    assert handler.flush(5.0)
    assert [(i["data_id"], i["type"], i["value"]) for i in fake_humanloop.received] == [
        ("dp-2", "rating", "good")
    ]


def test_a_bad_mapping_in_dictconfig_names_the_handler_and_the_fix(
    fake_humanloop: FakeHumanloop, dictconfig_logger: logging.Logger
) -> None:
    """dictConfig's own error names the handler; the ConfigurationError under it names the fix."""
    with pytest.raises(ValueError, match="Unable to configure handler 'humanloop'") as caught:
        configure(fake_humanloop, {"type": "data_id"})
    assert isinstance(caught.value.__cause__, ConfigurationError)
    assert "'data_id' and 'type' would both be read from 'data_id'" in str(caught.value.__cause__)
