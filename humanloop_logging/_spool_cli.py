"""``humanloop-logging spool status|drain PATH``: look into a spool file, and empty it by hand.

``status`` reads the file read-only and takes nothing over. ``drain`` is a shipper of its own on
that file: it takes over the rows of processes that are gone (or that exited cleanly), sends them
with the same retries and isolation as any shipper, and stops when the file is empty. Ctrl-C (or
SIGTERM) stops it within a few seconds, and so does ``--timeout`` when it passes; what is not sent
stays on disk.

Exit status of ``drain``: 0 the spool is empty; 1 rows are left that running processes hold (or the
file could not be read); 2 bad settings; 124 ``--timeout`` passed first (as coreutils' ``timeout``
exits, so a deploy hook can tell "ran out of time" from "failed"); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional

from ._spool_status import SpoolStatus, read_status
from .exceptions import ConfigurationError, SpoolError

#: Longest a drain interrupted by Ctrl-C (or out of --timeout) spends on the request in flight.
_STOP_TIMEOUT = 3.0

#: ``spool drain``'s exit status when its --timeout passed before the spool was empty.
TIMED_OUT = 124


def add_spool(subparsers: Any) -> None:
    spool = subparsers.add_parser(
        "spool",
        help="look into a feedback spool file, or send what it holds",
        description="Commands for the durable spool (spool_path / HUMANLOOP_FEEDBACK_SPOOL_PATH).",
    )
    commands = spool.add_subparsers(title="spool commands", dest="spool_command", metavar="CMD")
    commands.required = True
    status = commands.add_parser(
        "status", help="rows, bytes, oldest age and owners of a spool, read-only"
    )
    status.add_argument("path", help="the spool file")
    status.set_defaults(func=_status)
    drain = commands.add_parser(
        "drain",
        help="send everything a spool holds, then exit (0 only when it is empty)",
        description=(
            "Send the records in the spool at PATH to Humanloop, oldest first, with the retries "
            "of any shipper. Rows of running processes are left to them. Exits 0 when the spool "
            "is empty, 1 when rows of running processes are left, 124 when --timeout passed "
            "first, 130 on Ctrl-C; what was not sent stays on disk."
        ),
    )
    drain.add_argument("path", help="the spool file")
    drain.add_argument(
        "--base-url", default=None, help="where to send (default: HUMANLOOP_BASE_URL, or v4)"
    )
    drain.add_argument("--api-key", default=None, help="the API key (default: HUMANLOOP_API_KEY)")
    drain.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        default=None,
        help="stop after SECONDS (and up to 3 s more for the request in flight), leave the rest "
        "on disk and exit 124 (default: no limit)",
    )
    drain.set_defaults(func=_drain)


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {text}")
    return seconds


def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def _print_status(status: SpoolStatus) -> None:
    print(f"spool:      {status.path}")
    print(f"rows:       {status.rows} ({status.waiting} waiting for a process to take them)")
    print(f"bytes:      {status.bytes}")
    print(f"oldest:     {_age(status.oldest_age)}")
    print(f"owners:     {len(status.owners)}")
    for owner in status.owners:
        state = "alive" if owner.alive else "gone"
        print(
            f"  pid {owner.pid} on {owner.host}: {state}, {owner.rows} row(s), "
            f"heartbeat {_age(owner.heartbeat_age)} ago"
        )


def _status(args: argparse.Namespace) -> int:
    try:
        status = read_status(args.path)
    except SpoolError as error:
        print(f"humanloop-logging spool status: {error}", file=sys.stderr)
        return 1
    _print_status(status)
    return 0


@contextlib.contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` instead of raising wherever the main thread happens to be.

    A KeyboardInterrupt can land anywhere, inside the library's own code too (a lock just taken, a
    close half done); a second Ctrl-C would land in the close itself. An event is looked at only
    where the drain expects it. Outside the main thread (the CLI run in-process) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        signum: signal.signal(signum, lambda _signum, _frame: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _drain(args: argparse.Namespace) -> int:
    stop = threading.Event()
    with _stopped_by_signals(stop):
        return _drain_until(args, stop)


def _drain_until(args: argparse.Namespace, stop: threading.Event) -> int:
    from .shipper import FeedbackShipper  # noqa: PLC0415 (status needs none of it)

    path = os.path.abspath(args.path)
    try:
        before = read_status(path)
    except SpoolError as error:
        print(f"humanloop-logging spool drain: {error}", file=sys.stderr)
        return 1
    try:
        shipper = FeedbackShipper(args.api_key, args.base_url, spool_path=path, flush_interval=0.05)
    except ConfigurationError as error:
        print(f"humanloop-logging spool drain: {error}", file=sys.stderr)
        return 2
    progress = _Progress(before.rows, sys.stderr.isatty())
    started = time.monotonic()
    deadline = None if args.timeout is None else started + args.timeout
    timed_out = False
    try:
        while not stop.is_set():
            stats = shipper.stats()
            progress.show(stats.sent + stats.rejected + stats.failed)
            left = read_status(path)
            if left.rows == 0 or not _takeable(left, stats.spooled):
                break
            wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if wait <= 0:
                timed_out = True
                break
            stop.wait(wait)
    finally:
        interrupted = stop.is_set()
        shipper.close(_STOP_TIMEOUT)
        shipper._engine.release_spool()  # what is left is for the next process
        progress.done()
    stats = shipper.stats()
    try:
        after = read_status(path)
    except SpoolError as error:
        print(f"humanloop-logging spool drain: {error}", file=sys.stderr)
        return 1
    print(
        f"{stats.sent} sent, {stats.rejected} rejected, {stats.failed} given up, "
        f"{after.rows} left in {path} ({time.monotonic() - started:.1f} s)"
    )
    if after.rows and not interrupted:
        busy = [f"pid {o.pid} on {o.host}" for o in after.owners if o.alive and o.rows]
        if busy:
            print(f"the rest belongs to running processes: {', '.join(busy)}")
    if interrupted:
        return 130
    if timed_out and after.rows:
        print(f"stopped: --timeout {args.timeout:g} s passed; the rest stays on disk")
        return TIMED_OUT
    return 0 if after.rows == 0 else 1


def _takeable(status: SpoolStatus, mine: int) -> bool:
    """Whether rows are left that this drain holds or can take over (not a live process's)."""
    others_alive = sum(o.rows for o in status.owners if o.alive)
    return status.rows - others_alive > 0 or mine > 0


class _Progress:
    """A one-line progress bar on a terminal; nothing otherwise."""

    def __init__(self, total: int, tty: bool) -> None:
        self._total = max(total, 1)
        self._tty = tty
        self._shown = False

    def show(self, done: int) -> None:
        if not self._tty:
            return
        share = min(done / self._total, 1.0)
        bar = "#" * int(share * 30)
        sys.stderr.write(f"\r[{bar:<30}] {done}/{self._total} ({share:.0%})")
        sys.stderr.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            sys.stderr.write("\n")
