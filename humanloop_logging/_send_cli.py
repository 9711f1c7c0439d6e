"""``humanloop-logging send [PATH ...|-]``: feedback in JSON log lines, sent to Humanloop once.

Lines are read in chunks of one batch (``batch_size``) of feedback records. A chunk is handed to
a ``FeedbackShipper`` (so validation, batching, retries, 422 and poison isolation, rate limits and
diagnostics are the engine's), flushed until every record in it is settled (sent, rejected, or
given up on), and only then is the checkpoint moved past its last line. So a ``kill -9`` at any
moment loses no line, and sends at most the one chunk in flight twice. A chunk the service cannot
take (given up after ``max_retry_time``) stops the run before its checkpoint: a rerun sends it.
The next chunk is read and parsed while one is in flight.

A rejected or invalid record is traced back to its line through the chunk: the engine's report
(``on_error``) carries the record, and the chunk knows which of its lines holds a record with that
``data_id`` and ``type`` (or, for an invalid one, those field reprs); the engine is not changed.

Exit status: 0 every feedback record was delivered; 1 some were rejected (422 or invalid); 2 a
usage or configuration error; 3 some are undeliverable (a rerun tries them again); 130 stopped by
Ctrl-C or SIGTERM before the end of a finite input (``--follow`` stops that way normally: 0).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from ._formats import Layout, layout_for
from ._record import DATA_ID, TYPE, Captured, described, to_payload
from ._send_view import Progress, Report, Tally, ThroughProgress, summary
from ._sources import Position, Read, Source, open_source
from ._spool_cli import _stopped_by_signals
from .exceptions import (
    ConfigurationError,
    DeliveryError,
    FeedbackValidationError,
    HumanloopLoggingError,
    UnprocessableEntityError,
)

__all__ = ["add_send"]

OK, REJECTED, USAGE, UNDELIVERABLE, INTERRUPTED = 0, 1, 2, 3, 130
#: Longest a stopped run spends settling the chunk in flight.
_STOP_TIMEOUT = 3.0
#: A chunk ends at this many bytes read even without a batch of feedback, so the checkpoint of a
#: file that is mostly other lines moves on too.
_CHUNK_BYTES = 16 << 20


def add_send(subparsers: Any) -> None:
    send = subparsers.add_parser(
        "send",
        help="send the feedback in JSON log lines (files, gzip, stdin) to Humanloop, once",
        description=(
            "Read JSON lines (structlog, python-json-logger, loguru serialize=True) from files, "
            "gzip files or standard input, and send the feedback among them with the library's "
            "retries and isolation. A checkpoint per file makes a rerun resume where the last "
            "one stopped. Exit status: 0 all delivered, 1 some rejected, 2 usage or "
            "configuration error, 3 undeliverable (rerun to retry), 130 interrupted."
        ),
    )
    send.add_argument(
        "paths",
        nargs="*",
        default=["-"],
        metavar="PATH",
        help="JSON-lines files, gzip files, or - for standard input (default)",
    )
    send.add_argument(
        "--format",
        default="auto",
        choices=("auto", "structlog", "python-json-logger", "loguru"),
        help="where feedback sits in a line (default: %(default)s, per line)",
    )
    send.add_argument(
        "--path",
        default=None,
        metavar="DOTTED",
        help="the object holding the feedback fields, e.g. record.extra",
    )
    send.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="FIELD=KEY",
        help="read FIELD (data_id, type, value, user, created_at, unset) from KEY; repeatable",
    )
    send.add_argument(
        "--time-field",
        default=None,
        metavar="DOTTED",
        help="the line's time, the created_at of its feedback (default: the format's own)",
    )
    send.add_argument(
        "--follow",
        "-F",
        action="store_true",
        help="keep reading as the files grow, across rotation and truncation "
        "(tail -F); stop with Ctrl-C or SIGTERM",
    )
    send.add_argument(
        "--poll-interval",
        type=float,
        default=0.25,
        metavar="SECONDS",
        help="how often --follow looks for new lines (default: %(default)s)",
    )
    send.add_argument(
        "--state",
        default=None,
        metavar="FILE",
        help="the checkpoint file (default: beside the spool if one is set, else "
        "$XDG_STATE_HOME/humanloop-logging/send-state.json)",
    )
    send.add_argument(
        "--dry-run",
        action="store_true",
        help="no network: list what would be sent and what refused, line by line",
    )
    send.add_argument(
        "--report",
        default=None,
        metavar="FILE",
        help="write each line not delivered (input, line, reason, 422 detail) as JSON lines",
    )
    send.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")
    send.add_argument(
        "--base-url", default=None, help="where to send (default: HUMANLOOP_BASE_URL, or v4)"
    )
    send.add_argument("--api-key", default=None, help="the API key (default: HUMANLOOP_API_KEY)")
    send.set_defaults(func=_send)  # fmt: skip


def _fail(message: str) -> int:
    print(f"humanloop-logging send: {message}", file=sys.stderr)
    return USAGE


def _send(args: argparse.Namespace) -> int:
    try:
        layout = layout_for(
            args.format, path=args.path, fields=args.field, time_field=args.time_field
        )
    except ValueError as error:
        return _fail(str(error))
    if args.paths.count("-") > 1 or ("-" in args.paths and len(args.paths) > 1 and args.follow):
        return _fail("standard input (-) can be read once, and not followed")
    if args.follow and "-" in args.paths:
        return _fail("--follow needs files; standard input is read to its end without it")
    if not args.poll_interval > 0:
        return _fail("--poll-interval must be a positive number of seconds")
    for path in args.paths:
        if path != "-" and not args.follow and not os.path.isfile(path):
            return _fail(f"{path}: no such file")
    stop = threading.Event()
    with _stopped_by_signals(stop):
        if args.dry_run:
            return _lint(args, layout, stop)
        return _run(args, layout, stop)


# -- chunks ----------------------------------------------------------------------------------------


@dataclass
class Chunk:
    """Up to a batch of feedback records, where each came from, and where each input stands after
    the chunk's last line."""

    items: list[Captured] = field(default_factory=list)
    where: list[tuple[str, int]] = field(default_factory=list)
    ends: dict[str, Position] = field(default_factory=dict)
    size: int = 0


