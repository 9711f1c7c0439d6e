"""The shipper: a bounded queue, one flush thread, batching, 422 handling, exit and fork.

It knows nothing of logging: adapters hand it captured tuples through ``submit`` and it hands JSON
arrays to a transport. The public ``FeedbackShipper`` is a thin front for an ``_Engine`` that the
flush thread holds; when the front is garbage collected without ``close()``, the engine drains and
its thread ends, so a forgotten handler never leaves a thread behind.
"""

from __future__ import annotations

import atexit
import collections
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from ._config import Settings, resolve
from ._record import TIMESTAMP, Captured, safe_repr, to_payload, unreadable
from ._report import ErrorCallback, Reporter
from .exceptions import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    DeliveryError,
    FeedbackValidationError,
    QueueFullError,
    UnprocessableEntityError,
)
from .transport import HTTPTransport, SendControl

__all__ = ["FeedbackShipper", "FeedbackStats", "Transport"]

Payload = tuple[dict[str, Any], bytes]


class Transport(Protocol):
    """What the shipper needs from a transport; ``HTTPTransport`` is the one that ships."""

    def send(self, body: bytes, records: Sequence[Any], control: SendControl) -> None: ...

    def reset_after_fork(self) -> None: ...

    def cut_off_at(self, deadline: float) -> None:
        """End the request in flight, if any, by ``deadline`` (monotonic): close() was called."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class FeedbackStats:
    """Counters since the shipper started (or since fork, in a child).

    ``enqueued`` counts every record handed to the shipper, and each one is in exactly one of the
    other buckets at any moment: ``enqueued == sent + rejected + dropped + failed + pending``.
    ``retried`` counts requests sent again after a transient failure.
    """

    enqueued: int
    sent: int
    retried: int
    rejected: int
    dropped: int
    failed: int
    pending: int


class _Engine:
    """The queue, the counters and the flush thread's loop; shared by handler and processor."""

    def __init__(self, settings: Settings, transport: Transport, reporter: Reporter) -> None:
        self.settings = settings
        self.transport = transport
        self.reporter = reporter
        self._batch_size = settings.batch_size
        self._max_queue_size = settings.max_queue_size
        self._flush_interval = settings.flush_interval
        self._default_user = settings.default_user
        self._blocking = settings.blocking
        self._reset()
        # Decided once: the caller's path is a single call either way.
        self.submit: Callable[[Captured], None] = (
            self._submit_blocking if settings.blocking else self._submit_queued
        )

    def _reset(self) -> None:
        """Fresh state: at construction and in a forked child."""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._send_lock = threading.Lock()
        self._interrupt = threading.Event()  # set by close() to cut a backoff wait short
        self._queue: collections.deque[Captured] = collections.deque()
        self._sent = self._retried = 0
        self._rejected = self._dropped = self._failed = 0
        self._taken = 0  # records taken off the queue
        self._finished = 0  # of those, how many are sent, rejected or failed
        self._flush_target = 0
        self._dropped_reported = 0
        self._closing = False
        self._closed = False
        self._said_closed = False
        self._deadline = math.inf  # monotonic; brought forward by close()
        self._auth_failed = False
        self._epoch = 0  # bumped when close() writes off a send that overran the exit deadline
        self.thread_id: Optional[int] = None
        self._thread: Optional[threading.Thread] = None

    # -- the caller's path ----------------------------------------------------------------------

    def _submit_queued(self, item: Captured) -> None:
        # No lock on the common path: deque.append is atomic, and what was appended is counted
        # as taken + len(queue) under the lock by stats(). The size check may let one record per
        # concurrently logging thread past max_queue_size; the rare paths take the lock.
        queue = self._queue
        if len(queue) >= self._max_queue_size or self._closed:
            self._drop()
            return
        queue.append(item)
        if len(queue) == self._batch_size:
            with self._cond:
                self._cond.notify()

    def _submit_blocking(self, item: Captured) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                self._taken += 1
                epoch = self._epoch
        if closed:
            self._drop()
            return
        self.process([item], epoch)

    def _drop(self) -> None:
        with self._lock:
            self._dropped += 1
            after_close = self._closed and not self._said_closed
            self._said_closed = self._said_closed or after_close
        if after_close:  # the flush thread is gone, so say it here, once
            self.reporter.log(
                "feedback logged after close() is dropped (counted in stats().dropped)",
                kind="closed",
            )

    # -- the flush thread -----------------------------------------------------------------------

    def start(self) -> None:
        if self._blocking:
            return
        thread = threading.Thread(
            target=_worker, args=(weakref.ref(self),), name="humanloop-feedback-flush", daemon=True
        )
        self._thread = thread
        thread.start()
        self.thread_id = thread.ident

    def next_batch(self) -> Optional[tuple[list[Captured], int]]:
        """Wait for something to send: the batch (empty after an idle wait) and its epoch.

        None when the thread should end.
        """
        with self._cond:
            queue = self._queue
            if time.monotonic() >= self._deadline:
                return None
            if not queue:
                if self._closing:
                    return None
                self._cond.wait(self._flush_interval)
                return [], self._epoch
            count = len(queue)
            if count < self._batch_size and self._taken >= self._flush_target and not self._closing:
                age = time.time() - queue[0][TIMESTAMP]
                remaining = min(self._flush_interval - age, self._flush_interval)
                if remaining > 0:
                    self._cond.wait(remaining)
                    return [], self._epoch
            take = min(count, self._batch_size)
            batch = [queue.popleft() for _ in range(take)]
            self._taken += take
            return batch, self._epoch

    def housekeeping(self) -> None:
        """Say once per burst that records were dropped."""
        dropped = self._dropped
        if dropped > self._dropped_reported:
            self.reporter.report(
                QueueFullError(dropped - self._dropped_reported, self._max_queue_size), kind="drop"
            )
            self._dropped_reported = dropped

    def abandon(self, reason: str) -> None:
        """Give up on whatever is unfinished, queued or in flight, counting it as failed.

        A send still in flight is written off: when it ends, its outcome is no longer counted
        (its epoch has passed), so every record stays in exactly one bucket.
        """
        with self._cond:
            self._closed = True
            queue = self._queue
            left = [queue.popleft() for _ in range(len(queue))]  # not clear(): appends race it
            self._taken += len(left)
            unfinished = self._taken - self._finished
            self._failed += unfinished
            self._finished = self._taken
            self._epoch += 1
            self._cond.notify_all()
        if unfinished:
            in_flight = unfinished - len(left)
            detail = f"; {in_flight} were in a request that did not end" if in_flight else ""
            self.reporter.report(
                DeliveryError(
                    f"gave up on feedback: {reason}{detail}",
                    [self._body_of(item) for item in left],
                    count=unfinished,
                ),
                kind="abandon",
                level=logging.ERROR,
            )

    def _body_of(self, item: Captured) -> Mapping[str, Any]:
        """What would have been sent, for reports; what could be read, if it was invalid."""
        try:
            return to_payload(item, self._default_user)[0]
        except FeedbackValidationError as error:
            return error.record

    # -- one batch, on the flush thread or (blocking mode) the caller's ------------------------

    def _finish(self, epoch: int, *, sent: int = 0, rejected: int = 0, failed: int = 0) -> bool:
        """Count an outcome; False if close() already wrote these records off (and reported them)."""
        with self._cond:
            if epoch != self._epoch:
                return False
            self._sent += sent
            self._rejected += rejected
            self._failed += failed
            self._finished += sent + rejected + failed
            self._cond.notify_all()
            return True

    def process(self, batch: list[Captured], epoch: int) -> None:
        """Validate each record, then deliver the valid ones; every record ends in one bucket."""
        valid: list[Payload] = []
        for item in batch:
            try:
                valid.append(to_payload(item, self._default_user))
            except FeedbackValidationError as error:
                self._finish(epoch, rejected=1)
                self.reporter.report(error, kind=f"invalid:{error.field}")
            except Exception as error:  # to_payload promises not to, but never lose the count
                self._finish(epoch, rejected=1)
                self.reporter.log(
                    f"could not read a feedback record: {safe_repr(error)}", kind="bug"
                )
        if valid:
            with self._send_lock:
                self._deliver(valid, epoch)

    # SendControl, for the transport.
    def deadline(self) -> float:
        return self._deadline

    def sleep(self, seconds: float) -> None:
        if self._interrupt.wait(seconds):
            self._interrupt.clear()

    def retrying(self, _error: DeliveryError, _wait: float) -> None:
        with self._lock:
            self._retried += 1

    def _deliver(self, items: list[Payload], epoch: int) -> None:
        """Send ``items``; on a 422 drop exactly the named items and resend the rest at once.

        A 422 (or 413) that names no item is bisected until the bad items stand alone, so a valid
        record is never lost for sharing a batch with an invalid one.
        """
        work = [items]
        while work:
            chunk = work.pop()
            records = [payload for payload, _ in chunk]
            body = b"[" + b",".join(data for _, data in chunk) + b"]"
            try:
                self.transport.send(body, records, self)
            except UnprocessableEntityError as error:
                work.extend(self._split_422(chunk, error, epoch))
            except APIError as error:
                if error.status == 413 and len(chunk) > 1:
                    half = len(chunk) // 2
                    work += [chunk[half:], chunk[:half]]
                else:
                    self._give_up(chunk, error, epoch)
            except DeliveryError as error:
                self._give_up(chunk, error, epoch)
            except Exception as error:  # a bug, not the network: still account for the records
                self._give_up(chunk, DeliveryError(f"unexpected error: {safe_repr(error)}"), epoch)
            else:
                self._auth_failed = False
                self._finish(epoch, sent=len(chunk))

    def _split_422(
        self, chunk: list[Payload], error: UnprocessableEntityError, epoch: int
    ) -> list[list[Payload]]:
        named: dict[int, list[str]] = {}
        for entry in error.details:
            loc = entry.get("loc")
            if (
                isinstance(loc, list)
                and len(loc) >= 2
                and loc[0] == "body"
                and isinstance(loc[1], int)
                and not isinstance(loc[1], bool)
                and 0 <= loc[1] < len(chunk)
            ):
                field = ".".join(str(part) for part in loc[2:]) or "item"
                named.setdefault(loc[1], []).append(f"{field}: {entry.get('msg', '?')}")
        if not named and len(chunk) > 1:
            half = len(chunk) // 2
            return [chunk[half:], chunk[:half]]  # a stack: the first half goes next
        if not named:
            named = {0: [error.message]}
        rejected = [(chunk[index][0], reasons) for index, reasons in sorted(named.items())]
        counted = self._finish(epoch, rejected=len(rejected))
        for record, reasons in rejected if counted else []:
            self.reporter.report(
                UnprocessableEntityError(
                    f"Humanloop rejected feedback for data_id={record.get('data_id')!r}: "
                    + "; ".join(reasons),
                    error.details,
                    [(record, reasons)],
                ),
                kind="422",
            )
        rest = [item for index, item in enumerate(chunk) if index not in named]
        return [rest] if rest else []

    def _give_up(self, chunk: list[Payload], error: DeliveryError, epoch: int) -> None:
        if not self._finish(epoch, failed=len(chunk)):
            return  # written off and reported by close() already
        error.records = [payload for payload, _ in chunk]
        if isinstance(error, AuthenticationError):
            if self._auth_failed:
                return  # said once already; the counters still show every failed record
            self._auth_failed = True
            self.reporter.report(error, kind="auth", level=logging.ERROR)
            return
        self.reporter.report(error, kind=f"failed:{type(error).__name__}", level=logging.ERROR)

    # -- flush, close, stats --------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        if threading.get_ident() == self.thread_id:
            return False  # called from on_error on the flush thread: waiting would deadlock
        end = time.monotonic() + timeout
        with self._cond:
            target = self._taken + len(self._queue)
            if target > self._flush_target:
                self._flush_target = target
                self._cond.notify_all()
            while self._finished < target:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def begin_close(self, timeout: float) -> None:
        with self._cond:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._interrupt.set()  # a backoff wait is cut short ...
        self.transport.cut_off_at(self._deadline)  # ... and so is a request already running

    def wait_closed(self) -> bool:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, self._deadline - time.monotonic()) + 0.05)
            if thread.is_alive():  # a send overran its timeout: stop waiting for it
                self.abandon("the close deadline passed")
                return False
        late = time.monotonic() >= self._deadline
        self.abandon("the close deadline passed" if late else "the shipper is closed")
        self.transport.close()
        self.reporter.release_held()
        return True

    def stats(self) -> FeedbackStats:
        with self._lock:
            queued = len(self._queue)
            return FeedbackStats(
                enqueued=self._taken + queued + self._dropped,
                sent=self._sent,
                retried=self._retried,
                rejected=self._rejected,
                dropped=self._dropped,
                failed=self._failed,
                pending=queued + self._taken - self._finished,
            )

    def after_fork_in_child(self) -> None:
        """The child starts empty: the parent's queue is the parent's to send."""
        was_closed = self._closed
        self._reset()
        self.transport.reset_after_fork()
        if was_closed:
            self._closing = self._closed = True
        else:
            self.start()


