"""The local Humanloop stand-in, from Python: an outage on the first batch, then what arrived.

Run it with ``python examples/stand_in.py``. ``FakeHumanloop`` is a real HTTP server on 127.0.0.1
(a free port, the key ``hl-test-key``), so the handler below sends, retries and is answered as it
would be by Humanloop, with no key and no network.
"""

from __future__ import annotations

import logging

from humanloop_logging import FeedbackHandler
from humanloop_logging.testing import FakeHumanloop


def main() -> None:
    with FakeHumanloop() as fake:  # 127.0.0.1, a free port, key "hl-test-key"
        handler = FeedbackHandler(api_key=fake.api_key, base_url=fake.base_url)
        log = logging.getLogger("app")
        log.addHandler(handler)
        log.setLevel(logging.INFO)

        fake.fail_next(1, 503, retry_after=0.1)  # the first batch meets an outage
        log.info("rated", extra={"data_id": "data_abc", "type": "rating", "value": "good"})
        assert handler.flush(timeout=5)
        print(fake.received)  # [{'type': 'rating', 'value': 'good', 'data_id': 'data_abc', ...}]
        print([r.status for r in fake.requests])  # [503, 200]
        log.removeHandler(handler)
        handler.close()


if __name__ == "__main__":
    main()
