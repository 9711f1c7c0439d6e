"""The library's own threads: born with signals blocked, marked as ours, each running one round.

A thread runs ``engine.round(kind, generation)`` until it returns False. It holds the engine only
for a round, or while the engine is closing: a shipper dropped without ``close()`` is closed by
its finalizer, and from then on the thread keeps the engine alive until everything is sent or
given up on, so nothing vanishes with it.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from typing import Optional, Protocol

from ._record import safe_repr
from ._report import Reporter
from .signals import start_without_signals

__all__ = ["FLUSH", "HELP", "SEND", "THREAD_NAMES", "Runs", "own", "start"]

#: The rounds a thread can run: the flush thread's (memory: batches; spool: the writer's), a
#: helper's (a batch of a backlog, beside the flush thread), the spool sender's.
FLUSH, HELP, SEND = "flush", "help", "send"

_NAMES = {
    FLUSH: "humanloop-feedback-flush",
    HELP: "humanloop-feedback-flush",
    SEND: "humanloop-feedback-send",
}

#: The names of the threads that may run ``on_error``: where ``own`` cannot be read (the thread a
#: message was logged on, seen from the thread that handles it later), the name tells.
THREAD_NAMES = frozenset(_NAMES.values())


class _OwnThread(threading.local):
    """Which engine the running thread works for; set by the thread itself, first thing.

    Feedback logged on one of them (by an ``on_error`` callback) is the engine's own, and must not
    be sent (it could loop), nor may ``flush()`` wait there for the thread itself. A thread-local
    rather than a set of thread idents: an ident is reused once its thread ends, so an
    application thread started after a close could pass for one of ours.
    """

    token: Optional[object] = None  # an engine's ``token``; None on every other thread


#: ``own.token is engine.token`` on the engine's threads, and nowhere else.
own = _OwnThread()


class Runs(Protocol):
    """What a thread needs of the engine it works for."""

    token: object
    reporter: Reporter

    @property
    def closing(self) -> bool: ...

    def round(self, kind: str, generation: int) -> bool: ...


def start(engine: Runs, kinds: Sequence[str], generation: int) -> list[threading.Thread]:
    """Start a thread for each of ``kinds`` (in that order) for ``generation``.

    Raises the ``RuntimeError`` of ``Thread.start`` if one cannot start now; one that did start
    ends at its first round once the caller has moved the generation on."""
    ref = weakref.ref(engine)
    threads = [
        threading.Thread(
            target=_run,
            args=(ref, kind, generation, engine.token),
            name=_NAMES[kind],
            daemon=True,
        )
        for kind in kinds
    ]
    for thread in threads:
        start_without_signals(thread)
    return threads


def _run(ref: weakref.ReferenceType[Runs], kind: str, generation: int, token: object) -> None:
    own.token = token
    keep: Optional[Runs] = None
    while True:
        engine = ref()
        if engine is None:
            return
        try:
            if not engine.round(kind, generation):
                return
        except Exception as exc:  # never let the thread die silently
            engine.reporter.log(
                f"flush thread error: {safe_repr(exc)}", kind="bug", level=logging.ERROR
            )
        keep = engine if engine.closing else keep
        del engine
