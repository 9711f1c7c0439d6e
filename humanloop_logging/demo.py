"""``humanloop-logging demo``: a small chat app logging feedback through faults, then a summary.

Against the built-in stand-in (the default) it needs no key and no network: several threads log a
few thousand feedback events through stdlib logging and structlog, some of them invalid and some
for datapoints the stand-in does not know, while the stand-in answers 503s, a 429 with
``Retry-After`` and dropped connections. The app then exits the way apps do, and the summary says
what was sent, retried and rejected (with the 422 details), how fast the caller's threads logged,
and how long draining took. ``--base-url`` points it at another server instead, without faults.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional, TextIO

import structlog

from .exceptions import (
    FeedbackValidationError,
    HumanloopLoggingError,
    UnprocessableEntityError,
)
from .handler import FeedbackHandler
from .processor import FeedbackProcessor
from .testing import FakeHumanloop

__all__ = ["run_demo"]

RATINGS = ("good", "bad")
ACTIONS = ("copy", "share", "regenerate")
ISSUES = (["hallucination"], ["off-topic", "too-long"], ["unsafe"])

#: The stdlib loggers the demo sets up for its run: the library's own, and the app's.
_OWN_LOGGER = "humanloop_logging"
_APP_LOGGER = "chatapp.feedback"
_TOUCHED = (_OWN_LOGGER, _APP_LOGGER)


@dataclass
class _Plan:
    """What each simulated user does, decided up front so the outcome can be checked."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (via, fields)
    valid: Counter[str] = field(default_factory=Counter)  # data_id -> how many should arrive
    unknown: set[str] = field(default_factory=set)  # data_ids the service does not know
    invalid: int = 0


def _plan(events: int, seed: int) -> _Plan:
    """A realistic mix: mostly ratings and actions, some corrections, a few bad records."""
    rng = random.Random(seed)
    plan = _Plan()
    for n in range(events):
        data_id = f"data_{n // 3:05d}"  # each answer gets about three pieces of feedback
        via = "stdlib" if n % 2 == 0 else "structlog"
        roll = rng.random()
        fields: dict[str, Any]
        if roll < 0.40:
            fields = {"type": "rating", "value": rng.choice(RATINGS)}
        elif roll < 0.70:
            fields = {"type": "action", "value": rng.choice(ACTIONS)}
        elif roll < 0.80:
            fields = {"type": "correction", "value": f"A better answer, take {n}."}
        elif roll < 0.86:
            fields = {"type": "issue", "value": list(rng.choice(ISSUES))}
        elif roll < 0.90:
            fields = {"type": "rating", "unset": True}
        elif roll < 0.95:
            fields = {"type": "comment", "value": "Helpful, thanks!", "user": f"user_{n % 50}"}
        elif roll < 0.975:  # bugs in the app: the library refuses these before sending
            fields = rng.choice(
                [
                    {"type": "rating", "value": {"stars": 5}},
                    {"type": "rating", "value": float("nan")},
                    {"type": "rating", "value": ["slow", 3]},
                    {"type": None, "value": "good"},
                ]
            )
            plan.invalid += 1
        else:  # feedback on an answer the service has since deleted: a 422 from Humanloop
            data_id = f"data_gone_{n:05d}"
            fields = {"type": "rating", "value": "bad"}
            plan.unknown.add(data_id)
        fields["data_id"] = data_id
        plan.events.append((via, fields))
        if roll < 0.95:
            plan.valid[data_id] += 1
    return plan


@contextmanager
def _server(
    base_url: Optional[str], api_key: Optional[str]
) -> Iterator[tuple[str, str, Optional[FakeHumanloop]]]:
    if base_url is not None:
        yield base_url, api_key or "", None
        return
    with FakeHumanloop() as fake:
        yield fake.base_url, fake.api_key, fake


