"""structlog rendered through stdlib logging with ``ProcessorFormatter``, handler on the root.

``python structlog_script.py MODE PREFIX N`` logs N feedback events and exits normally. MODE
``handler``: only a ``FeedbackHandler`` on the root logger picks the events up. MODE
``processor+handler``: a ``FeedbackProcessor`` in the chain shares the handler's shipper, so each
event is seen twice and must still be sent once.
"""

from __future__ import annotations

import logging
import sys

import structlog

from humanloop_logging import FeedbackHandler, FeedbackProcessor


def main() -> None:
    mode, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    feedback_handler = FeedbackHandler()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer())
    )
    console.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(console)
    root.addHandler(feedback_handler)
    root.setLevel(logging.INFO)

    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
    ]
    if mode == "processor+handler":
        processors.append(FeedbackProcessor(shipper=feedback_handler.shipper))
    processors += [
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
    structlog.configure(
        processors=processors,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    log = structlog.get_logger("app")
    for n in range(count):
        structlog.contextvars.bind_contextvars(data_id=f"{prefix}-{n}")
        log.info("user rated answer", type="rating", value="good")
    structlog.contextvars.clear_contextvars()
    print("LOGGED", flush=True)


if __name__ == "__main__":
    main()
