"""loguru: feedback as a call's keyword arguments, or bound once for an answer.

Set ``HUMANLOOP_API_KEY`` (or, to try it locally with no key, run ``humanloop-logging serve`` and
set ``HUMANLOOP_BASE_URL`` to the address it prints), then run ``python examples/loguru_app.py``.
It rates, copies and corrects a few answers and ends: the exit sends what is still queued.
"""

from __future__ import annotations

from loguru import logger

from humanloop_logging import FeedbackSink

# Every message still reaches loguru's other sinks; those whose extra carries data_id and type
# are also sent to Humanloop. Add enqueue=True to hand them over on loguru's own thread.
logger.add(FeedbackSink(), level="INFO")  # reads HUMANLOOP_API_KEY


def handle_answer(data_id: str, rating: str) -> None:
    """One answer of a chat app; data_id is the id Humanloop gave the logged generation."""
    log = logger.bind(data_id=data_id)  # every feedback message below is about this answer
    log.info("user rated answer", type="rating", value=rating)
    log.info("user copied answer", type="action", value="copy")


def main() -> None:
    answers = {"data_1": "good", "data_2": "bad", "data_3": "good"}
    for data_id, rating in answers.items():
        handle_answer(data_id, rating)
    # Or the fields as keyword arguments of one call:
    logger.info(
        "user corrected answer", data_id="data_2", type="correction", value="Canberra, not Sydney."
    )
    logger.info("handled {} answers", len(answers))


if __name__ == "__main__":
    main()
