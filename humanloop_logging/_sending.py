"""Sending one batch: validate its records, then deliver the valid ones as the policy decides.

``Sending`` turns the delivery policy's steps (``_delivery``) into requests through the
transport, within the window of requests in flight, and has every outcome counted by the engine
(``Books.finish``): each record ends sent, rejected or failed, once. Rows of the spool are
settled through ``Disk``; without a spool nothing is on disk (``NO_DISK``).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from functools import partial
from typing import Any, Callable, Optional, Protocol

from . import _details
from ._delivery import (
    Answer,
    GiveUp,
    Outcome,
    Payload,
    Send,
    Step,
    deliver,
    drive,
    halves,
    split_422,
    suspect,
)
from ._flow import Turn, Turns, Window
from ._record import Captured, encode_array, safe_repr, to_payload, to_payloads
from ._report import Reporter
from .exceptions import (
    APIError,
    AuthenticationError,
    DeliveryError,
    FeedbackValidationError,
    UnprocessableEntityError,
)

__all__ = ["NO_DISK", "Books", "Disk", "Sending"]


class Books(Protocol):
    """What sending needs of the engine: the counts and the deadline."""

    def finish(
        self,
        epoch: int,
        *,
        sent: int = 0,
        rejected: int = 0,
        failed: int = 0,
        filtered: int = 0,
        withheld: int = 0,
        out_of_time: bool = False,
        from_disk: int = 0,
        then: Optional[Callable[[], None]] = None,
    ) -> bool: ...

    def retried(self) -> None: ...

    def deadline_for(self, epoch: int) -> float: ...

    def current(self, epoch: int) -> bool: ...


class Disk(Protocol):
    """What sending needs of the spool, for records that are rows of it."""

    def settle(self, chunk: list[Payload]) -> int:
        """The service answered for these: their rows leave the disk; how many there were."""

    def keep(self, chunk: list[Payload]) -> bool:
        """Time ran out on these: True if they stay on disk to be tried again later."""

    def succeeded(self) -> None:
        """A request was accepted: the service is back."""

    def heartbeat(self) -> None:
        """A long wait: keep this process's claim on its rows."""


class _NoDisk:
    """Without a spool: nothing is on disk, nothing is kept."""

    def settle(self, chunk: list[Payload]) -> int:
        return 0

    def keep(self, chunk: list[Payload]) -> bool:
        return False

    def succeeded(self) -> None:
        return None

    def heartbeat(self) -> None:
        return None


NO_DISK: Disk = _NoDisk()

#: Never: more attempts than any send makes.
_NEVER = 1 << 30


def _poisoned() -> DeliveryError:
    return DeliveryError(
        "Humanloop fails on this record alone, twice, while other records of its batch were "
        "accepted: given up on it so that it costs only itself"
    )


