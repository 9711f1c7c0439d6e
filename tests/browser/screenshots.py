"""Make the inspector's screenshots in docs/: ``PYTHONPATH=tests python -m browser.screenshots``
from the checkout (with the browser extra and Debian's Chromium installed).

Each is the real page at 1366 by 768 in headless Chromium, against a real ``serve``, fed by a
FeedbackHandler: records arriving, a 422 opened on the item it refused, a fault switched on.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import Page, expect, sync_playwright

from browser.browser_support import API_KEY, VIEWPORT, ServeProcess, launch, missing
from humanloop_logging import FeedbackHandler

DOCS = Path(__file__).resolve().parents[2] / "docs"

#: What a small app might log: (data_id, type, value, user).
FEEDBACK: list[tuple[str, str, Any, str]] = [
    ("chat_7f3a91", "rating", "good", "ana@example.com"),
    ("chat_7f3a92", "action", "copy", "ana@example.com"),
    ("chat_7f3a93", "rating", "bad", "li@example.com"),
    ("chat_7f3a93", "issue", ["too long", "off topic"], "li@example.com"),
    ("chat_7f3a94", "correction", "Paris is the capital of France.", "sam@example.com"),
    ("chat_7f3a95", "comment", "Answered before I finished typing!", "sam@example.com"),
    ("chat_7f3a96", "rating", "good", "noor@example.com"),
    ("chat_7f3a97", "action", "regenerate", "noor@example.com"),
]


def log_feedback(
    logger: logging.Logger, handler: FeedbackHandler, rows: list[tuple[str, str, Any, str]]
) -> None:
    """Log ``rows`` through the handler, as an app would, and wait until they are sent."""
    for data_id, kind, value, user in rows:
        logger.info(
            "feedback", extra={"data_id": data_id, "type": kind, "value": value, "user": user}
        )
    assert handler.flush(timeout=15.0)


def shoot(page: Page, name: str) -> None:
    """Save the page as it is now to docs/NAME."""
    path = DOCS / name
    page.screenshot(path=str(path))
    print(f"wrote {path}")


def main() -> int:
    reason = missing()
    if reason is not None:
        print(f"cannot make the screenshots: {reason}", file=sys.stderr)
        return 1
    serve = ServeProcess()
    handler = FeedbackHandler(api_key=API_KEY, base_url=serve.base_url, max_retry_time=10.0)
    logger = logging.getLogger("screenshots.app")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(serve.url)
            expect(page.locator("#connection")).to_have_text("Live")
            log_feedback(logger, handler, FEEDBACK[:3])
            log_feedback(logger, handler, FEEDBACK[3:])
            expect(page.locator("#records tbody tr")).to_have_count(len(FEEDBACK))
            shoot(page, "inspector-records.png")

            bad = [
                {"type": "rating", "value": "good", "data_id": "chat_7f3a98"},
                {"type": "rating", "value": {"stars": 5}, "data_id": "chat_7f3a99"},
            ]
            answer = requests.post(
                serve.base_url + "/feedback", json=bad, headers={"X-API-KEY": API_KEY}, timeout=10
            )
            assert answer.status_code == 422
            row = page.locator("#requests tbody tr[data-status='422']")
            row.locator("summary").first.click()
            expect(row.locator("li.named")).to_have_count(1)
            shoot(page, "inspector-422.png")

            page.get_by_label("Next requests to answer 503").fill("2")
            page.get_by_role("button", name="Start 503 burst").click()
            page.get_by_label("Latency (seconds)").fill("0.25")
            page.get_by_role("button", name="Set latency").click()
            expect(page.locator("#latency-state")).to_contain_text("0.25 s")
            log_feedback(logger, handler, [("chat_7f3aa0", "rating", "good", "ana@example.com")])
            expect(page.locator("#requests tbody tr[data-status='503']")).to_have_count(2)
            page.locator("#refuse-key").focus()
            page.keyboard.press("Space")
            expect(page.locator("#refuse-key")).to_have_attribute("aria-pressed", "true")
            log_feedback(logger, handler, [("chat_7f3aa1", "rating", "bad", "li@example.com")])
            expect(page.locator("#requests tbody tr[data-status='401']")).to_have_count(1)
            shoot(page, "inspector-fault.png")
            browser.close()
    finally:
        logger.removeHandler(handler)
        handler.close()
        serve.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
