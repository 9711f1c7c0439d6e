"""The stdlib quickstart, as the README and the getting-started page show it.

Run it with ``HUMANLOOP_API_KEY`` set (and ``HUMANLOOP_BASE_URL=http://127.0.0.1:8742/v4`` with
``humanloop-logging serve`` running, to try it without a key): ``python stdlib_quickstart.py``.
The three records are sent when the process exits.
"""

import logging

from humanloop_logging import FeedbackHandler

logging.getLogger().addHandler(FeedbackHandler())  # reads HUMANLOOP_API_KEY
logging.getLogger().setLevel(logging.INFO)

log = logging.getLogger(__name__)
log.info("user rated answer", extra={"data_id": "data_abc", "type": "rating", "value": "good"})
log.info("user unset rating", extra={"data_id": "data_abc", "type": "rating", "unset": True})
log.info(
    "user flagged answer",
    extra={"data_id": "data_abc", "type": "issue", "value": ["hallucination"], "user": "user_42"},
)
