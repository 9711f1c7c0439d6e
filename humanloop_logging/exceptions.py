"""Everything the library reports, as one small hierarchy.

Nothing here is ever raised into a logging call: these objects reach the application through the
``on_error`` callback (and the ``humanloop_logging`` logger), so each carries what is needed to act
on it, and none of them ever carries the API key. A DeliveryError's ``category`` names the kind
of problem ("auth", "not_found", "dns", "tls", "refused", "timeout", "server", ...)::

    HumanloopLoggingError
    ├── ConfigurationError (also ValueError)      bad settings, raised at construction
    ├── FeedbackValidationError (also ValueError)  a record refused before it joined a batch
    ├── QueueFullError                             records dropped because the queue was full
    ├── SpoolError                                 the durable spool failed (.path, .reason)
    └── DeliveryError                              records that did not reach Humanloop
        ├── TransportError                         connection failure or timeout
        └── APIError                               an HTTP error answer (.status, .detail)
            ├── AuthenticationError                401/403: the API key was refused
            └── UnprocessableEntityError           422: .details names the items and reasons
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "CATEGORIES",
    "APIError",
    "AuthenticationError",
    "ConfigurationError",
    "DeliveryError",
    "FeedbackValidationError",
    "HumanloopLoggingError",
    "QueueFullError",
    "SpoolError",
    "TransportError",
    "UnprocessableEntityError",
]


class HumanloopLoggingError(Exception):
    """Base of every error this library reports."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt without calling __init__: the subclasses' signatures differ from their args,
        # and an error handed to on_error may be sent to another process (a multiprocessing
        # queue, a Celery result), or copied.
        return (_rebuild, (type(self), self.args), self._state())

    def _state(self) -> dict[str, Any]:
        """The attributes a copy gets: everything set on this error."""
        return dict(self.__dict__)


def _rebuild(cls: type[HumanloopLoggingError], args: tuple[Any, ...]) -> HumanloopLoggingError:
    """An error of ``cls`` with ``args``, its attributes still to be set by unpickling."""
    return cls.__new__(cls, *args)


class ConfigurationError(HumanloopLoggingError, ValueError):
    """A setting is missing or invalid; raised once, when a handler or shipper is built."""


class FeedbackValidationError(HumanloopLoggingError, ValueError):
    """A record the API would reject, refused before it could share a batch with valid ones."""

    def __init__(self, field: str, reason: str, record: Mapping[str, Any]) -> None:
        self.field = field
        self.reason = reason
        #: What could be read of the record, with unreadable values replaced by their safe repr.
        self.record = dict(record)
        data_id = self.record.get("data_id", "(none)")
        super().__init__(f"feedback for data_id={data_id} refused: {field} {reason}")


class QueueFullError(HumanloopLoggingError):
    """The bounded queue was full, so new records were dropped (reported once per burst)."""

    def __init__(self, dropped: int, max_queue_size: int) -> None:
        self.dropped = dropped
        self.max_queue_size = max_queue_size
        super().__init__(
            f"dropped {dropped} feedback record(s): the queue is full "
            f"(max_queue_size={max_queue_size}); is Humanloop reachable?"
        )


#: What ``DeliveryError.category`` may be: one word per kind of problem, so repeats of one problem
#: can be collapsed and different problems told apart.
CATEGORIES = frozenset(
    {
        "auth",  # 401/403: the API key was refused
        "not_found",  # 404: wrong base_url (usually a missing /v4)
        "rejected",  # 422: the service refused items of the batch
        "too_large",  # 413
        "rate_limited",  # 429
        "server",  # 5xx
        "client",  # any other 4xx
        "dns",  # the host name could not be resolved
        "tls",  # the TLS handshake failed (certificate, protocol)
        "refused",  # nothing listens on that host and port
        "timeout",  # no connection, or no whole answer, within timeout
        "reset",  # the connection was closed before an answer came
        "proxy",  # the HTTP(S) proxy could not be reached or refused the request
        "url",  # base_url is not a URL requests can use
        "closing",  # close() or exit left no time to send
        "delivery",  # anything else
    }
)


class SpoolError(HumanloopLoggingError):
    """The durable spool failed, or recovered from a fault; ``str()`` names the file.

    ``reason`` says what happened; ``moved_to`` is where a corrupt file was moved aside. After a
    failure the shipper keeps feedback in memory; what was on disk stays there.
    """

    def __init__(self, path: str, reason: str, *, moved_to: str | None = None) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason
        self.moved_to = moved_to

    def __str__(self) -> str:
        return f"feedback spool {self.path}: {self.reason}"


class BeforeSendError(HumanloopLoggingError):
    """``before_send`` raised, or returned something other than a record or None: the record is
    not sent (counted ``failed``), as a redaction that did not run must not let it out."""


