"""The delivery policy as plain code: scripted outcomes in, requests out; no HTTP, no threads.

The driver here plays the engine's part: it answers each ``Send`` from a script or a model of
the service, settles records the way the engine counts them, and records every step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

from hypothesis import given, settings
from hypothesis import strategies as st

from humanloop_logging._delivery import (
    Answer,
    GiveUp,
    Outage,
    Outcome,
    Send,
    deliver,
    drive,
    halves,
    probe_indices,
    split_422,
    suspect,
)

#: How a script answers a Send: an outcome, a 413, or a 422 naming these indices of the chunk.
TooLarge = str
Reply = Union[Outcome, TooLarge, frozenset[int]]
TOO_LARGE: TooLarge = "413"


@dataclass
class Driver:
    """The engine's side: answers, settles and remembers."""

    reply: Callable[[Send], Reply]
    outage: bool = False
    steps: list[tuple[object, ...]] = field(default_factory=list)
    #: id(record) -> how it ended: "sent", "rejected", "failed" or "poison".
    settled: dict[int, list[str]] = field(default_factory=dict)

    def settle(self, records: Iterable[str], how: str) -> None:
        for record in records:
            self.settled.setdefault(id(record), []).append(how)

    def answer(self, step: Union[Send, GiveUp, Outage]) -> Optional[Answer]:
        if isinstance(step, Outage):
            self.steps.append(("outage",))
            self.outage = True
            return None
        if isinstance(step, GiveUp):
            self.steps.append(("give up", list(step.chunk)))
            self.settle(step.chunk, "poison")
            return None
        self.steps.append(("send", list(step.chunk), step.suspect_after))
        reply = self.reply(step)
        chunk = step.chunk
        if reply is Outcome.OK:
            self.outage = False  # a success ends an outage
            self.settle(chunk, "sent")
            return Outcome.OK, []
        if reply is Outcome.SUSPECT:
            assert step.suspect_after > 0, "a suspect answer ends only a request that allows it"
            return Outcome.SUSPECT, []
        if reply == TOO_LARGE:
            if len(chunk) > 1:
                return Outcome.FAILED, halves(chunk)
            self.settle(chunk, "failed")
            return Outcome.FAILED, []
        if isinstance(reply, frozenset):
            rejected, rest = split_422(chunk, dict.fromkeys(i for i in reply if i < len(chunk)))
            self.settle([chunk[i] for i in rejected], "rejected")
            return Outcome.REJECTED, rest
        self.settle(chunk, "failed")
        return Outcome.FAILED, []

    def run(self, items: list[str]) -> Driver:
        drive(deliver(items, lambda: self.outage), self.answer)
        return self


def records(n: int) -> list[str]:
    return [f"r{i}" for i in range(n)]


def scripted(*replies: Reply) -> Callable[[Send], Reply]:
    queue = list(replies)
    return lambda _step: queue.pop(0)


def test_an_accepted_batch_is_one_request_that_may_be_suspected_after_two_tries() -> None:
    driver = Driver(scripted(Outcome.OK)).run(records(3))
    assert driver.steps == [("send", ["r0", "r1", "r2"], 2)]


def test_a_lone_record_is_never_suspected_and_an_outage_suspects_no_batch() -> None:
    """One record cannot be isolated further; during an outage isolating would only multiply
    requests to a service that is down."""
    assert Driver(scripted(Outcome.OK)).run(records(1)).steps == [("send", ["r0"], 0)]
    in_outage = Driver(scripted(Outcome.FAILED), outage=True).run(records(3))
    assert in_outage.steps == [("send", ["r0", "r1", "r2"], 0)]


def test_a_422_rejects_exactly_what_it_names_and_sends_the_rest_at_once() -> None:
    driver = Driver(scripted(frozenset({1, 3}), Outcome.OK)).run(records(5))
    assert driver.steps == [
        ("send", ["r0", "r1", "r2", "r3", "r4"], 2),
        ("send", ["r0", "r2", "r4"], 2),
    ]
    hows = {record: driver.settled[id(record)] for record in driver_records(driver)}
    assert hows == {r: (["rejected"] if r in ("r1", "r3") else ["sent"]) for r in records(5)}


def driver_records(driver: Driver) -> list[str]:
    first = driver.steps[0]
    assert first[0] == "send"
    chunk = first[1]
    assert isinstance(chunk, list)
    return chunk


def test_a_422_that_names_nothing_is_bisected_down_to_the_record_it_is_about() -> None:
    nothing: frozenset[int] = frozenset()
    driver = Driver(scripted(nothing, Outcome.OK, nothing, Outcome.OK, nothing)).run(records(4))
    assert driver.steps == [
        ("send", ["r0", "r1", "r2", "r3"], 2),
        ("send", ["r0", "r1"], 2),
        ("send", ["r2", "r3"], 2),
        ("send", ["r2"], 0),
        ("send", ["r3"], 0),
    ]
    hows = {record: driver.settled[id(record)] for record in driver_records(driver)}
    assert hows == {r: (["rejected"] if r == "r3" else ["sent"]) for r in records(4)}