def _worker(ref: weakref.ReferenceType[_Engine]) -> None:
    """The flush thread's loop. It holds the engine only while working on it."""
    while True:
        engine = ref()
        if engine is None:
            return
        try:
            taken = engine.next_batch()
            if taken is None:
                return
            batch, epoch = taken
            if batch:
                engine.process(batch, epoch)
            engine.housekeeping()
        except Exception as exc:  # never let the flush thread die silently
            engine.reporter.log(
                f"flush thread error: {safe_repr(exc)}", kind="bug", level=logging.ERROR
            )
        del engine


# -- process-wide hooks: exit and fork ----------------------------------------------------------


class _Registry:
    """The live engines, for the exit hook and the fork hook."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.engines: weakref.WeakSet[_Engine] = weakref.WeakSet()

    def add(self, engine: _Engine) -> None:
        with self.lock:
            self.engines.add(engine)

    def discard(self, engine: _Engine) -> None:
        with self.lock:
            self.engines.discard(engine)

    def snapshot(self) -> list[_Engine]:
        with self.lock:
            return list(self.engines)


_registry = _Registry()


def _close_all_at_exit() -> None:
    """Flush every live shipper within its own exit_timeout, all of them at once."""
    engines = _registry.snapshot()
    for engine in engines:
        engine.begin_close(engine.settings.exit_timeout)
    for engine in engines:
        engine.wait_closed()


def _after_fork_in_child() -> None:
    _registry.lock = threading.Lock()  # the parent's may have been held at fork time
    for engine in list(_registry.engines):
        engine.after_fork_in_child()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class FeedbackShipper:
    """Queues feedback records and sends them to ``POST {base_url}/feedback`` in batches.

    Handler and processor given one shipper share its queue and its thread. Every argument left
    as None is read from its environment variable, then from the default (see the README).
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        batch_size: Optional[int] = None,
        flush_interval: Optional[float] = None,
        max_queue_size: Optional[int] = None,
        timeout: Optional[float] = None,
        max_retry_time: Optional[float] = None,
        exit_timeout: Optional[float] = None,
        on_error: Optional[ErrorCallback] = None,
        default_user: Optional[str] = None,
        blocking: Optional[bool] = None,
        allow_insecure_http: Optional[bool] = None,
        transport: Optional[Transport] = None,
    ) -> None:
        settings = resolve(
            api_key=api_key,
            base_url=base_url,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            timeout=timeout,
            max_retry_time=max_retry_time,
            exit_timeout=exit_timeout,
            default_user=default_user,
            blocking=blocking,
            allow_insecure_http=allow_insecure_http,
        )
        if transport is None:
            transport = HTTPTransport(
                api_key=settings.api_key,
                url=settings.feedback_url,
                timeout=settings.timeout,
                max_retry_time=settings.max_retry_time,
            )
        engine = _Engine(settings, transport, Reporter(on_error))
        self._engine = engine
        self.settings = settings
        _registry.add(engine)
        engine.start()
        # Dropped without close(): the engine drains within exit_timeout and its thread ends.
        self._finalizer = weakref.finalize(self, engine.begin_close, settings.exit_timeout)

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"FeedbackShipper(base_url={s.base_url!r}, batch_size={s.batch_size}, "
            f"blocking={s.blocking})"
        )

    @property
    def submit(self) -> Callable[[Captured], None]:
        """The caller's path: a captured record in, nothing out, never raises or blocks."""
        return self._engine.submit

    @property
    def thread_id(self) -> Optional[int]:
        """The flush thread's ident: records logged on it are the shipper's own, never feedback."""
        return self._engine.thread_id

    def flush(self, timeout: float = 5.0) -> bool:
        """True once everything queued before the call is sent or given up on."""
        return self._engine.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> bool:
        """Drain within ``timeout`` (default ``exit_timeout``) and stop; safe to call twice.

        Returns False if something had to be given up on because time ran out.
        """
        engine = self._engine
        engine.begin_close(self.settings.exit_timeout if timeout is None else timeout)
        ok = engine.wait_closed()
        _registry.discard(engine)
        self._finalizer.detach()
        return ok and engine.stats().failed == 0

    def stats(self) -> FeedbackStats:
        """A consistent snapshot of the counters."""
        return self._engine.stats()

    def report_internal(self, error: BaseException, timestamp: float) -> None:
        """For adapters: capturing a record raised. It is still counted, refused and reported."""
        try:
            self._engine.submit(unreadable(error, timestamp))
        except Exception:  # never into the caller's logging call
            self._engine.reporter.log("could not capture a feedback record", kind="capture")


#: The settings handler and processor accept besides ``shipper``, in FeedbackShipper's words.
SETTING_NAMES = (
    "api_key",
    "base_url",
    "batch_size",
    "flush_interval",
    "max_queue_size",
    "timeout",
    "max_retry_time",
    "exit_timeout",
    "on_error",
    "default_user",
    "blocking",
    "allow_insecure_http",
)


def attach(
    shipper: Optional[FeedbackShipper], given: Mapping[str, Any]
) -> tuple[FeedbackShipper, bool]:
    """The shipper an adapter should use, and whether it owns (and so closes) it.

    ``given`` is the adapter's arguments; settings and a shared shipper are exclusive, so that a
    setting is never silently ignored.
    """
    settings = {name: given[name] for name in SETTING_NAMES}
    if shipper is None:
        return FeedbackShipper(**settings), True
    passed = sorted(name for name, value in settings.items() if value is not None)
    if passed:
        raise ConfigurationError(f"pass either shipper= or settings, not both (got {passed})")
    return shipper, False