class Sending:
    """Validates and delivers batches; shared by every thread that sends for one engine."""

    def __init__(
        self,
        *,
        transport: Any,
        books: Books,
        reporter: Reporter,
        default_user: Optional[str],
        max_in_flight: int,
        turns: Turns,
        lock: threading.Condition,
    ) -> None:
        self.transport = transport
        self._books = books
        self.reporter = reporter
        self._default_user = default_user
        self.window = Window(max_in_flight)
        self._turns = turns
        self._lock = lock
        self.disk: Disk = NO_DISK
        #: Seconds between heartbeats of a long backoff wait (with a spool: its lease).
        self.heartbeat_every = math.inf
        self._nap = threading.Condition(threading.Lock())  # backoff waits; close() cuts them short
        self._naps_cut = 0
        self._auth_failed = False
        self._outage = False  # the last isolation found everything failing; cleared by a success
        #: ``before_send``, applied before validation (None: no hook, nothing to do).
        self.screen: Optional[Callable[[list[Captured], int], list[Captured]]] = None
        #: Disabled (``enabled=False``): valid records are counted withheld, never sent.
        self.withhold = False

    # -- one batch --------------------------------------------------------------------------

    def process(self, batch: list[Captured], epoch: int, turn: Optional[Turn] = None) -> None:
        """Validate each record, then deliver the valid ones; every record ends in one bucket.

        With a ``turn``, the batch waits for earlier batches about its data_ids to be answered.
        """
        try:
            self._validate_and_deliver(batch, epoch, turn)
        finally:
            if turn is not None:
                with self._lock:
                    self._turns.done(turn)

    def _validate_and_deliver(
        self, batch: list[Captured], epoch: int, turn: Optional[Turn]
    ) -> None:
        if self.screen is not None:
            batch = self.screen(batch, epoch)
        try:
            valid, errors = to_payloads(batch, self._default_user)
        except Exception:  # to_payloads promises not to, but never lose the count: one by one
            valid, errors = self._one_by_one(batch, epoch)
        if errors:
            self.refuse(errors, epoch)
        if not valid:
            return
        books = self._books
        if self.withhold:
            books.finish(epoch, withheld=len(valid))
            return
        if turn is None or self._turns.wait(turn, until=lambda: not books.current(epoch)):
            self.deliver(valid, epoch)

    def _one_by_one(
        self, batch: list[Captured], epoch: int
    ) -> tuple[list[Payload], list[FeedbackValidationError]]:
        valid: list[Payload] = []
        errors: list[FeedbackValidationError] = []
        for item in batch:
            try:
                valid.append(to_payload(item, self._default_user)[1].decode("utf-8"))
            except FeedbackValidationError as error:
                errors.append(error)
            except Exception as error:
                said = f"could not read a feedback record: {safe_repr(error)}"
                self._books.finish(
                    epoch, rejected=1, then=partial(self.reporter.log, said, kind="bug")
                )
        return valid, errors

    def refuse(self, errors: list[FeedbackValidationError], epoch: int, from_disk: int = 0) -> None:
        """Records that are not valid feedback: rejected before sending, each said why."""

        def say() -> None:
            for error in errors:
                self.reporter.report(error, kind=f"invalid:{error.field}")

        self._books.finish(epoch, rejected=len(errors), from_disk=from_disk, then=say)

    def deliver(self, items: list[Payload], epoch: int) -> None:
        """Send ``items`` as the delivery policy (``_delivery``) decides; whatever the service
        refuses costs only the records it is about."""

        def answer(step: Step) -> Optional[Answer]:
            if isinstance(step, Send):
                return self._try(step.chunk, step.suspect_after, epoch)
            if isinstance(step, GiveUp):
                self._give_up(step.chunk, _poisoned(), epoch)
            else:
                self._outage = True
            return None

        drive(deliver(items, lambda: self._outage), answer)

    def _try(self, chunk: list[Payload], suspect_after: int, epoch: int) -> Answer:
        """Send ``chunk`` and count what became of it; the parts left to send come back.

        The outcome is the policy's (``_delivery.Outcome``): accepted, rejected by a 422 (the
        named records), suspect ``suspect_after`` times in a row (nothing counted yet), or failed
        (given up on, or split after a 413).
        """
        try:
            self._send(chunk, suspect_after, epoch)
        except UnprocessableEntityError as error:
            return Outcome.REJECTED, self._split_422(chunk, error, epoch)
        except APIError as error:
            if error.status == 413 and len(chunk) > 1:
                return Outcome.FAILED, halves(chunk)
            if suspect_after and suspect(error.status):
                return Outcome.SUSPECT, []
            self._give_up(chunk, error, epoch)
        except DeliveryError as error:
            self._give_up(chunk, error, epoch)
        except Exception as error:  # a bug, not the network: still account for the records
            self._give_up(chunk, DeliveryError(f"unexpected error: {safe_repr(error)}"), epoch)
        else:
            self._auth_failed = self._outage = False
            self.disk.succeeded()
            self._books.finish(epoch, sent=len(chunk), from_disk=self.disk.settle(chunk))
            self.reporter.recovered()
            return Outcome.OK, []
        return Outcome.FAILED, []

    def _split_422(
        self, chunk: list[Payload], error: UnprocessableEntityError, epoch: int
    ) -> list[list[Payload]]:
        """Reject the items a 422 names; return what is left to send (bisected if none named)."""
        named = _details.item_errors(error.details, len(chunk))
        indices, rest = split_422(chunk, named)
        if not indices:
            return rest
        if not named:
            reasons = _details.body_errors(error.details, 1) or [error.message]
            named = {0: [("", reason) for reason in reasons]}
        rejected = [(json.loads(chunk[index]), named[index]) for index in indices]

        def say() -> None:
            for record, fields in rejected:
                reasons = [f"{field}: {message}" if field else message for field, message in fields]
                self.reporter.report(
                    UnprocessableEntityError(
                        f"Humanloop rejected feedback for data_id={record.get('data_id')!r}: "
                        + _details.describe(fields),
                        error.details,
                        [(record, reasons)],
                    ),
                    kind="422",
                )

        from_disk = self.disk.settle([chunk[index] for index in indices])
        self._books.finish(epoch, rejected=len(rejected), from_disk=from_disk, then=say)
        return rest

    def _give_up(self, chunk: list[Payload], error: DeliveryError, epoch: int) -> None:
        if error.retryable and self.disk.keep(chunk):
            return  # kept on disk, to be tried again later: nothing is given up for time alone

        def say() -> None:  # unless close() wrote these off, and so reported them, already
            error.records = [json.loads(payload) for payload in chunk]
            if isinstance(error, AuthenticationError):
                if self._auth_failed:
                    return  # said once already; the counters still show every failed record
                self._auth_failed = True
                self.reporter.report(error, kind="auth", level=logging.ERROR)
                return
            kind = f"failed:{type(error).__name__}"
            self.reporter.report(error, kind=kind, level=logging.ERROR)

        from_disk = self.disk.settle(chunk)
        self._books.finish(
            epoch, failed=len(chunk), out_of_time=error.retryable, from_disk=from_disk, then=say
        )

    # -- one request ------------------------------------------------------------------------

    def _send(self, chunk: list[Payload], suspect_after: int, epoch: int) -> None:
        """One POST of ``chunk`` with retries, within the window of requests in flight;
        ``suspect_after`` attempts of a suspect answer end it early (0: never)."""
        body = encode_array(chunk)
        window = self.window
        deadline = partial(self._books.deadline_for, epoch)
        control = _Send(self, deadline, suspect_after or _NEVER, window.acquire(deadline))
        try:
            self.transport.send(body, chunk, control)
        except DeliveryError as error:
            if error.retryable:
                control.congested()
            raise
        else:
            window.succeeded()
        finally:
            window.release()

    @property
    def naps_cut(self) -> int:
        return self._naps_cut

    def sleep(self, seconds: float, seen: int) -> int:
        """A backoff wait of a send that has seen ``seen`` closes begin; one begun since then
        cuts it short (or skips it), so that the send looks at its deadline again. Returns the
        count now, for the same send's next wait."""
        # With a spool, a long wait (Retry-After) must not let the spool's lease lapse: others
        # would take the rows of this live process, and send them a second time.
        step = min(seconds, self.heartbeat_every)
        end = time.monotonic() + seconds
        while True:
            remaining = end - time.monotonic()
            with self._nap:
                if self._naps_cut != seen or remaining <= 0:
                    return self._naps_cut
                self._nap.wait(min(remaining, step))
            if self.heartbeat_every < math.inf:
                self.disk.heartbeat()

    def cut_naps(self) -> None:
        """A close began: every backoff wait ends now, to look at the deadline again."""
        with self._nap:
            self._naps_cut += 1
            self._nap.notify_all()

    def retrying(self, error: DeliveryError) -> None:
        self._books.retried()
        self.reporter.problem(error)