class DeliveryError(HumanloopLoggingError):
    """Records that were given up on; ``records`` holds their request bodies.

    ``category`` names the problem (see ``CATEGORIES``); ``url`` is where the request went (scheme,
    host, port and path only), when the error is about a request. ``read_records``, given instead
    of ``records`` (with ``count``), writes them out when they are first read: a close that gives
    up on a whole queue must not spend its deadline on bodies nobody reads.
    """

    retryable: bool = False
    retry_after: float | None = None
    category: str = "delivery"
    url: str | None = None
    #: Set while the transport retries: how many seconds it keeps trying, at most.
    retry_for: float | None = None

    def __init__(
        self,
        message: str,
        records: Sequence[Mapping[str, Any]] = (),
        *,
        count: int | None = None,
        category: str | None = None,
        url: str | None = None,
        read_records: Callable[[], Sequence[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.message = message
        self._records = None if read_records is not None else list(records)
        self._read_records = read_records
        self._count = count
        if category is not None:
            self.category = category
        if url is not None:
            self.url = url
        super().__init__(message)

    @property
    def records(self) -> list[Mapping[str, Any]]:
        """The request bodies of the records given up on."""
        records = self._records
        if records is None:  # (two threads asking at once both read them: the same records)
            read = self._read_records
            records = self._records = list(read()) if read is not None else []
        return records

    @records.setter
    def records(self, records: Sequence[Mapping[str, Any]]) -> None:
        self._records = list(records)
        self._read_records = None

    @property
    def count(self) -> int:
        """How many records were given up on; more than ``len(records)`` when some were in a
        request that was still running when time ran out."""
        if self._records is None:  # not read yet: the count was given with the reader
            return self._count or 0
        return max(self._count or 0, len(self._records))

    def _state(self) -> dict[str, Any]:
        # The records as read, without their reader: it holds the shipper, which does not pickle.
        return {**self.__dict__, "_records": self.records, "_read_records": None}

    def __str__(self) -> str:
        count = self.count
        return f"{self.message} ({count} record(s))" if count else self.message


class TransportError(DeliveryError):
    """The request did not get an answer: connection refused or reset, or a timeout."""

    retryable = True


def add_clause(text: str, clause: str) -> str:
    """``text`` followed by ``clause``: a new sentence after a question, else after a semicolon."""
    if text.endswith(("?", ".", "!")):
        return f"{text} {clause[:1].upper()}{clause[1:]}"
    return f"{text}; {clause}"


def status_category(status: int) -> str:
    """The category of an HTTP error status."""
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if status == 413:
        return "too_large"
    if status == 422:
        return "rejected"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server"
    return "client"


class APIError(DeliveryError):
    """Humanloop answered with an error status.

    ``detail`` is the service's own words; ``message`` (and ``str()``) say where the request went
    and, for the usual misconfigurations, what to change.
    """

    def __init__(
        self,
        status: int,
        message: str,
        records: Sequence[Mapping[str, Any]] = (),
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        url: str | None = None,
        text: str | None = None,
    ) -> None:
        self.status = status
        self.detail = message
        self.retryable = retryable
        self.retry_after = retry_after
        where = f" from POST {url}" if url else ""
        super().__init__(
            text or f"HTTP {status}{where}: {message}",
            records,
            category=status_category(status),
            url=url,
        )


class AuthenticationError(APIError):
    """The API key was refused; every request will fail until the key is fixed.

    A shipper reports it once, for the first request refused: ``count`` is that request's records.
    They are dropped (a refused key is not retried, nor kept in a spool), and so is every record
    sent after them until a request succeeds, each counted in ``stats().failed``: ``str()`` says so.
    """

    def __str__(self) -> str:
        count = self.count
        if not count:
            return self.message
        records = "1 record" if count == 1 else f"{count} records"
        return (
            f"{self.message}; {records} dropped, not retried, and so is every record sent with "
            "this key until it is fixed (stats().failed counts each)"
        )


class UnprocessableEntityError(APIError):
    """A 422: ``details`` are the service's entries, ``rejected`` pairs each named record with them.

    ``details`` is the ``detail`` list exactly as the service sent it (``loc``, ``msg``, ``type``).
    ``rejected`` maps each record the service named to the messages about it; the other records of
    the batch were resent and are not in ``records``.
    """

    def __init__(
        self,
        message: str,
        details: Sequence[Mapping[str, Any]],
        rejected: Sequence[tuple[Mapping[str, Any], Sequence[str]]] = (),
        *,
        url: str | None = None,
    ) -> None:
        self.details = list(details)
        self.rejected = list(rejected)
        super().__init__(422, message, [record for record, _ in rejected], url=url)
