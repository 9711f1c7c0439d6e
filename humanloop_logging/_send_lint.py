"""``humanloop-logging send --dry-run``: the inputs checked as a linter checks code, offline.

By default only the problems are printed, one line each (``PATH:LINE: refuse: ...`` for feedback
the library would refuse, ``PATH:LINE: skip: ...`` for a line that names a data_id but is not
feedback), then the summary: a large backfill is mostly fine lines, and a list of every one hides
the few that need fixing. ``--verbose`` adds a ``send:`` line for each record that would be sent.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import IO

from ._config import resolve
from ._formats import Layout
from ._record import DATA_ID, to_payload
from ._send_view import Report, Tally, summary
from ._sources import open_source
from .exceptions import FeedbackValidationError

__all__ = ["lint"]


def lint(args: argparse.Namespace, layout: Layout, stop: threading.Event, out: IO[str]) -> Tally:
    """Every line that mentions a data_id: would it be sent, refused (and why), or skipped.

    Raises ConfigurationError for bad settings and OSError for an input that cannot be read.
    """
    settings = resolve(args.api_key, args.base_url, enabled=False)
    tally = Tally()
    report = Report(args.report)
    started = time.monotonic()
    verbose = args.verbose
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
                        if verbose:
                            out.write(f"{name}:{number}: send: data_id={payload['data_id']!r} "
                                      f"type={payload['type']!r} "
                                      f"created_at={payload['created_at']}\n")  # fmt: skip
            finally:
                source.close()
    finally:
        report.close()
    if not args.quiet:
        for line in summary(tally, time.monotonic() - started, dry_run=True):
            out.write(line + "\n")
    return tally