@contextmanager
def _logging_given_back(names: Sequence[str]) -> Iterator[None]:
    """Put back the handlers, level and propagation of the loggers ``names``, and structlog's
    configuration, as they were before, however the block ends.

    The demo also runs inside other processes (a test, a notebook, an app calling ``run_demo``),
    whose logging is not the demo's to keep.
    """
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    configured, config = structlog.is_configured(), structlog.get_config()
    try:
        yield
    finally:
        for logger, handlers, level, propagate in saved:
            for handler in list(logger.handlers):
                if handler not in handlers:
                    logger.removeHandler(handler)
            for handler in handlers:
                logger.addHandler(handler)  # a no-op for the handlers still there
            logger.setLevel(level)
            logger.propagate = propagate
        if configured:
            structlog.configure(**config)
        else:
            structlog.reset_defaults()  # is_configured() is False again, as it was


#: Seconds the demo's close may take: three times what the injected faults' waits add up to.
DRAIN_BUDGET = 15.0


def _chaos(fake: FakeHumanloop, total: int, done: threading.Event) -> Counter[str]:
    """Inject faults as the stand-in fills up: 503s, a 429 with Retry-After, dropped connections."""
    injected: Counter[str] = Counter()
    schedule: list[tuple[int, Callable[[], None], str, int]] = [
        (total // 8, lambda: fake.fail_next(3, 503), "503 Service Unavailable", 3),
        (total // 4, lambda: fake.fail_next(1, 429, retry_after=1), "429 with Retry-After: 1", 1),
        ((3 * total) // 8, lambda: fake.reset_next(2), "connection dropped", 2),
        (total // 2, lambda: fake.fail_next(2, 503), "503 Service Unavailable", 2),
    ]
    for threshold, inject, label, count in schedule:
        while not fake.wait_for_items(threshold, timeout=0.2):
            if done.is_set():
                return injected
        inject()
        injected[label] += count
    return injected


def _app(
    plan: _Plan,
    worker: int,
    *,
    workers: int,
    stdlib_log: logging.Logger,
    slog: Any,
    pace: float,
) -> None:
    """One request-handling thread of the app: log this worker's share of the feedback."""
    rng = random.Random(worker)
    for index in range(worker, len(plan.events), workers):
        time.sleep(rng.uniform(0, 2 * pace))  # the app's own work between two feedback events
        via, fields = plan.events[index]
        if via == "stdlib":
            stdlib_log.info("user feedback", extra=fields)
        else:
            slog.info("user feedback", **fields)


def run_demo(
    *,
    base_url: Optional[str] = None,
    api_key: Optional[str] = None,
    events: int = 3000,
    threads: int = 4,
    seed: int = 7,
    duration: float = 3.0,
    out: Optional[TextIO] = None,
) -> int:
    """Run the demo; returns 0 when every valid record arrived exactly once (stand-in only)."""
    out = out or sys.stdout
    plan = _plan(events, seed)
    errors: list[HumanloopLoggingError] = []
    errors_lock = threading.Lock()

    def on_error(error: HumanloopLoggingError) -> None:
        with errors_lock:
            errors.append(error)

    with _server(base_url, api_key) as (url, key, fake), _logging_given_back(_TOUCHED):
        if fake is not None:
            fake.reject_data_ids(*sorted(plan.unknown))
        handler = FeedbackHandler(key, url, on_error=on_error)
        done = threading.Event()
        chaos = None
        try:
            own_log = logging.getLogger(_OWN_LOGGER)
            own_handler = logging.StreamHandler(out)
            own_handler.setFormatter(logging.Formatter("  [%(name)s %(levelname)s] %(message)s"))
            own_log.addHandler(own_handler)
            own_log.propagate = False
            stdlib_log = logging.getLogger(_APP_LOGGER)
            stdlib_log.setLevel(logging.INFO)
            stdlib_log.addHandler(handler)
            stdlib_log.propagate = False
            structlog.configure(
                processors=[FeedbackProcessor(shipper=handler.shipper, drop=True)],
                logger_factory=structlog.PrintLoggerFactory(),
                cache_logger_on_first_use=False,
            )
            slog = structlog.get_logger("chatapp")
            chaos_result: dict[str, Counter[str]] = {}
            if fake is not None:
                chaos = threading.Thread(
                    target=lambda: chaos_result.setdefault("injected", _chaos(fake, events, done)),
                    name="demo-faults",
                    daemon=True,
                )
                chaos.start()
            print(
                f"humanloop-logging demo: {threads} threads log {events} feedback events to {url}",
                file=out,
            )
            started = time.perf_counter()
            workers = [
                threading.Thread(
                    target=_app,
                    args=(plan, n),
                    kwargs={
                        "workers": threads,
                        "stdlib_log": stdlib_log,
                        "slog": slog,
                        "pace": duration * threads / max(events, 1),
                    },
                    name=f"app-{n}",
                )
                for n in range(threads)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            logged = time.perf_counter() - started
            # The app is done; closing drains, as the exit hook would, within a budget that fits
            # the faults above: their backoffs and the Retry-After alone take 4 to 5 s, as long
            # as the default exit_timeout, so that budget would leave the result to chance.
            handler.shipper.close(DRAIN_BUDGET)
            drained = time.perf_counter() - started - logged
        finally:
            done.set()
            if chaos is not None:
                chaos.join(5)
            handler.close()  # after an error; a second close has nothing left to do
        stats = handler.stats()
        received = fake.received if fake is not None else []
        requests_seen = fake.requests if fake is not None else []

    arrived = Counter(str(item.get("data_id")) for item in received)
    exactly_once = arrived == plan.valid if fake is not None else None
    refused = [e for e in errors if isinstance(e, FeedbackValidationError)]
    rejected_422 = [e for e in errors if isinstance(e, UnprocessableEntityError)]
    other = [e for e in errors if e not in refused and e not in rejected_422]
    injected = chaos_result.get("injected", Counter())

    w = out.write
    w("\n")
    w(f"  logged     {events:>7,}  events over {logged:.2f} s from {threads} threads\n")
    w(
        f"  sent       {stats.sent:>7,}  in {sum(1 for r in requests_seen if r.status == 200):,} requests"
        f" ({stats.sent / max(logged + drained, 1e-9):,.0f} records/s end to end)\n"
    )
    w(
        f"  retried    {stats.retried:>7,}  requests, after: "
        + (", ".join(f"{label} x{count}" for label, count in injected.items()) or "none injected")
        + "\n"
    )
    w(
        f"  rejected   {stats.rejected:>7,}  ({len(refused)} refused before sending, {len(rejected_422)} by Humanloop with a 422)\n"
    )
    w(f"  dropped    {stats.dropped:>7,}\n")
    w(f"  failed     {stats.failed:>7,}\n")
    w(f"  pending    {stats.pending:>7,}\n")
    w(f"  drained    {drained:.2f} s after the last log call\n")
    if refused:
        w("\n  refused before sending (the app's bugs), by reason:\n")
        for reason, count in Counter(f"{e.field} {e.reason}" for e in refused).most_common():
            w(f"    {count:>4} x {reason}\n")
    if rejected_422:
        w("\n  rejected by Humanloop (422 details):\n")
        for rejection in rejected_422[:5]:
            for record, reasons in rejection.rejected:
                w(f"    data_id={record.get('data_id')}: {'; '.join(reasons)}\n")
        if len(rejected_422) > 5:
            w(f"    ... and {len(rejected_422) - 5} more\n")
    if other:
        w("\n  other problems:\n")
        for problem in other[:5]:
            w(f"    {problem}\n")
    if exactly_once is not None:
        valid = sum(plan.valid.values())
        verdict = "each exactly once" if exactly_once else "MISMATCH"
        w(f"\n  the stand-in received {len(received):,} of {valid:,} valid records, {verdict}\n")
        return 0 if exactly_once and stats.pending == 0 else 1
    return 0 if stats.failed == 0 and stats.pending == 0 else 1