class Reader:
    """The inputs, read into chunks; with ``follow``, forever (until ``stop``)."""

    def __init__(
        self,
        sources: list[Source],
        layout: Layout,
        *,
        batch: int,
        tally: Tally,
        report: Report,
        progress: Progress,
    ) -> None:
        self.sources = sources
        self.layout = layout
        self.batch = batch
        self.tally = tally
        self.report = report
        self.progress = progress
        self.done_bytes = 0

    def chunks(self, follow: bool, poll: float, stop: threading.Event) -> Iterator[Chunk]:
        self._chunk = Chunk()
        waiting = False  # an empty chunk was handed out at the last idle moment
        while not stop.is_set():
            active = [s for s in self.sources if not s.done]
            if not active:
                break
            moved = False
            for source in active if follow else active[:1]:
                read = source.read(follow)
                self._notes(source)
                if not (read.count or read.lines or read.size):
                    continue
                moved = True
                yield from self._take(source, read)
                if self._chunk.size >= _CHUNK_BYTES:
                    yield self._cut()
            if moved:
                waiting = False
            elif self._chunk.items or self._chunk.ends:
                yield self._cut()
                waiting = False
            elif follow and not waiting:
                waiting = True
                yield Chunk()  # lets the chunk in flight settle and save its checkpoint
            elif follow:
                stop.wait(poll)
        if self._chunk.items or self._chunk.ends:
            yield self._cut()

    def _cut(self) -> Chunk:
        chunk, self._chunk = self._chunk, Chunk()
        return chunk

    def _notes(self, source: Source) -> None:
        for note in source.notes:
            self.progress.write(f"humanloop-logging send: {note}")
        source.notes.clear()

    def _take(self, source: Source, read: Read) -> Iterator[Chunk]:
        tally = self.tally
        tally.lines += read.count
        tally.bytes += read.size
        tally.skipped["not feedback"] += read.count - len(read.lines)
        self.done_bytes += read.size
        self._chunk.size += read.size
        key = source.key
        recognise = self.layout.recognise
        batch = self.batch
        now = time.time()
        for number, end, text in read.lines:
            got = recognise(text, now)
            if isinstance(got, str):
                tally.skipped[got] += 1
                self.report.write(source.name, number, "skipped", got)
                continue
            tally.feedback += 1
            chunk = self._chunk
            chunk.items.append(got)
            chunk.where.append((source.name, number))
            if len(chunk.items) >= batch:
                if key is not None:
                    chunk.ends[key] = Position(read.end.identity, end, number)
                yield self._cut()
        if key is not None:
            self._chunk.ends[key] = read.end
        self.progress.update(read.size, self.done_bytes, tally)


# -- sending ---------------------------------------------------------------------------------------


