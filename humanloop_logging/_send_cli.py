"""``humanloop-logging send [PATH ...|-]``: feedback in JSON log lines, sent to Humanloop once.

This module owns the command line and the run around a delivery: the settings, the state file and
its lock, the inputs, the summary and the exit status. Lines are read in chunks of one batch
(:mod:`._send_read`) and each chunk is handed to a ``FeedbackShipper`` (so validation, batching,
retries, 422 and poison isolation, rate limits and diagnostics are the engine's) and settled
before its checkpoint is saved (:mod:`._send_deliver`); ``--dry-run`` is :mod:`._send_lint`.

Exit status: 0 every feedback record was delivered (or is in the spool); 1 some were rejected
(422 or invalid); 2 a usage or configuration error; 3 some are undeliverable, or the spool holds
40 batches the service did not answer (a rerun goes on); 130 stopped by Ctrl-C or SIGTERM before
the end of a finite input (``--follow`` stops that way normally: 0).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
from typing import Any

from ._formats import Layout, layout_for
from ._send_view import Progress, Report, Tally, ThroughProgress, summary
from ._sources import Source, open_source
from ._spool_cli import _stopped_by_signals
from .exceptions import ConfigurationError

__all__ = ["add_send"]

OK, REJECTED, USAGE, UNDELIVERABLE, INTERRUPTED = 0, 1, 2, 3, 130


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
        help="no network: list the lines that would be refused or skipped, then a summary",
    )
    send.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="with --dry-run, also a line for each record that would be sent",
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
    if args.verbose and not args.dry_run:
        return _fail("--verbose goes with --dry-run (a run's problems go to --report)")
    for path in args.paths:
        if path != "-" and not args.follow and not os.path.isfile(path):
            return _fail(f"{path}: no such file")
    stop = threading.Event()
    with _stopped_by_signals(stop):
        if args.dry_run:
            return _lint(args, layout, stop)
        return _run(args, layout, stop)


def _lint(args: argparse.Namespace, layout: Layout, stop: threading.Event) -> int:
    from ._send_lint import lint  # noqa: PLC0415

    try:
        tally = lint(args, layout, stop, sys.stdout)
    except (ConfigurationError, OSError) as error:
        return _fail(str(error))
    if stop.is_set():
        return INTERRUPTED
    return REJECTED if tally.invalid else OK


def _run(args: argparse.Namespace, layout: Layout, stop: threading.Event) -> int:
    from ._checkpoints import Checkpoints, default_state_path  # noqa: PLC0415
    from ._send_deliver import STOP_TIMEOUT, Errors, account, deliver  # noqa: PLC0415
    from ._send_read import Chunk, Reader  # noqa: PLC0415
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
    reader = Reader(sources, layout, batch=settings.batch_size, tally=tally, progress=progress)
    try:
        outcome = deliver(reader, shipper, errors, checkpoints, report=report, follow=args.follow,
                          poll=args.poll_interval, stop=stop)  # fmt: skip
    finally:
        shipper.close(STOP_TIMEOUT)
        # What the close settled (or, with a spool, sent of what waited there) counts too; a
        # report that came after its chunk was settled is named without its line.
        account(Chunk(), errors.take(0, 0), tally, report)
        final = shipper.stats()
        tally.sent = final.sent + final.withheld
        tally.undeliverable = final.failed + final.dropped
        tally.spooled = final.spooled
        tally.replayed = final.replayed
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
    if outcome == "backlog":
        print(f"humanloop-logging send: the service answered for none of the {tally.spooled:,} "
              "records waiting in the spool within max_retry_time; they stay there for the next "
              "process or humanloop-logging spool drain; run send again to go on", file=sys.stderr)  # fmt: skip
    if outcome in ("undeliverable", "backlog"):
        return UNDELIVERABLE
    if not args.follow and (outcome == "stopped" or not reader.exhausted):
        return INTERRUPTED
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