class _Send:
    """The SendControl of one request: the engine's deadline and waits, and what is this
    request's own (when to suspect the batch, the window round it saw)."""

    __slots__ = ("_naps_cut", "_round", "_sending", "_suspect_after", "deadline")

    def __init__(
        self,
        sending: Sending,
        deadline: Callable[[], float],
        suspect_after: int,
        round_: int,
    ) -> None:
        self._sending = sending
        self.deadline = deadline  # the engine's, until close() writes this send off
        self._suspect_after = suspect_after
        self._round = round_
        self._naps_cut = sending.naps_cut  # a close begun from now on cuts this send's wait

    def sleep(self, seconds: float) -> None:
        self._naps_cut = self._sending.sleep(seconds, self._naps_cut)

    def retrying(self, error: DeliveryError, wait: float) -> None:
        if error.retryable:
            self.congested()
            if error.retry_after is not None:  # the service said when: the others wait too
                self._sending.window.pause(wait)
        self._sending.retrying(error)

    def congested(self) -> None:
        """A 429, a 503 or another transient failure: fewer requests in flight (AIMD)."""
        self._round = self._sending.window.congested(self._round)

    def give_up_early(self, error: DeliveryError, attempts: int) -> bool:
        """Stop retrying a part that may hold a record the service fails on.

        The whole batch gets one retry before it is suspected, a part sent while isolating
        none, and a lone record one (so a flaky answer does not cost a good record).
        """
        return (
            isinstance(error, APIError)
            and suspect(error.status)
            and attempts >= self._suspect_after
        )
