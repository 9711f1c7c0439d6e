"""A batch job: send feedback collected elsewhere (a CSV export of ratings) to Humanloop.

Set ``HUMANLOOP_API_KEY`` (or run ``humanloop-logging serve`` and set ``HUMANLOOP_BASE_URL`` to the
address it prints), then::

    python examples/script.py ratings.csv              # or - to read standard input

The CSV has a header row and the columns ``data_id``, ``type`` and ``value``, and optionally
``user``. The job logs one feedback record per row, waits until Humanloop has answered for every
one of them, prints a summary and exits 0 only if every row was accepted, so that cron or a CI
step sees a failure.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Iterable

from humanloop_logging import FeedbackHandler, exit_on_sigterm

log = logging.getLogger("feedback_import")


def log_rows(lines: Iterable[str]) -> None:
    """One feedback record per CSV row."""
    for row in csv.DictReader(lines):
        extra = {"data_id": row["data_id"], "type": row["type"], "value": row["value"]}
        if row.get("user"):  # an empty cell: no user (default_user fills it, if set)
            extra["user"] = row["user"]
        log.info("imported feedback", extra=extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send rows of a CSV to Humanloop as feedback.")
    parser.add_argument("csv", help="the CSV file, or - for standard input")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for delivery")
    args = parser.parse_args(argv)

    # A SIGTERM (systemd, Kubernetes, a CI timeout) then exits through the exit hook, which sends
    # what is queued, instead of killing the process with it.
    exit_on_sigterm()
    logging.basicConfig(level=logging.WARNING)  # the library's warnings, on stderr
    # Not blocking=True: thousands of rows go out in batches, not in a request each.
    handler = FeedbackHandler()  # reads HUMANLOOP_API_KEY and HUMANLOOP_BASE_URL
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # feedback is not for the console

    if args.csv == "-":
        log_rows(sys.stdin)
    else:
        with open(args.csv, encoding="utf-8", newline="") as rows:
            log_rows(rows)

    # Sends are in the background: wait for the answers (up to --wait), then report. Without
    # this, the exit hook would still send what is queued, within exit_timeout (5 s).
    handler.flush(timeout=args.wait)
    handler.close()
    stats = handler.stats()
    print(
        f"{stats.enqueued} rows: {stats.sent} sent, {stats.rejected} refused or rejected, "
        f"{stats.failed + stats.dropped + stats.pending} not delivered"
    )
    return 0 if stats.sent == stats.enqueued else 1


if __name__ == "__main__":
    sys.exit(main())
