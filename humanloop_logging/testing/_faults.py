"""The faults a test can inject into the stand-in, and the checks on how they are asked for.

The state is one :class:`Faults`, held by :class:`FakeHumanloop` under its lock; what is here holds
no lock of its own.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Optional, Union

from ._server import _Answer, _json_bytes

#: How set_rate_limit() may write ``Retry-After``: whole seconds rounded up (what services send),
#: the exact wait rounded up to the millisecond, or no header at all.
RETRY_AFTER_FORMS = ("integer", "fractional", None)


@dataclass(frozen=True)
class _Failure:
    """One queued injected error answer."""

    status: int
    body: bytes
    retry_after: Optional[str]

    def answer(self) -> _Answer:
        extra = (("Retry-After", self.retry_after),) if self.retry_after is not None else ()
        return _Answer(self.status, self.body, extra)


class _TokenBucket:
    """The rate limit's state: ``burst`` tokens at most, refilled at ``rate`` per second.

    Not locked itself: FakeHumanloop calls it with its own lock held.
    """

    def __init__(self, rate: float, burst: int, retry_after: Optional[str], now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.retry_after = retry_after
        self._tokens = float(burst)
        self._updated = now

    def take(self, now: float) -> Optional[float]:
        """Take a token: None if there was one, else the seconds until one will be there."""
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._updated = max(self._updated, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self.rate

    def header(self, wait: float) -> tuple[tuple[str, str], ...]:
        """The ``Retry-After`` header for a refusal ``wait`` seconds before the next token."""
        if self.retry_after is None:
            return ()
        if self.retry_after == "integer":
            return (("Retry-After", str(max(1, math.ceil(wait)))),)
        seconds, milliseconds = divmod(max(1, math.ceil(round(wait * 1000, 6))), 1000)
        text = f"{seconds}.{milliseconds:03d}".rstrip("0") if milliseconds else str(seconds)
        return (("Retry-After", text),)


#: The body of a 429 from set_rate_limit(), as a FastAPI service raising HTTPException(429) sends.
_RATE_LIMITED = _json_bytes({"detail": "Rate limit exceeded"})


def _format_retry_after(value: Union[str, float, None]) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(
            f"retry_after must be a finite number of seconds or a string, not {value!r}"
        )
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _make_failure(status: int, retry_after: Union[str, float, None], body: Any) -> _Failure:
    """The answer fail_next() queues: ``body`` as given (bytes as they are, anything else as
    JSON), else ``{"detail": <reason phrase>}``."""
    if not 200 <= status <= 599:
        raise ValueError(f"status must be between 200 and 599, not {status!r}")
    if body is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Injected failure"
        payload = _json_bytes({"detail": phrase})
    elif isinstance(body, bytes):
        payload = body
    else:
        payload = _json_bytes(body)
    return _Failure(status, payload, _format_retry_after(retry_after))


def _make_bucket(
    requests_per_second: Optional[float],
    burst: Optional[int],
    retry_after: Optional[str],
    clock: Callable[[], float],
) -> Optional[_TokenBucket]:
    """The full bucket set_rate_limit() asks for, its arguments checked; None for no limit."""
    if requests_per_second is not None and (
        isinstance(requests_per_second, bool)
        or not isinstance(requests_per_second, (int, float))
        or not math.isfinite(requests_per_second)
        or requests_per_second < 0
    ):
        raise ValueError(
            "requests_per_second must be a finite number >= 0 (0 or None: no limit), "
            f"not {requests_per_second!r}"
        )
    if not requests_per_second:
        if burst is not None:
            raise ValueError("burst needs a rate limit (requests_per_second > 0)")
        return None
    if burst is None:
        burst = max(1, math.ceil(requests_per_second))
    elif isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be an integer >= 1, not {burst!r}")
    if retry_after not in RETRY_AFTER_FORMS:
        raise ValueError(f"retry_after must be one of {RETRY_AFTER_FORMS!r}, not {retry_after!r}")
    return _TokenBucket(float(requests_per_second), burst, retry_after, clock())


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, not {n!r}")


@dataclass
class Faults:
    """Every fault in force: the one owner of that state, held under FakeHumanloop's lock.

    ``clear()`` on the stand-in replaces the whole object, so no fault can outlive it.
    """

    resets: int = 0
    hangs: int = 0
    failures: deque[_Failure] = field(default_factory=deque)
    latency: float = 0.0
    rejected_data_ids: frozenset[str] = frozenset()
    bucket: Optional[_TokenBucket] = None
    #: POSTs the rate limit answered 429.
    rate_limited: int = 0
    refusing_key: bool = False

    def take_early(self) -> tuple[bool, bool, float]:
        """For a request just read: whether to reset it, whether to hang it (each using up one
        queued), and the latency before it is answered."""
        reset = self.resets > 0
        hang = not reset and self.hangs > 0
        if reset:
            self.resets -= 1
        elif hang:
            self.hangs -= 1
        return reset, hang, self.latency

    def take_injected(self, clock: Callable[[], float]) -> Optional[_Answer]:
        """For a POST past the early faults: the rate limit's 429 (counted) when it has no token
        for it, else the next queued failure's answer; None lets the service answer."""
        bucket = self.bucket
        if bucket is not None:
            wait = bucket.take(clock())
            if wait is not None:
                self.rate_limited += 1
                return _Answer(429, _RATE_LIMITED, bucket.header(wait))
        return self.failures.popleft().answer() if self.failures else None

    def state(self) -> dict[str, Any]:
        """The faults as plain JSON data (what the inspector page shows)."""
        bucket = self.bucket
        return {
            "latency": self.latency,
            "fail_next": len(self.failures),
            "fail_statuses": sorted({failure.status for failure in self.failures}),
            "reset_next": self.resets,
            "hang_next": self.hangs,
            "rate_limit": None
            if bucket is None
            else {"requests_per_second": bucket.rate, "burst": bucket.burst},
            "refuse_key": self.refusing_key,
            "rejected_data_ids": sorted(self.rejected_data_ids),
        }
