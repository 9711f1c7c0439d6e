"""Turn ordinary log calls into user feedback in Humanloop.

``logger.info("feedback", extra={"data_id": ..., "type": "rating", "value": "good"})`` through a
``FeedbackHandler``, or the same keys on a structlog event through a ``FeedbackProcessor``.
"""

from ._version import __version__
from .exceptions import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    DeliveryError,
    FeedbackValidationError,
    HumanloopLoggingError,
    QueueFullError,
    TransportError,
    UnprocessableEntityError,
)
from .handler import FeedbackHandler
from .processor import FeedbackProcessor
from .shipper import FeedbackShipper, FeedbackStats, Transport
from .signals import exit_on_sigterm
from .transport import HTTPTransport, SendControl

__all__ = [
    "APIError",
    "AuthenticationError",
    "ConfigurationError",
    "DeliveryError",
    "FeedbackHandler",
    "FeedbackProcessor",
    "FeedbackShipper",
    "FeedbackStats",
    "FeedbackValidationError",
    "HTTPTransport",
    "HumanloopLoggingError",
    "QueueFullError",
    "SendControl",
    "Transport",
    "TransportError",
    "UnprocessableEntityError",
    "__version__",
    "exit_on_sigterm",
]
