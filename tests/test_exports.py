"""The package's ``__all__`` is honest: everything listed exists, every public class is listed."""

from __future__ import annotations

import copy
import importlib
import inspect
import pickle
import pkgutil
import threading
import types
from collections.abc import Callable
from typing import Any

import pytest

import humanloop_logging
from humanloop_logging import (
    APIError,
    AuthenticationError,
    BeforeSendError,
    ConfigurationError,
    DeliveryError,
    FeedbackValidationError,
    HumanloopLoggingError,
    QueueFullError,
    SpoolError,
    TransportError,
    UnprocessableEntityError,
)

#: Public modules imported on their own (``import humanloop_logging.testing``), not re-exported.
STANDALONE = {
    "humanloop_logging.testing",
    "humanloop_logging.pytest_plugin",
    "humanloop_logging.cli",
    "humanloop_logging.__main__",
}


def package_modules() -> list[str]:
    names = [
        info.name
        for info in pkgutil.walk_packages(humanloop_logging.__path__, "humanloop_logging.")
        if info.name not in STANDALONE
    ]
    return sorted(names)


def test_every_name_in_all_exists() -> None:
    """Each name in humanloop_logging.__all__ can be imported from the package, once."""
    exported = humanloop_logging.__all__
    assert len(exported) == len(set(exported))
    missing = [name for name in exported if not hasattr(humanloop_logging, name)]
    assert missing == []


