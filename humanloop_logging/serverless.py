"""Send the feedback of an invocation before a serverless platform freezes the process.

AWS Lambda, Google Cloud Functions and Azure Functions freeze the process as soon as the handler
returns (or stop giving it CPU), and may end it without thawing it: the flush thread cannot be
trusted to send afterwards. ``flush_after`` sends what is queued before the function returns::

    @flush_after                      # every shipper of the process, within 5 s in all
    def handler(event, context): ...

    @flush_after(handler, timeout=2)  # only these (handlers, processors, shippers)
    async def handler(event, context): ...

    with flush_after(timeout=2): ...  # a block; ``async with`` too

The logging calls stay as they are (queued, never waiting for the network); one bounded wait at
the end sends the invocation's records together. ``timeout`` bounds the whole flush, however many
shippers there are. When it passes with records unsent, one warning per invocation says how many
wait, on the library's logger; nothing is raised into the caller, and the records stay queued
(they go when the process runs again, the next invocation's flush waiting for them too).

Which shippers: the default is every shipper alive when the function returns, so one built
during the invocation (the first, cold-start one included) is flushed too. Shippers given
explicitly are the only ones flushed.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar, cast, overload

from . import _lifecycle, _report
from ._lifecycle import Flushable
from .exceptions import ConfigurationError

__all__ = ["flush_after"]

#: The default bound on the whole flush, in seconds: ``flush()``'s and ``exit_timeout``'s.
DEFAULT_TIMEOUT = 5.0

Function = TypeVar("Function", bound=Callable[..., Any])


class FlushAfter:
    """What ``flush_after(...)`` returns: a decorator, and a context manager (``with`` and
    ``async with``). It keeps no state between uses, so one may wrap many functions and be
    entered again, also by several threads at once."""

    __slots__ = ("_targets", "timeout")

    def __init__(self, targets: Sequence[Flushable], timeout: float) -> None:
        self._targets = tuple(targets)  # empty: every shipper of the process
        self.timeout = timeout

    def __repr__(self) -> str:
        given = "".join(f"{target!r}, " for target in self._targets)
        return f"flush_after({given}timeout={self.timeout:g})"

    def __call__(self, function: Function) -> Function:
        """``function`` wrapped to flush when it returns or raises; same signature and metadata,
        and ``async def`` when ``function`` is."""
        if not callable(function):
            raise TypeError(
                f"flush_after decorates a function, not {type(function).__name__}; "
                "for a block of code use `with flush_after(...):`"
            )
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            raise TypeError(
                f"flush_after cannot wrap the generator function {function.__qualname__}: its "
                "body runs after the call has returned; use `with flush_after(...):` inside it"
            )
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def flushing_coroutine(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await function(*args, **kwargs)
                finally:
                    await self._flush_off_the_loop()

            return cast(Function, flushing_coroutine)

        @functools.wraps(function)
        def flushing(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            finally:
                self._flush()

        return cast(Function, flushing)

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        error: Optional[BaseException],
        trace: Optional[TracebackType],
    ) -> None:
        self._flush()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        kind: Optional[type[BaseException]],
        error: Optional[BaseException],
        trace: Optional[TracebackType],
    ) -> None:
        await self._flush_off_the_loop()

    async def _flush_off_the_loop(self) -> None:
        """The flush on a thread of the loop's default executor: it waits on the network, and
        the loop must go on serving meanwhile (other requests, the app's own tasks)."""
        try:
            waited = asyncio.get_running_loop().run_in_executor(None, self._flush)
        except RuntimeError:  # another event loop (trio), or the executor is shut down already:
            self._flush()  # a bounded wait on the loop is the lesser harm
            return
        await waited

    def _flush(self) -> None:
        """Flush within ``timeout``; say once if records are left. Never raises."""
        try:
            if self._targets:
                left: list[Any] = _lifecycle.flush_together(self._targets, self.timeout)
            else:
                left = _lifecycle.flush_all(self.timeout)
            if left:
                _say_unsent(left, self.timeout)
        except Exception as exc:  # never into the function's caller
            _report.emit(logging.WARNING, f"flush_after could not flush ({type(exc).__name__})")


def _say_unsent(left: Sequence[Any], timeout: float) -> None:
    """One warning for everything the flush left: how many records wait, and what to do."""
    records = uncounted = 0
    for target in left:
        try:
            records += target.stats().pending
        except Exception:  # anything with flush(timeout) will do, stats() or not
            uncounted += 1
    if not records and not uncounted:
        return  # sent after all, between the deadline and the count
    what = f"{records} feedback record(s) still wait" if records else "feedback still waits"
    if uncounted:
        what += f" (in {uncounted} object(s) that do not count theirs)"
    _report.emit(
        logging.WARNING,
        f"flush_after: {what} to be sent after its timeout of {timeout:g}s; if the "
        "platform freezes this process now, they go only when it runs again, and are lost if it "
        "never does. Raise the timeout (flush_after(timeout=...)) if Humanloop answers slowly "
        "from here, or set blocking=True (HUMANLOOP_FEEDBACK_BLOCKING=1) to send each record "
        "before its logging call returns.",
    )


def _shipper_of(target: Any) -> Any:
    """A handler's or processor's shipper (several may share one), else the target itself."""
    shipper = getattr(target, "shipper", None)
    return shipper if callable(getattr(shipper, "flush", None)) else target


def _checked_timeout(timeout: object) -> float:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout < 0
    ):
        raise ConfigurationError(
            f"flush_after's timeout must be a finite number of seconds >= 0, not {timeout!r}"
        )
    return float(timeout)


# Flushables first: a FeedbackProcessor is callable too, and is a target, not the function.
@overload
def flush_after(*targets: Flushable, timeout: float = DEFAULT_TIMEOUT) -> FlushAfter: ...


@overload
def flush_after(function: Function, /, *, timeout: float = DEFAULT_TIMEOUT) -> Function: ...


def flush_after(*targets: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Flush feedback when a function returns or raises, or when a block ends, within ``timeout``
    seconds in all; for serverless handlers, whose process is frozen once they return.

    ``@flush_after`` and ``@flush_after(timeout=2)`` flush every shipper of the process;
    ``flush_after(handler, processor, ..., timeout=2)`` only those given (anything with
    ``flush(timeout)``). Works on ``def`` and ``async def`` functions (whose flush runs off the
    event loop), and as ``with`` / ``async with``. What is still unsent when ``timeout`` passes
    is said once on the ``humanloop_logging`` logger; nothing is ever raised into the caller.
    """
    timeout = _checked_timeout(timeout)
    if len(targets) == 1 and not hasattr(targets[0], "flush") and callable(targets[0]):
        return FlushAfter((), timeout)(targets[0])  # @flush_after, without parentheses
    for target in targets:
        if not callable(getattr(target, "flush", None)):
            raise ConfigurationError(
                "flush_after takes handlers, processors and shippers (anything with "
                f"flush(timeout)) and the timeout as a keyword, not {target!r}"
                + (f": write flush_after(timeout={target!r})" if _is_number(target) else "")
            )
    unique = {id(shipper): shipper for shipper in map(_shipper_of, targets)}
    return FlushAfter(list(unique.values()), timeout)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
