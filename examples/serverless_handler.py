"""AWS Lambda (or any function platform): feedback sent before the platform freezes the process.

Deploy ``handler`` as the function's entry point (``serverless_handler.handler``) with
``HUMANLOOP_API_KEY`` set. To try it locally with no key, run ``humanloop-logging serve`` and, in
another shell::

    HUMANLOOP_API_KEY=hl-test-key HUMANLOOP_BASE_URL=http://127.0.0.1:8742/v4 \\
        python examples/serverless_handler.py

which invokes the handler a few times, as the platform would, and prints what each invocation had
sent by the time it returned.
"""

from __future__ import annotations

import logging
from typing import Any

from humanloop_logging import FeedbackHandler, flush_after

# Built once per cold start, outside the handler: warm invocations reuse its queue, thread and
# connections. Feedback on a logger of its own, so that the platform's logging setup (the Lambda
# runtime's handler on the root logger) neither drops nor prints it.
feedback = FeedbackHandler()  # reads HUMANLOOP_API_KEY
feedback_log = logging.getLogger("app.feedback")
feedback_log.setLevel(logging.INFO)
feedback_log.propagate = False
feedback_log.addHandler(feedback)


# Sends what the invocation logged before it returns (or raises): the platform freezes the
# process right after, and the flush thread would not get to run.
@flush_after(timeout=2)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    data_id = event["data_id"]
    feedback_log.info(
        "user rated answer", extra={"data_id": data_id, "type": "rating", "value": event["rating"]}
    )
    if event.get("copied"):
        feedback_log.info(
            "user copied answer", extra={"data_id": data_id, "type": "action", "value": "copy"}
        )
    return {"statusCode": 200, "body": data_id}


if __name__ == "__main__":
    events: list[dict[str, Any]] = [
        {"data_id": "data_lambda_1", "rating": "good", "copied": True},
        {"data_id": "data_lambda_2", "rating": "bad"},
        {"data_id": "data_lambda_3", "rating": "good", "copied": True},
    ]
    for number, event in enumerate(events, 1):
        response = handler(event, None)
        stats = feedback.stats()
        print(
            f"invocation {number}: status {response['statusCode']}, "
            f"{stats.sent} feedback record(s) sent in all when it returned"
        )
