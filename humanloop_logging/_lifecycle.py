"""Process-wide lifecycle: the live engines, and draining them however the process ends.

A process can end in four ways that matter here, and each needs its own hook:

- a normal exit runs ``atexit`` hooks (ours runs before ``logging.shutdown``, which was registered
  first);
- a child started by ``multiprocessing`` with the fork or forkserver method (``Process``, ``Pool``,
  ``ProcessPoolExecutor``) ends through ``os._exit`` after running multiprocessing's own
  finalizers, so no ``atexit`` hook runs: a ``multiprocessing.util.Finalize`` drains it. The
  finalizer registry is cleared in each new child before it runs, so the finalizer is registered
  again by a ``register_after_fork`` callback, which runs after that clearing;
- a Celery prefork child (billiard) ends through ``os._exit`` without even those finalizers, after
  sending Celery's ``worker_process_shutdown`` signal: a receiver drains it;
- a forked child inherits the parent's engines but none of their threads: ``os.register_at_fork``
  gives each a fresh, empty state that starts its thread when the child first logs feedback.

A fifth way needs the application's help: uvicorn (0.29 and later, and so gunicorn's uvicorn
workers) ends by raising ``SIGTERM`` again with Python's default action, which runs no hook at all.
An ASGI app drains at its lifespan shutdown instead (``asgi.FeedbackMiddleware`` calls
:func:`drain_at_server_shutdown`), and :func:`warn_if_sigterm_will_lose_feedback` says so once
when nothing will.

These hooks are attached lazily (multiprocessing and Celery are never imported here), just before
a fork and whenever an engine is made, so a process that uses neither pays nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from . import _census, _report, signals


class Drainable(_census.Counted, Protocol):
    """What the lifecycle needs of an engine (and, for the metrics, the census)."""

    def begin_close(self, timeout: float) -> None: ...

    def wait_closed(self) -> bool: ...

    def exit_timeout(self) -> float: ...

    def after_fork_in_child(self) -> None: ...


class Flushable(Protocol):
    """What a flush of several needs of each: an engine, a shipper, a handler, a processor."""

    def flush(self, timeout: float) -> bool: ...


F = TypeVar("F", bound=Flushable)


class _State:
    """Everything process-wide, in one place so a forked child can reset it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.engines: weakref.WeakSet[Any] = weakref.WeakSet()
        #: Set once the process has begun to exit: no thread may be started any more (Python
        #: 3.12.0-3.12.2 refuse at shutdown), so an engine woken now sends on the caller's thread.
        self.exiting = False
        #: The pid whose multiprocessing finalizer is registered.
        self.finalizer_pid = 0
        self.after_fork_registered = False
        self.celery_connected = False
        #: An ASGI lifespan drains every engine at the server's shutdown (FeedbackMiddleware).
        self.drained_by_lifespan = False
        #: The warning that SIGTERM will lose feedback was given (once a process).
        self.sigterm_warned = False


state = _State()


class _Token:
    """A weakly referenceable anchor for ``multiprocessing.util.register_after_fork``."""


_token = _Token()


def register(engine: Drainable) -> None:
    """Track ``engine`` so that every way the process ends drains it, and count it in metrics."""
    with state.lock:
        state.engines.add(engine)
    _census.enrol(engine)
    _attach_pool_hooks()


def exiting() -> bool:
    return state.exiting


def drain_all() -> None:
    """Close every live engine at once, each within its own ``exit_timeout``.

    Runs at exit, from multiprocessing's finalizers and from Celery's child shutdown signal; safe
    to run twice (the second finds nothing left to send).
    """
    state.exiting = True
    _close_all()


def _close_all() -> None:
    with state.lock:
        engines = list(state.engines)
    for engine in engines:
        engine.begin_close(engine.exit_timeout())
    for engine in engines:
        engine.wait_closed()