class Errors:
    """The engine's reports (``on_error``), gathered from the flush thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._errors: list[HumanloopLoggingError] = []
        self._covered = 0

    def __call__(self, error: HumanloopLoggingError) -> None:
        with self._cond:
            self._errors.append(error)
            if isinstance(error, UnprocessableEntityError):
                self._covered += max(len(error.rejected), 1)
            elif isinstance(error, DeliveryError):
                self._covered += error.count
            else:
                self._covered += 1
            self._cond.notify_all()

    def take(self, records: int, timeout: float) -> list[HumanloopLoggingError]:
        """The reports about at least ``records`` records (the engine counts, then reports)."""
        with self._cond:
            self._cond.wait_for(lambda: self._covered >= records, timeout)
            errors, self._errors, self._covered = self._errors, [], 0
            return errors


def _where_of(chunk: Chunk, error: HumanloopLoggingError) -> list[tuple[Optional[tuple[str, int]],
                                                                         Any]]:  # fmt: skip
    """The lines of ``chunk`` an engine report is about, each with its record's data_id."""
    if isinstance(error, FeedbackValidationError):
        for index, item in enumerate(chunk.items):
            if described(item) == error.record:
                spot = _claim(chunk, index)
                if spot is not None:
                    return [(spot, item[DATA_ID])]
        return [(None, error.record.get("data_id"))]
    records: list[Mapping[str, Any]] = []
    if isinstance(error, UnprocessableEntityError):
        records = [record for record, _ in error.rejected]
    elif isinstance(error, DeliveryError):
        records = error.records
    found: list[tuple[Optional[tuple[str, int]], Any]] = []
    for record in records:
        spot = None
        for index, item in enumerate(chunk.items):
            if item[DATA_ID] == record.get("data_id") and item[TYPE] == record.get("type"):
                spot = _claim(chunk, index)
                if spot is not None:
                    break
        found.append((spot, record.get("data_id")))
    return found


def _claim(chunk: Chunk, index: int) -> Optional[tuple[str, int]]:
    """Each line answers for one report: a line claimed once is not named again."""
    spot = chunk.where[index]
    if spot[1] < 0:
        return None
    chunk.where[index] = (spot[0], -1)
    return spot


def _run(args: argparse.Namespace, layout: Layout, stop: threading.Event) -> int:
    from ._checkpoints import Checkpoints, default_state_path  # noqa: PLC0415
    from .shipper import FeedbackShipper  # noqa: PLC0415 (parsing the line needs none of it)

    errors = Errors()
    try:
        shipper = FeedbackShipper(args.api_key, args.base_url, on_error=errors)
    except ConfigurationError as error:
        return _fail(str(error))
    settings = shipper.settings
    try:
        checkpoints = Checkpoints(args.state or default_state_path(settings.spool_path))
        lock = _lock(checkpoints.path)
    except (OSError, ValueError) as error:
        shipper.close(0)
        return _fail(str(error))
    tally = Tally()
    sources: list[Source] = []
    try:
        for name in args.paths:
            start = None if name == "-" else checkpoints.get(os.path.abspath(name))
            if start is not None:
                tally.resumed = max(tally.resumed, start.line)
            sources.append(open_source(name, layout.needle, start))
    except OSError as error:
        shipper.close(0)
        return _fail(str(error))
    totals = [s.total for s in sources]
    total = None if args.follow or None in totals else sum(t or 0 for t in totals)
    progress = Progress(total, sys.stderr.isatty() and not args.quiet)
    voice = ThroughProgress(progress, logging.ERROR if args.quiet else logging.WARNING)
    library = logging.getLogger("humanloop_logging")
    library.addHandler(voice)
    report = Report(args.report)
    started = time.monotonic()
    status = OK
    try:
        reader = Reader(
            sources,
            layout,
            batch=settings.batch_size,
            tally=tally,
            report=report,
            progress=progress,
        )
        status = _deliver(reader, shipper, errors, checkpoints, args=args, stop=stop)
    finally:
        shipper.close(_STOP_TIMEOUT)
        progress.close()
        library.removeHandler(voice)
        report.close()
        for source in sources:
            source.close()
        with contextlib.suppress(OSError):
            checkpoints.save(sync=True)
        lock.close()
    if not args.quiet:
        for line in summary(tally, time.monotonic() - started):
            print(line)
    if status != OK:
        return status
    if stop.is_set() and not args.follow and not all(s.done for s in sources):
        return INTERRUPTED
    if tally.undeliverable:
        return UNDELIVERABLE
    return REJECTED if tally.rejected or tally.invalid else OK


def _lock(state: str) -> Any:
    """One send per state file: two would overwrite each other's checkpoints."""
    os.makedirs(os.path.dirname(state), exist_ok=True)
    handle = open(state + ".lock", "a")  # noqa: SIM115 (closed by the caller)
    try:
        import fcntl  # noqa: PLC0415 (POSIX)
    except ImportError:
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise OSError(f"another humanloop-logging send uses the state file {state}") from None
    return handle