def test_every_public_member_of_the_package_is_in_all() -> None:
    """Every public non-module attribute of the package namespace is listed in __all__."""
    public = {
        name
        for name, value in vars(humanloop_logging).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - set(humanloop_logging.__all__) == set()


def public(module_name: str) -> bool:
    """A module users may import: none of its names below the package starts with ``_``. A
    private module's ``__all__`` is its interface to the rest of the package, not to users."""
    return not any(part.startswith("_") for part in module_name.split(".")[1:])


@pytest.mark.parametrize("module_name", [name for name in package_modules() if public(name)])
def test_public_classes_of_each_module_are_exported(module_name: str) -> None:
    """A class a public module declares public (in its own __all__) is exported by the
    package."""
    module = importlib.import_module(module_name)
    declared = getattr(module, "__all__", ())
    classes = [
        name
        for name in declared
        if inspect.isclass(getattr(module, name, None))
        and getattr(module, name).__module__ == module_name
    ]
    not_exported = [name for name in classes if name not in humanloop_logging.__all__]
    assert not_exported == [], f"{module_name} declares public but the package hides them"


#: The public surface of each front class, beyond what its base class offers (``help()`` of it):
#: nothing that only the library's own modules call.
SURFACES = {
    "FeedbackShipper": {"close", "flush", "name", "stats", "submit"},
    "FeedbackHandler": {"stats"},  # and the logging.Handler methods it overrides
    "FeedbackProcessor": {"close", "flush", "stats"},
    "FeedbackSink": {"close", "flush", "stats", "stop", "write"},
    "HTTPTransport": {"close", "cut_off_at", "post", "reset_after_fork", "send"},
    "Transport": {"close", "send"},
}


@pytest.mark.parametrize("name", sorted(SURFACES))
def test_front_classes_show_only_their_public_surface(name: str) -> None:
    """``help()`` of a front class lists what users call and nothing the library calls on itself
    (a flush thread's ident, the adapters' error path)."""
    cls = getattr(humanloop_logging, name)
    inherited = {attr for base in cls.__mro__[1:] for attr in vars(base)}
    own = {attr for attr in vars(cls) if not attr.startswith("_") and attr not in inherited}
    assert own == SURFACES[name]


@pytest.mark.parametrize("name", ["FeedbackHandler", "FeedbackProcessor", "FeedbackSink"])
def test_adapters_document_their_constructor_and_stats(name: str) -> None:
    """``help(FeedbackHandler)`` shows its own words for ``__init__`` (not logging's "Initializes
    the instance - basically setting the formatter to None") and for ``stats()``."""
    cls = getattr(humanloop_logging, name)
    inherited = {base.__init__.__doc__ for base in cls.__mro__[1:]}
    assert cls.__init__.__doc__
    assert cls.__init__.__doc__ not in inherited
    assert "ConfigurationError" in cls.__init__.__doc__
    assert cls.stats.__doc__


def test_every_stats_method_has_a_docstring() -> None:
    """Every exported class with a ``stats()`` says what it returns."""
    for name in humanloop_logging.__all__:
        stats = getattr(getattr(humanloop_logging, name), "stats", None)
        if callable(stats) and inspect.isclass(getattr(humanloop_logging, name)):
            assert inspect.getdoc(stats), name


def test_exported_exceptions_share_one_base() -> None:
    """Every exported exception derives from HumanloopLoggingError."""
    for name in humanloop_logging.__all__:
        value = getattr(humanloop_logging, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert issubclass(value, humanloop_logging.HumanloopLoggingError), name


def test_version_is_a_string() -> None:
    """__version__ is exported and is a non-empty string."""
    assert isinstance(humanloop_logging.__version__, str)
    assert humanloop_logging.__version__


# -- errors cross process boundaries ------------------------------------------------------------

URL = "https://api.humanloop.com/v4/feedback"
RECORD = {"data_id": "dp-1", "type": "rating", "value": "good"}


def given_up_at_close() -> DeliveryError:
    """As a close builds it: records read on first use, by a reader that holds the shipper (here a
    lock, which does not pickle either)."""
    lock = threading.Lock()

    def read() -> list[dict[str, Any]]:
        with lock:
            return [RECORD, {**RECORD, "data_id": "dp-2"}]

    return DeliveryError(
        "the close deadline passed", count=2, category="closing", read_records=read
    )


def retrying_503() -> APIError:
    error = APIError(503, "Service Unavailable", [RECORD], retryable=True, retry_after=7.5, url=URL)
    error.retry_for = 30.0
    return error


#: Each exported exception as the library builds it, with every attribute it can carry set.
EXAMPLES: dict[str, Callable[[], HumanloopLoggingError]] = {
    "HumanloopLoggingError": lambda: HumanloopLoggingError("flush thread error"),
    "ConfigurationError": lambda: ConfigurationError("batch_size must be positive"),
    "BeforeSendError": lambda: BeforeSendError(
        "before_send failed on the feedback record for data_id='dp-1': KeyError('email')"
    ),
    "FeedbackValidationError": lambda: FeedbackValidationError(
        "type", "is missing", {"data_id": "dp-1", "value": "good"}
    ),
    "QueueFullError": lambda: QueueFullError(12, 10_000),
    "SpoolError": lambda: SpoolError(
        "/var/spool/feedback.db", "the file is corrupt", moved_to="/var/spool/feedback.db.bad"
    ),
    "DeliveryError": given_up_at_close,
    "TransportError": lambda: TransportError(
        f"connection refused by POST {URL}", [RECORD], category="refused", url=URL
    ),
    "APIError": retrying_503,
    "AuthenticationError": lambda: AuthenticationError(
        401,
        "Invalid API key",
        [RECORD],
        url=URL,
        text=f"Humanloop refused the API key (HTTP 401 from POST {URL}: Invalid API key)",
    ),
    "UnprocessableEntityError": lambda: UnprocessableEntityError(
        "Humanloop rejected feedback for data_id='dp-1'",
        [{"loc": ["body", 0, "type"], "msg": "field required", "type": "value_error.missing"}],
        [(RECORD, ["type: field required"])],
        url=URL,
    ),
}

#: Everything an error may carry for on_error to act on.
ATTRIBUTES = (
    "args",
    "field",
    "reason",
    "record",
    "dropped",
    "max_queue_size",
    "path",
    "moved_to",
    "message",
    "records",
    "count",
    "category",
    "url",
    "retryable",
    "retry_after",
    "retry_for",
    "status",
    "detail",
    "details",
    "rejected",
)


def exported_exceptions() -> list[str]:
    return sorted(
        name
        for name in humanloop_logging.__all__
        if inspect.isclass(getattr(humanloop_logging, name))
        and issubclass(getattr(humanloop_logging, name), BaseException)
    )


def described(error: BaseException) -> dict[str, Any]:
    """What an error says and carries, to compare a copy with its original."""
    seen = {name: getattr(error, name) for name in ATTRIBUTES if hasattr(error, name)}
    return {"type": type(error), "str": str(error), "repr": repr(error), **seen}


def test_every_exported_exception_has_an_example() -> None:
    """The pickling tests below cover every exception the package exports."""
    assert sorted(EXAMPLES) == exported_exceptions()
    for name, make in EXAMPLES.items():
        assert type(make()) is getattr(humanloop_logging, name)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_exceptions_survive_pickling(name: str, protocol: int) -> None:
    """An error handed to on_error can be sent to another process (a multiprocessing queue, a
    Celery result) and arrives saying and carrying the same."""
    error = EXAMPLES[name]()
    expected = described(error)
    restored = pickle.loads(pickle.dumps(error, protocol))
    assert described(restored) == expected


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_exceptions_can_be_copied(name: str) -> None:
    """copy.copy and copy.deepcopy of an error give an equal error."""
    error = EXAMPLES[name]()
    expected = described(error)
    assert described(copy.copy(error)) == expected
    assert described(copy.deepcopy(error)) == expected
