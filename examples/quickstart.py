"""Quickstart: feedback from stdlib logging and structlog, through faults, to a local Humanloop.

Run it with ``python examples/quickstart.py``. It starts the library's local Humanloop stand-in, so
it needs no API key and no network. With a real key, drop the stand-in and pass nothing:
``FeedbackHandler()`` reads ``HUMANLOOP_API_KEY`` (and ``HUMANLOOP_BASE_URL``) from the environment.
``humanloop-logging demo`` runs a larger version of the same thing and prints a fuller summary.
"""

from __future__ import annotations

import logging
import threading

import structlog

from humanloop_logging import FeedbackHandler, FeedbackProcessor, HumanloopLoggingError
from humanloop_logging.testing import FakeHumanloop

errors: list[HumanloopLoggingError] = []


def on_error(error: HumanloopLoggingError) -> None:
    """Called on the flush thread for every record that is refused, rejected or given up on."""
    errors.append(error)


def handle_requests(worker: int, answers: int) -> None:
    """A request handler of a chat app: users rate, copy and correct the answers they get."""
    stdlib_log = logging.getLogger("chatapp")
    slog = structlog.get_logger("chatapp")
    for n in range(answers):
        data_id = f"data_{worker}_{n}"  # the id Humanloop gave the logged generation
        # stdlib logging: the feedback fields go in extra=
        stdlib_log.info(
            "user rated answer", extra={"data_id": data_id, "type": "rating", "value": "good"}
        )
        # structlog: the same fields as keyword arguments, or bound for the whole request
        structlog.contextvars.bind_contextvars(data_id=data_id)
        slog.info("user copied answer", type="action", value="copy")
        if n % 10 == 0:
            slog.info("user corrected answer", type="correction", value="The capital is Canberra.")
        structlog.contextvars.clear_contextvars()
    # A bug in the app: the library refuses this one before sending and says why.
    stdlib_log.info(
        "bad", extra={"data_id": f"data_{worker}_0", "type": "rating", "value": {"stars": 5}}
    )


def main() -> None:
    with FakeHumanloop() as humanloop:
        # Faults the real service can answer with: the library retries all of them.
        humanloop.fail_next(2, 503)
        humanloop.reset_next(1)

        # The app's usual logging: INFO and up goes to handlers, the console shows warnings.
        root = logging.getLogger()
        root.setLevel(logging.INFO)
        console = logging.StreamHandler()
        console.setLevel(logging.WARNING)
        root.addHandler(console)

        # One line to send feedback from stdlib logging ...
        handler = FeedbackHandler(humanloop.api_key, humanloop.base_url, on_error=on_error)
        root.addHandler(handler)
        # ... and one processor for structlog, sharing the handler's queue and thread. Its events
        # go on to stdlib logging (and so past the handler too), yet each is sent once.
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                FeedbackProcessor(shipper=handler.shipper),
                structlog.stdlib.render_to_log_kwargs,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )

        threads = [threading.Thread(target=handle_requests, args=(w, 50)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        # An app needs no flush() or close(): at exit they happen within exit_timeout. Here we
        # close explicitly to print the numbers while the stand-in still runs.
        handler.close()
        root.removeHandler(handler)
        stats = handler.stats()
        print(f"sent {stats.sent}, retried {stats.retried} requests, rejected {stats.rejected}")
        print(f"the stand-in received {len(humanloop.received)} feedback items")
        for error in errors:
            print(f"on_error: {error}")


if __name__ == "__main__":
    main()
