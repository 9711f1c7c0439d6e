"""The browser tests: a real ``serve``, headless Chromium, and what to do without them.

Without Playwright or Chromium the tests skip with the reason, except under CI (``CI=true``),
where they fail instead: CI must never pass by silently leaving them out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from browser.browser_support import VIEWPORT, ServeProcess, launch, missing

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium, or a skip (a failure under CI) saying what is missing.

    Started once for this directory and stopped after its last test: while Playwright's sync API
    runs, the main thread has an asyncio loop running, and the rest of the suite's
    ``asyncio.run()`` would refuse to start.
    """
    reason = missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs the browser tests, but {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def serve() -> Iterator[ServeProcess]:
    """``humanloop-logging serve --port 0`` in a child process, stopped with Ctrl-C after."""
    child = ServeProcess()
    try:
        yield child
    finally:
        assert child.stop() == 0, "serve exits 0 on Ctrl-C with the page open"


@pytest.fixture
def page(browser: Browser, serve: ServeProcess) -> Iterator[Page]:
    """The inspector open on a laptop's screen (1366 by 768), its event stream live."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    try:
        opened.goto(serve.url)
        expect(opened.locator("#connection")).to_have_text("Live")
        yield opened
    finally:
        context.close()
