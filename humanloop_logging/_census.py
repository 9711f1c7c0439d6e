"""The census: the counts of every engine of the process, by name, those already gone included.

Metrics read counters that must never go backwards while the process lives, but an engine takes
its ledger with it when it is garbage collected (a shipper dropped without ``close()``, or replaced
by ``dictConfig()``). So each engine is enrolled when it is made, with a weak reference and a
reader of its counts that does not hold it; an engine found gone has its last counts read through
that reader and kept, by name. Nothing runs at garbage collection (a callback there could run on
any thread, this one's lock held included): a gone engine is noticed at the next read or the next
enrolment, and since nothing changes its counts once it is gone, what is kept then is exact.

A gone engine keeps its counters only: ``pending`` and ``spooled`` are about this moment, and
nothing is pending in an engine that is gone. A forked child starts from nothing, as its engines'
``stats()`` do.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from typing import Callable, NamedTuple, Optional, Protocol

from ._ledger import FeedbackStats

__all__ = ["Counted", "add", "after_fork_in_child", "enrol", "totals"]

#: The fields of FeedbackStats that say how things are now rather than count since the start.
GAUGES = frozenset({"pending", "spooled"})
_FIELDS = tuple(field.name for field in dataclasses.fields(FeedbackStats))


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class Counted(Protocol):
    """What the census needs of an engine."""

    @property
    def settings(self) -> _Named: ...

    def stats(self) -> FeedbackStats: ...

    def stats_reader(self) -> Callable[[], FeedbackStats]: ...


class _Entry(NamedTuple):
    engine: weakref.ref[Counted]
    name: str
    read: Callable[[], FeedbackStats]


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[_Entry] = []
        #: The summed last counts of the engines gone, by name (gauges at zero).
        self.gone: dict[str, FeedbackStats] = {}


_state = _State()


def add(total: Optional[FeedbackStats], stats: FeedbackStats) -> FeedbackStats:
    """``total + stats``, field by field (``stats`` alone when there is no total yet)."""
    if total is None:
        return stats
    return FeedbackStats(*(getattr(total, f) + getattr(stats, f) for f in _FIELDS))


def enrol(engine: Counted) -> None:
    """Count ``engine`` under its name from now on, and after it is gone."""
    entry = _Entry(weakref.ref(engine), engine.settings.name, engine.stats_reader())
    with _state.lock:
        _take_stock_locked()  # so that a process making many short-lived shippers holds no more
        _state.entries.append(entry)


def totals() -> dict[str, FeedbackStats]:
    """Every name's counts: its live engines' ``stats()`` plus what its gone engines counted."""
    with _state.lock:
        live = _take_stock_locked()
        result = dict(_state.gone)
    for name, engine in live:
        result[name] = add(result.get(name), engine.stats())
    return result


def _take_stock_locked() -> list[tuple[str, Counted]]:
    """The live engines, by strong reference, and the last counts of those gone since the last
    look moved into ``gone``. One look at each entry decides both: an engine alive then cannot go
    before it is read, so each is counted either live or gone, never neither nor both."""
    live: list[tuple[str, Counted]] = []
    alive: list[_Entry] = []
    for entry in _state.entries:
        engine = entry.engine()
        if engine is not None:
            live.append((entry.name, engine))
            alive.append(entry)
            continue
        final = dataclasses.replace(entry.read(), **dict.fromkeys(GAUGES, 0))
        _state.gone[entry.name] = add(_state.gone.get(entry.name), final)
    _state.entries = alive
    return live


def after_fork_in_child() -> None:
    """A forked child counts from zero: its engines were given new books, and the gone ones
    counted the parent's work. Runs after the engines' own reset."""
    _state.lock = threading.Lock()  # the parent's may have been held at fork time
    _state.gone.clear()
    _state.entries = [
        _Entry(entry.engine, entry.name, engine.stats_reader())
        for entry in _state.entries
        if (engine := entry.engine()) is not None
    ]