def flush_together(targets: Sequence[F], timeout: float) -> list[F]:
    """Flush ``targets`` within one deadline ``timeout`` from now; those that did not finish.

    Each is first asked without waiting (``flush(0)`` sets what it must send and wakes its
    thread), so all send side by side; then each is waited for within what is left of the one
    deadline, so ``timeout`` bounds the whole, not each. A flush that raises counts as unfinished.
    """
    end = time.monotonic() + timeout
    left: list[F] = []
    for target in targets:
        with contextlib.suppress(Exception):  # its wait below raises too, and counts it
            target.flush(0.0)
    for target in targets:
        try:
            done = target.flush(max(0.0, end - time.monotonic()))
        except Exception:
            done = False
        if not done:
            left.append(target)
    return left


def flush_all(timeout: float) -> list[Any]:
    """Flush every live engine within one shared ``timeout``; the engines that did not finish.

    Unlike a drain, nothing is closed: the flush threads go on, and feedback logged afterwards is
    sent as usual. The engines are the ones alive now, so one made a moment ago is among them.
    """
    with state.lock:
        engines = list(state.engines)
    return flush_together(engines, timeout)


def expect_lifespan_drain() -> None:
    """An ASGI lifespan has started that will call :func:`drain_at_server_shutdown`."""
    state.drained_by_lifespan = True


def drain_at_server_shutdown() -> None:
    """Close every live engine at once, each within its own ``exit_timeout``, while the process
    still lives: a server's shutdown, after the last request and before the server ends it.

    Unlike the exit drain, threads may start again afterwards: feedback logged later (a test
    client's next app, a later lifespan) is sent as usual.
    """
    _close_all()


def warn_if_sigterm_will_lose_feedback() -> None:
    """Say once, at the first feedback a process sends, if its server will end it by ``SIGTERM``
    with no drain before: today uvicorn >= 0.29 (its CLI, ``uvicorn.run()``, gunicorn's uvicorn
    workers) without a lifespan drain or ``exit_on_sigterm()``. Runs on the flush thread."""
    if state.sigterm_warned or state.drained_by_lifespan:
        return
    server = signals.reraising_server()
    if server is None:
        return
    state.sigterm_warned = True
    _report.emit(
        logging.WARNING,
        f"{server} ends this process by raising SIGTERM again after its shutdown, so no exit hook "
        "runs: feedback still queued then is lost at every deploy or restart, unless the "
        "application's lifespan shutdown sends it. To send it there, add one line: "
        "app.add_middleware(humanloop_logging.FeedbackMiddleware) (FastAPI, Starlette), or "
        "app = FeedbackMiddleware(app) for any other ASGI app; see 'FastAPI and other ASGI apps' "
        "in docs/integrations/servers.md.",
    )


def _attach_pool_hooks() -> None:
    """Hook into multiprocessing's and Celery's child shutdown, if this process uses them."""
    util: Any = sys.modules.get("multiprocessing.util")
    if util is not None:
        if not state.after_fork_registered:
            state.after_fork_registered = True
            util.register_after_fork(_token, _in_multiprocessing_child)
        if state.finalizer_pid != os.getpid():
            _register_finalizer(util)
    signals: Any = sys.modules.get("celery.signals")
    if signals is not None and not state.celery_connected:
        state.celery_connected = True
        signals.worker_process_shutdown.connect(
            _on_celery_child_shutdown, weak=False, dispatch_uid="humanloop_logging.drain"
        )


def _register_finalizer(util: Any) -> None:
    state.finalizer_pid = os.getpid()
    # Priority 0 runs in the first round of multiprocessing's exit finalizers, before the
    # process joins its own children and ends.
    util.Finalize(None, drain_all, exitpriority=0)


def _in_multiprocessing_child(_token: object) -> None:
    """A new multiprocessing child, after it cleared the finalizers it inherited."""
    util: Any = sys.modules.get("multiprocessing.util")
    if util is not None:
        _register_finalizer(util)


def _on_celery_child_shutdown(**_kwargs: Any) -> None:
    drain_all()


def _before_fork() -> None:
    _attach_pool_hooks()


def _after_fork_in_child() -> None:
    state.lock = threading.Lock()  # the parent's may have been held at fork time
    state.exiting = False
    state.sigterm_warned = False  # each worker process is told once
    for engine in list(state.engines):
        engine.after_fork_in_child()
    _census.after_fork_in_child()


atexit.register(drain_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
