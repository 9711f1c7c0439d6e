"""Turn ordinary log calls into user feedback in Humanloop.

``logger.info("feedback", extra={"data_id": ..., "type": "rating", "value": "good"})`` through a
``FeedbackHandler``, the same keys on a structlog event through a ``FeedbackProcessor``, or as
loguru keyword arguments through a ``FeedbackSink``.

The public names are imported on first use (PEP 562), so ``import humanloop_logging`` (and the
pytest plugin, which every pytest run of an environment with this package installed loads) costs
nothing: requests, tenacity and structlog are imported, and the exit and fork hooks registered,
only when a name that needs them is used.
"""

# No "from __future__ import annotations" and private aliases: every public name of this namespace
# is in __all__ (tests/test_exports.py).
import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._version import __version__

if _TYPE_CHECKING:
    from .asgi import FeedbackMiddleware
    from .exceptions import (
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
    from .handler import FeedbackHandler
    from .metrics import (
        FeedbackCollector,
        FeedbackInstruments,
        instrument_opentelemetry,
        register_prometheus,
    )
    from .processor import FeedbackProcessor
    from .serverless import flush_after
    from .shipper import FeedbackShipper, FeedbackStats, Transport
    from .signals import exit_on_sigterm
    from .sink import FeedbackSink
    from .transport import HTTPTransport, SendControl

#: Where each public name lives.
_MODULES = {
    "APIError": "exceptions",
    "AuthenticationError": "exceptions",
    "BeforeSendError": "exceptions",
    "ConfigurationError": "exceptions",
    "DeliveryError": "exceptions",
    "FeedbackValidationError": "exceptions",
    "HumanloopLoggingError": "exceptions",
    "QueueFullError": "exceptions",
    "SpoolError": "exceptions",
    "TransportError": "exceptions",
    "UnprocessableEntityError": "exceptions",
    "FeedbackHandler": "handler",
    "FeedbackCollector": "metrics",
    "FeedbackInstruments": "metrics",
    "instrument_opentelemetry": "metrics",
    "register_prometheus": "metrics",
    "FeedbackMiddleware": "asgi",
    "FeedbackProcessor": "processor",
    "FeedbackShipper": "shipper",
    "FeedbackStats": "shipper",
    "FeedbackSink": "sink",
    "Transport": "shipper",
    "exit_on_sigterm": "signals",
    "flush_after": "serverless",
    "HTTPTransport": "transport",
    "SendControl": "transport",
}

__all__ = [
    "APIError",
    "AuthenticationError",
    "BeforeSendError",
    "ConfigurationError",
    "DeliveryError",
    "FeedbackCollector",
    "FeedbackHandler",
    "FeedbackInstruments",
    "FeedbackMiddleware",
    "FeedbackProcessor",
    "FeedbackShipper",
    "FeedbackSink",
    "FeedbackStats",
    "FeedbackValidationError",
    "HTTPTransport",
    "HumanloopLoggingError",
    "QueueFullError",
    "SendControl",
    "SpoolError",
    "Transport",
    "TransportError",
    "UnprocessableEntityError",
    "__version__",
    "exit_on_sigterm",
    "flush_after",
    "instrument_opentelemetry",
    "register_prometheus",
]


def __getattr__(name: str) -> _Any:
    """Import a public name's module on first use, then keep the name here."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
