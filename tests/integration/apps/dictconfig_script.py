"""A handler on the root logger, then a later ``dictConfig()`` that configures another logger.

Logs ``N`` records, times a ``logging.config.dictConfig`` call that names only the logger
``other``, logs ``N`` more, and exits normally. Prints ``DICTCONFIG <seconds>``.
"""

from __future__ import annotations

import logging
import logging.config
import sys
import time

from humanloop_logging import FeedbackHandler


def main() -> None:
    prefix, count = sys.argv[1], int(sys.argv[2])
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(FeedbackHandler())
    log = logging.getLogger("app")
    for n in range(count):
        log.info("rated", extra={"data_id": f"{prefix}-{n}", "type": "rating", "value": "good"})
    start = time.monotonic()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"console": {"class": "logging.StreamHandler", "level": "WARNING"}},
            "loggers": {"other": {"level": "DEBUG", "handlers": ["console"]}},
        }
    )
    print("DICTCONFIG", time.monotonic() - start, flush=True)
    for n in range(count, 2 * count):
        log.info("rated", extra={"data_id": f"{prefix}-{n}", "type": "rating", "value": "good"})
    print("LOGGED", flush=True)


if __name__ == "__main__":
    main()
