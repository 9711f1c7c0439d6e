"""The census as plain code: engines of its own, with a ledger and a queue and no thread.

Each test uses names of its own: the census is the process's, and the engines of other tests are
in it too.
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import itertools
import weakref
from types import SimpleNamespace
from typing import Callable

from humanloop_logging import FeedbackStats
from humanloop_logging._census import add, enrol, totals
from humanloop_logging._ledger import Ledger

_names = itertools.count()


def fresh_name() -> str:
    return f"census-{next(_names)}"


class Engine:
    """What the census reads of an engine: its name, its counts, and a reader of them that does
    not hold it."""

    def __init__(self, name: str) -> None:
        self.settings = SimpleNamespace(name=name)
        self.books = Ledger()
        self.queue: collections.deque[int] = collections.deque()

    def stats(self) -> FeedbackStats:
        return self.books.stats(len(self.queue))

    def stats_reader(self) -> Callable[[], FeedbackStats]:
        books, queue = self.books, self.queue
        return lambda: books.stats(len(queue))

    def send(self, sent: int, queued: int = 0) -> None:
        """``sent`` records sent, and ``queued`` more waiting in the queue."""
        epoch = self.books.take(sent)
        self.books.finish(epoch, sent=sent)
        self.queue.extend(range(queued))


def counts(**given: int) -> FeedbackStats:
    zero = dict.fromkeys((f.name for f in dataclasses.fields(FeedbackStats)), 0)
    return FeedbackStats(**{**zero, **given})


def test_engines_that_share_a_name_are_summed() -> None:
    """Two engines of one name make one total; another name stays apart."""
    shared, alone = fresh_name(), fresh_name()
    engines = [Engine(shared), Engine(shared), Engine(alone)]
    for engine in engines:
        enrol(engine)
    engines[0].send(2)
    engines[1].send(3, queued=1)
    engines[2].send(7)

    now = totals()
    assert now[shared] == counts(enqueued=6, sent=5, pending=1)
    assert now[alone] == counts(enqueued=7, sent=7)


def test_a_gone_engine_leaves_its_last_counts_and_no_gauge() -> None:
    """Once collected, an engine's counters stay in its name's total, exactly as it left them
    (what it did after the last read included); its pending records leave the gauge."""
    name = fresh_name()
    survivor, leaving = Engine(name), Engine(name)
    enrol(survivor)
    enrol(leaving)
    survivor.send(1)
    leaving.send(2)
    assert totals()[name] == counts(enqueued=3, sent=3)

    leaving.send(4, queued=2)  # after the last read: counted all the same
    gone = weakref.ref(leaving)
    del leaving
    gc.collect()
    assert gone() is None

    assert totals()[name] == counts(enqueued=9, sent=7)
    survivor.send(1)
    assert totals()[name] == counts(enqueued=10, sent=8)


def test_a_name_whose_engines_are_all_gone_keeps_its_counters() -> None:
    """A name stays with its counters when its last engine is collected, and a new engine of
    that name adds to them."""
    name = fresh_name()
    engine = Engine(name)
    enrol(engine)
    engine.send(5)
    del engine
    gc.collect()
    assert totals()[name] == counts(enqueued=5, sent=5)

    again = Engine(name)
    enrol(again)
    again.send(1)
    assert totals()[name] == counts(enqueued=6, sent=6)


def test_add_sums_every_field() -> None:
    """add() sums field by field, and None is no total yet."""
    one = FeedbackStats(*range(1, 12))
    assert add(None, one) is one
    assert add(one, one) == FeedbackStats(*range(2, 24, 2))
