"""Send the queued feedback at an ASGI server's shutdown, before the server ends the process.

uvicorn 0.29 and later (its CLI, ``uvicorn.run()`` and gunicorn's uvicorn workers) end a graceful
shutdown by raising ``SIGTERM`` again with Python's default action: the process dies by the signal
and no exit hook runs, so the exit drain never happens. The last moment the application owns is
its lifespan shutdown, after the last request and before that signal. This middleware drains
there, with one line and whatever lifespan the application has of its own::

    app.add_middleware(FeedbackMiddleware)  # FastAPI, Starlette
    app = FeedbackMiddleware(app)           # any other ASGI app

A middleware rather than a ready ``lifespan=`` function, because it composes with the app's own
lifespan without asking the user to nest one in the other, and because it also serves apps that do
not speak the lifespan protocol (Django's ``ASGIHandler``): it answers the server's lifespan
messages for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, MutableMapping
from typing import Any, Callable

from . import _lifecycle

__all__ = ["FeedbackMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DONE = ("lifespan.shutdown.complete", "lifespan.shutdown.failed")


async def _drain() -> None:
    """Every shipper of the process closed, each within its ``exit_timeout``; off the event loop
    where there is an asyncio loop (the drain waits on the network), else on this thread."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): a bounded wait at shutdown is acceptable
        _lifecycle.drain_at_server_shutdown()
        return
    await loop.run_in_executor(None, _lifecycle.drain_at_server_shutdown)


class FeedbackMiddleware:
    """ASGI middleware: at the lifespan shutdown, send every shipper's queue before the server
    ends the process. Requests and websockets pass through untouched.

    The drain comes after the application's own shutdown code (so feedback logged there is sent
    too) and before the server is told that the shutdown is complete. Each shipper gets its own
    ``exit_timeout``; what cannot be sent within it is reported as at exit. A shipper closed here
    starts again if feedback comes later (a test client's next app, for example).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        _lifecycle.expect_lifespan_drain()
        state = _Lifespan(receive, send)
        try:
            await self.app(scope, state.receive, state.send)
        except Exception:
            if state.started:  # the app's own lifespan failed: the server reports that
                raise
            # An app that does not speak the protocol (Django's ASGIHandler raises on it): answer
            # the server here, so its lifespan, and the drain, still happen.
            await state.serve_without_app()
            return
        if not state.shutdown_answered and state.shutdown_asked:
            await _drain()  # an app that returned without answering the shutdown


class _Lifespan:
    """One lifespan conversation between the server and the app, seen from between them."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.started = False  # the app answered the startup
        self.startup_asked = False
        self.shutdown_asked = False
        self.shutdown_answered = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "lifespan.startup":
            self.startup_asked = True
        elif message["type"] == "lifespan.shutdown":
            self.shutdown_asked = True
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind.startswith("lifespan.startup."):
            self.started = True
        elif kind in _DONE:
            await _drain()
            self.shutdown_answered = True
        await self._send(message)

    async def serve_without_app(self) -> None:
        """The lifespan protocol for an app without one: start, then drain at the shutdown."""
        if not self.startup_asked:
            await self._receive()  # lifespan.startup
        await self._send({"type": "lifespan.startup.complete"})
        while True:
            message = await self._receive()
            if message["type"] == "lifespan.shutdown":
                await _drain()
                await self._send({"type": "lifespan.shutdown.complete"})
                return
