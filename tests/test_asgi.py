"""FeedbackMiddleware, driven through the ASGI lifespan protocol as a server drives it.

The server here is a script: it sends ``lifespan.startup``, then ``lifespan.shutdown``, and notes
what the stand-in had received at the moment each answer reached it. The apps are real (FastAPI)
or written to the protocol (an app that refuses lifespan, as Django's ASGIHandler does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from humanloop_logging import FeedbackHandler, FeedbackMiddleware
from humanloop_logging.asgi import ASGIApp, Message, Receive, Scope, Send
from humanloop_logging.testing import FakeHumanloop


class ScriptedServer:
    """A server's side of one lifespan: startup, then shutdown, recording the app's answers."""

    def __init__(self, fake: FakeHumanloop) -> None:
        self.fake = fake
        self.inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        #: Each answer, with how many feedback items the stand-in had when it arrived.
        self.answers: list[tuple[str, int]] = []

    async def receive(self) -> Message:
        if self.inbox:
            return self.inbox.pop(0)
        await asyncio.Event().wait()  # the lifespan is over: nothing more comes
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        self.answers.append((message["type"], len(self.fake.received)))

    def run(self, app: ASGIApp) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

        async def serve() -> None:
            await app(scope, self.receive, self.send)

        asyncio.run(serve())


@pytest.fixture
def feedback(fake_humanloop: FakeHumanloop) -> Iterator[logging.Logger]:
    """A logger whose records wait in the queue until a close sends them."""
    handler = FeedbackHandler(
        fake_humanloop.api_key, fake_humanloop.base_url, flush_interval=3600, batch_size=1000
    )
    log = logging.getLogger("tests.asgi")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(handler)
    try:
        yield log
    finally:
        log.removeHandler(handler)
        handler.close()


def rate(log: logging.Logger, *data_ids: str) -> None:
    for data_id in data_ids:
        log.info("rated", extra={"data_id": data_id, "type": "rating", "value": "good"})


def test_the_queue_is_sent_after_the_apps_shutdown_and_before_the_server_hears_of_it(
    fake_humanloop: FakeHumanloop, feedback: logging.Logger
) -> None:
    """What the app logged while serving and in its own shutdown code has all arrived when the
    server is told the shutdown is complete; nothing was sent before (the queue was holding it)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        rate(feedback, "served-1", "served-2")
        yield
        rate(feedback, "in-shutdown")

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(FeedbackMiddleware)
    server = ScriptedServer(fake_humanloop)
    server.run(app)

    assert server.answers == [
        ("lifespan.startup.complete", 0),
        ("lifespan.shutdown.complete", 3),
    ]
    assert sorted(item["data_id"] for item in fake_humanloop.received) == [
        "in-shutdown",
        "served-1",
        "served-2",
    ]


def test_feedback_after_the_drain_is_sent_as_usual(
    fake_humanloop: FakeHumanloop, feedback: logging.Logger
) -> None:
    """The drain closes the shippers, and a closed shipper starts again: a test client's next app
    (or a second lifespan) loses nothing."""
    for round_ in range(2):
        app = FastAPI()
        app.add_middleware(FeedbackMiddleware)
        rate(feedback, f"round-{round_}")
        ScriptedServer(fake_humanloop).run(app)
    rate(feedback, "after")
    assert feedback.handlers[0].shipper.flush(10)  # type: ignore[attr-defined]
    assert sorted(item["data_id"] for item in fake_humanloop.received) == [
        "after",
        "round-0",
        "round-1",
    ]


async def refuses_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """As Django's ASGIHandler: anything but HTTP is an error."""
    raise ValueError(f"can only handle ASGI/HTTP connections, not {scope['type']}")


def test_an_app_without_lifespan_support_is_answered_for_and_still_drained(
    fake_humanloop: FakeHumanloop, feedback: logging.Logger
) -> None:
    rate(feedback, "django-1")
    server = ScriptedServer(fake_humanloop)
    server.run(FeedbackMiddleware(refuses_lifespan))
    assert server.answers == [
        ("lifespan.startup.complete", 0),
        ("lifespan.shutdown.complete", 1),
    ]


def test_a_failing_startup_of_the_apps_own_is_left_to_the_server(
    fake_humanloop: FakeHumanloop,
) -> None:
    """The app said its startup failed: the error is the server's to report, not covered up."""

    database_up = False

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not database_up:
            raise RuntimeError("database unreachable")
        yield

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(FeedbackMiddleware)
    server = ScriptedServer(fake_humanloop)
    with pytest.raises(RuntimeError, match="database unreachable"):
        server.run(app)
    assert [kind for kind, _ in server.answers] == ["lifespan.startup.failed"]


def test_requests_pass_through_untouched() -> None:
    """An HTTP scope reaches the app with the very scope, receive and send the server gave."""
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.extend([scope, receive, send])

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        return None

    scope: Scope = {"type": "http", "path": "/"}

    async def serve() -> None:
        await FeedbackMiddleware(app)(scope, receive, send)

    asyncio.run(serve())
    assert seen == [scope, receive, send]