def _deliver(
    reader: Reader,
    shipper: Any,
    errors: Errors,
    checkpoints: Any,
    *,
    args: argparse.Namespace,
    stop: threading.Event,
) -> int:
    chunks = reader.chunks(args.follow, args.poll_interval, stop)
    current = next(chunks, None)
    tally = reader.tally
    while current is not None:
        before = shipper.stats()
        submit = shipper.submit
        for item in current.items:
            submit(item)
        upcoming = next(chunks, None) if not stop.is_set() else None  # read while it is sent
        after = _settle(shipper, stop) if current.items else before
        if after is None:
            return OK  # stopped before it settled: no checkpoint, so it is sent again next time
        sent = after.sent - before.sent
        rejected = after.rejected - before.rejected
        failed = after.failed - before.failed + after.dropped - before.dropped
        tally.sent += sent + (after.withheld - before.withheld)
        _account(current, errors.take(rejected + failed, 2.0) if rejected + failed else [],
                 tally, reader.report)  # fmt: skip
        if failed:
            tally.undeliverable += failed
            return UNDELIVERABLE
        if current.ends:
            for key, position in current.ends.items():
                checkpoints.set(key, position)
            checkpoints.save()
        reader.progress.update(0, reader.done_bytes, tally, force=True)
        current = upcoming
    return OK


def _settle(shipper: Any, stop: threading.Event) -> Any:
    """Stats once everything submitted is sent, rejected, given up on or safe in the spool; None
    when a stop came and the grace ran out first."""
    grace: Optional[float] = None
    while True:
        if shipper.flush(0.25):
            return shipper.stats()
        stats = shipper.stats()
        if stats.pending == stats.spooled:
            return stats
        if stop.is_set():
            now = time.monotonic()
            grace = grace or now + _STOP_TIMEOUT
            if now >= grace:
                return None


def _account(chunk: Chunk, reports: list[HumanloopLoggingError], tally: Tally,
             report: Report) -> None:  # fmt: skip
    for error in reports:
        for spot, data_id in _where_of(chunk, error):
            source, line = spot if spot is not None else ("?", None)
            if isinstance(error, FeedbackValidationError):
                tally.invalid += 1
                report.write(source, line, "invalid", f"{error.field} {error.reason}",
                             data_id=data_id)  # fmt: skip
            elif isinstance(error, UnprocessableEntityError):
                tally.rejected += 1
                detail = [m for r, messages in error.rejected for m in messages
                          if r.get("data_id") == data_id] or [error.message]  # fmt: skip
                report.write(
                    source, line, "rejected", error.message, detail=detail, data_id=data_id
                )
            else:
                report.write(source, line, "undeliverable", str(error), data_id=data_id)


# -- dry run ---------------------------------------------------------------------------------------


def _lint(args: argparse.Namespace, layout: Layout, stop: threading.Event) -> int:
    """Every line that mentions a data_id: would it be sent, refused (and why), or skipped."""
    from ._config import resolve  # noqa: PLC0415

    try:
        settings = resolve(args.api_key, args.base_url, enabled=False)
    except ConfigurationError as error:
        return _fail(str(error))
    tally = Tally()
    report = Report(args.report)
    started = time.monotonic()
    out = sys.stdout
    try:
        for name in args.paths:
            source = open_source(name, layout.needle, None)
            try:
                while not source.done and not stop.is_set():
                    read = source.read()
                    tally.lines += read.count
                    tally.skipped["not feedback"] += read.count - len(read.lines)
                    now = time.time()
                    for number, _, text in read.lines:
                        got = layout.recognise(text, now)
                        if isinstance(got, str):
                            tally.skipped[got] += 1
                            out.write(f"{name}:{number}: skip: {got}\n")
                            report.write(name, number, "skipped", got)
                            continue
                        tally.feedback += 1
                        try:
                            payload, _ = to_payload(got, settings.default_user)
                        except FeedbackValidationError as error:
                            tally.invalid += 1
                            out.write(f"{name}:{number}: refuse: {error.field} {error.reason}\n")
                            report.write(name, number, "invalid", f"{error.field} {error.reason}",
                                         data_id=got[DATA_ID])  # fmt: skip
                            continue
                        tally.sent += 1
                        out.write(f"{name}:{number}: send: data_id={payload['data_id']!r} "
                                  f"type={payload['type']!r} created_at={payload['created_at']}\n")  # fmt: skip
            finally:
                source.close()
    except OSError as error:
        return _fail(str(error))
    finally:
        report.close()
    if not args.quiet:
        for line in summary(tally, time.monotonic() - started, dry_run=True):
            print(line)
    if stop.is_set():
        return INTERRUPTED
    return REJECTED if tally.invalid else OK
