"""The inspector page in headless Chromium against a real ``serve``: records and requests arrive
live, a 422 opens on its refused item, filters narrow the records, and a fault switched on from
the page (by mouse or keyboard) is what the next request from a FeedbackHandler gets."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import requests
from support import HandlerRig

from browser.browser_support import API_KEY, ServeProcess

if TYPE_CHECKING:
    from playwright.sync_api import Page

# Without Playwright every test stops at the browser fixture, which says what is missing.
with contextlib.suppress(ImportError):
    from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


@pytest.fixture
def rig(serve: ServeProcess) -> Iterator[HandlerRig]:
    """A FeedbackHandler sending to the stand-in, retrying for a few seconds at most."""
    handler = HandlerRig(API_KEY, serve.base_url, max_retry_time=10.0)
    try:
        yield handler
    finally:
        handler.close()


def state(serve: ServeProcess) -> Any:
    """What the stand-in holds, read through the inspector's JSON API."""
    return requests.get(serve.url + "_inspector/api/state", timeout=10).json()


def test_records_arrive_newest_first_and_filter(page: Page, rig: HandlerRig) -> None:
    """Feedback logged through the handler appears as records without a reload, newest first;
    the data_id and type filters narrow them; the API key is nowhere on the page."""
    records = page.locator("#records tbody tr")
    expect(records).to_have_count(0)
    rig.feedback("dp_1")
    assert rig.handler.flush()
    expect(records).to_have_count(1)
    rig.feedback("dp_2", type="action", value="copy")
    rig.feedback("dp_3", value="bad", user="ann")
    assert rig.handler.flush()
    expect(records).to_have_count(3)
    expect(records.first.locator("td").nth(1)).to_have_text("dp_3")
    expect(records.first.locator("td").nth(4)).to_have_text("ann")
    expect(page.locator("#requests tbody tr[data-status='200']")).not_to_have_count(0)

    shown = page.locator("#records tbody tr:not([hidden])")
    page.get_by_label("data_id contains").fill("dp_2")
    expect(shown).to_have_count(1)
    expect(shown.first).to_contain_text("action")
    page.get_by_label("data_id contains").fill("")
    page.get_by_label("type").fill("rating")
    expect(shown).to_have_count(2)
    expect(page.locator("#records-count")).to_contain_text("2 shown by the filters")
    assert API_KEY not in page.content()


def test_a_422_expands_to_its_detail_and_the_item_it_names(page: Page, serve: ServeProcess) -> None:
    """A refused batch is in the request log; opening it shows the error and the item sent."""
    good = {"type": "rating", "value": "good", "data_id": "dp_ok"}
    bad = {"type": "rating", "value": {"stars": 5}, "data_id": "dp_bad"}
    answer = requests.post(
        serve.base_url + "/feedback",
        json=[good, good, bad],
        headers={"X-API-KEY": API_KEY},
        timeout=10,
    )
    assert answer.status_code == 422
    row = page.locator("#requests tbody tr[data-status='422']")
    expect(row).to_have_count(1)
    named = row.locator("li.named")
    expect(named).to_be_hidden()
    row.locator("summary").first.click()
    expect(row.locator("details").first).to_have_attribute("open", "")
    expect(named).to_have_count(1)
    expect(named).to_contain_text("Item 2: value:")
    expect(named.locator("pre.item")).to_have_text(json.dumps(bad, separators=(",", ":")))
    detail = row.locator("pre.detail")
    expect(detail).to_be_hidden()
    row.get_by_text("The 422's detail, as sent").click()
    expect(detail).to_contain_text('"loc":["body",2,"value"]')
    expect(page.locator("#records tbody tr")).to_have_count(0)


def test_a_503_burst_switched_on_from_the_page_meets_the_next_request(
    page: Page, serve: ServeProcess, rig: HandlerRig
) -> None:
    """The burst button makes the stand-in answer the handler's next request 503 (which it
    retries), and the page counts it down."""
    page.get_by_label("Next requests to answer 503").fill("1")
    page.get_by_role("button", name="Start 503 burst").click()
    expect(page.locator("#burst-state")).to_have_text("1 request left to answer 503")
    assert state(serve)["faults"]["fail_next"] == 1
    rig.feedback("dp_retried")
    assert rig.handler.flush(timeout=15.0)
    expect(page.locator("#requests tbody tr")).to_have_count(2)
    assert [request["status"] for request in state(serve)["requests"]] == [503, 200]
    expect(page.locator("#burst-state")).to_have_text("off")
    expect(page.locator("#requests tbody tr").nth(1).locator(".status")).to_have_text("503")


def test_the_401_switch_by_keyboard(page: Page, serve: ServeProcess, rig: HandlerRig) -> None:
    """Tab reaches the 401 switch, which shows its focus; Space turns it on and the next
    request is refused; Enter turns it off again."""
    switch = page.locator("#refuse-key")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "refuse-key":
            break
    else:
        pytest.fail("Tab never reached the 401 switch")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Space")
    expect(switch).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#faults-summary")).to_contain_text("401 on every request")
    assert state(serve)["faults"]["refuse_key"] is True
    rig.feedback("dp_refused")
    assert rig.handler.flush()
    expect(page.locator("#requests tbody tr[data-status='401']")).to_have_count(1)
    expect(page.locator("#requests tbody tr").first).to_contain_text("Invalid API key")
    page.keyboard.press("Enter")
    expect(switch).to_have_attribute("aria-pressed", "false")
    assert state(serve)["faults"]["refuse_key"] is False


def test_serve_stops_on_ctrl_c_with_the_page_open(page: Page, serve: ServeProcess) -> None:
    """Ctrl-C ends serve at once though the page holds its event stream, and the page says it
    lost the connection."""
    assert serve.stop(timeout=10.0) == 0
    expect(page.locator("#connection")).to_have_text("Disconnected, retrying…")