def test_a_413_splits_the_batch_in_halves_first_half_first() -> None:
    driver = Driver(scripted(TOO_LARGE, Outcome.OK, Outcome.OK)).run(records(5))
    assert driver.steps == [
        ("send", ["r0", "r1", "r2", "r3", "r4"], 2),
        ("send", ["r0", "r1"], 2),
        ("send", ["r2", "r3", "r4"], 2),
    ]


def poisoned_service(*poison: str) -> Callable[[Send], Reply]:
    """A service that is up and fails (500) on every request holding one of ``poison``."""

    def reply(step: Send) -> Reply:
        if not set(poison) & set(step.chunk):
            return Outcome.OK
        return Outcome.SUSPECT if step.suspect_after else Outcome.FAILED

    return reply


def test_a_poison_record_costs_only_itself() -> None:
    """Probes tell the service is up; the rest is sent whole, then halved towards the record
    that fails alone, twice, and only that one is given up on."""
    driver = Driver(poisoned_service("r5")).run(records(8))
    assert probe_indices(8) == [2, 4, 6]
    assert driver.steps == [
        ("send", records(8), 2),
        ("send", ["r2"], 1),  # the first probe gets through: the service is up
        ("send", ["r0", "r1", "r3", "r4", "r5", "r6", "r7"], 1),
        ("send", ["r0", "r1", "r3"], 1),
        ("send", ["r4", "r5"], 1),
        ("send", ["r4"], 1),
        ("send", ["r5"], 2),
        ("give up", ["r5"]),
        ("send", ["r6", "r7"], 1),
    ]
    hows = {record: driver.settled[id(record)] for record in driver_records(driver)}
    assert hows == {r: (["poison"] if r == "r5" else ["sent"]) for r in records(8)}


def test_an_outage_is_told_by_the_probes_and_the_batch_is_retried_whole_once() -> None:
    """No probe gets through: no halving, one more request for the whole batch, unsuspected."""
    everything_fails = Driver(lambda s: Outcome.SUSPECT if s.suspect_after else Outcome.FAILED)
    driver = everything_fails.run(records(8))
    assert driver.steps == [
        ("send", records(8), 2),
        ("send", ["r2"], 1),
        ("send", ["r4"], 1),
        ("send", ["r6"], 1),
        ("outage",),
        ("send", records(8), 0),
    ]
    assert all(hows == ["failed"] for hows in driver.settled.values())


def test_which_answers_are_suspect() -> None:
    """A 500 and a 4xx that one record could explain; never the key, the URL, the rate, a
    timeout, the size, a 422 or a 5xx that is the service's own state."""
    assert [s for s in (400, 409, 410, 418, 500) if suspect(s)] == [400, 409, 410, 418, 500]
    for status in (401, 403, 404, 405, 407, 408, 413, 422, 429, 502, 503, 504):
        assert not suspect(status)


# -- every record ends in exactly one bucket, whatever the service answers ----------------------

REPLIES: st.SearchStrategy[Reply] = st.one_of(
    st.sampled_from([Outcome.OK, Outcome.FAILED, Outcome.SUSPECT, TOO_LARGE]),
    st.frozensets(st.integers(0, 12), max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 12),
    duplicates=st.booleans(),
    outage=st.booleans(),
    data=st.data(),
)
def test_every_record_is_settled_exactly_once_and_the_policy_ends(
    size: int, duplicates: bool, outage: bool, data: st.DataObject
) -> None:
    """Whatever the answers (a suspect one only where the request allows it), each record ends
    sent, rejected, failed or given up as poison exactly once, within a bounded number of
    requests. Records with the same text are told apart by identity."""
    # Distinct objects; with ``duplicates`` several of them have the same text.
    items = ["".join(["r", str(i % 3 if duplicates else i)]) for i in range(size)]

    def reply(step: Send) -> Reply:
        answer: Reply = data.draw(REPLIES)
        if answer is Outcome.SUSPECT and not step.suspect_after:
            return Outcome.FAILED
        return answer

    driver = Driver(reply, outage=outage)
    budget = [20 * size + 20]

    def bounded(step: Union[Send, GiveUp, Outage]) -> Optional[Answer]:
        budget[0] -= 1
        assert budget[0] > 0, "the policy does not end"
        return driver.answer(step)

    drive(deliver(items, lambda: driver.outage), bounded)
    assert sorted(driver.settled) == sorted(id(item) for item in items)
    assert all(len(hows) == 1 for hows in driver.settled.values()), driver.steps
