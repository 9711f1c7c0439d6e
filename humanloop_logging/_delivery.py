"""The delivery policy: what to send next when a batch meets a 422, a 413, a 500 or an outage.

Sans-I/O, like h11: :func:`deliver` is a generator that yields the next step and receives the
outcome of each request, and holds no socket, lock, clock or counter. The engine drives it
against the transport and does the counting; a test drives it with a scripted list of outcomes.

- A 422 names the refused items (in any FastAPI shape): exactly those are rejected and the rest
  is sent again at once. One that names none is bisected.
- A 413 splits the batch in halves.
- A 500 that follows a batch through a retry, or another answer that one record could explain
  (a 4xx that is not about the key, the URL or the rate), is *suspect*: the batch is isolated.
  A few records go alone first. If one gets through, the service is up and the rest is sent
  whole; if that fails too it holds the poison, and is halved until the record that fails alone,
  twice, is given up on alone. If no probe gets through it is an outage: the batch is retried
  whole, and no batch is isolated again until something succeeds, so that an outage never
  multiplies requests.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Callable, Optional, Union

__all__ = [
    "Answer",
    "GiveUp",
    "Outage",
    "Outcome",
    "Send",
    "deliver",
    "drive",
    "halves",
    "probe_indices",
    "split_422",
    "suspect",
]

#: A validated record as it goes into a request's array (its JSON object text).
Payload = str


class Outcome(enum.Enum):
    """What became of one request, as the policy needs to know it."""

    #: Accepted: its records are sent.
    OK = "ok"
    #: A 422: the records it named are rejected; the rest comes back as parts to send.
    REJECTED = "rejected"
    #: A suspect answer, ``suspect_after`` times in a row: nothing is settled yet.
    SUSPECT = "suspect"
    #: Given up on (its records failed), or split after a 413 (the halves come back as parts).
    FAILED = "failed"


#: The outcome of a request and the parts of its chunk left to send.
Answer = tuple[Outcome, list[list[Payload]]]


@dataclass(frozen=True)
class Send:
    """Send ``chunk`` (with retries); a suspect answer ``suspect_after`` times in a row ends it
    early with :attr:`Outcome.SUSPECT` (0: never)."""

    chunk: list[Payload]
    suspect_after: int


@dataclass(frozen=True)
class GiveUp:
    """Give up on ``chunk`` (one record): the service fails on it alone, twice, while others of
    its batch were accepted."""

    chunk: list[Payload]


@dataclass(frozen=True)
class Outage:
    """No probe of a suspect batch got through: the service is failing, not a record. Until a
    request succeeds, batches are not isolated (the driver keeps that state)."""


Step = Union[Send, GiveUp, Outage]
#: The generator: steps out, an answer in for each Send (None for the others).
Policy = Generator[Step, Optional[Answer], None]

#: How many records of a failing batch are sent alone to tell poison from an outage.
PROBES = 3

#: Statuses that are the service's state or the client's setup, never one record's doing.
NOT_POISON = frozenset({401, 403, 404, 405, 407, 408, 413, 422, 429})


def suspect(status: int) -> bool:
    """An answer that one bad record in the batch could explain."""
    return status == 500 or (400 <= status < 500 and status not in NOT_POISON)


def halves(chunk: list[Payload]) -> list[list[Payload]]:
    """The two halves, as a stack: the first half is sent next."""
    half = len(chunk) // 2
    return [chunk[half:], chunk[:half]]


def probe_indices(n: int) -> list[int]:
    """Records spread over the batch, so that a run of bad records cannot hide all of them."""
    return sorted({n // 2, n // 4, (3 * n) // 4})[:PROBES] if n > 1 else [0]


def split_422(
    chunk: list[Payload], named: Mapping[int, object]
) -> tuple[list[int], list[list[Payload]]]:
    """After a 422 naming the items ``named`` (by index): which to reject, and what to send.

    A 422 of a batch that names no item is bisected, rejecting nothing yet; of a single record,
    that record is rejected (the body's own errors say why).
    """
    if not named:
        return ([], halves(chunk)) if len(chunk) > 1 else ([0], [])
    rest = [item for index, item in enumerate(chunk) if index not in named]
    return sorted(named), [rest] if rest else []


def deliver(items: list[Payload], in_outage: Callable[[], bool]) -> Policy:
    """Every request it takes to settle ``items``: each record ends accepted, rejected, given up
    by the driver (a :attr:`Outcome.FAILED` answer) or in a :class:`GiveUp`, exactly once.

    ``in_outage``: whether the last isolation found an outage that no success has ended since;
    a batch is then sent without being suspected, since isolating it would only multiply
    requests to a service that is down.
    """
    work = [items]
    while work:
        chunk = work.pop()
        early = 2 if len(chunk) > 1 and not in_outage() else 0
        outcome, more = yield from _send(chunk, early)
        work += more
        if outcome is Outcome.SUSPECT:
            work += yield from _isolate(chunk)


def _send(chunk: list[Payload], suspect_after: int) -> Generator[Step, Optional[Answer], Answer]:
    answer = yield Send(chunk, suspect_after)
    if answer is None:
        raise TypeError("a Send step needs an Answer")
    return answer


def _isolate(batch: list[Payload]) -> Generator[Step, Optional[Answer], list[list[Payload]]]:
    """Find the records a suspect batch fails on, or tell an outage; returns what to resend.

    A part that fails while the service is up is halved and its first half sent: if that is
    accepted, the second half is known to fail and is halved without being sent.
    """
    rest = list(batch)
    up = False
    for index in probe_indices(len(batch)):
        probe = batch[index]
        outcome, more = yield from _send([probe], 1)
        if outcome is not Outcome.SUSPECT:
            # By identity: another record of the batch may have the same text.
            rest = [payload for payload in rest if payload is not probe]
            up = outcome in (Outcome.OK, Outcome.REJECTED)
            break
    if not up:
        yield Outage()
        return [rest] if rest else []
    # (part, known to fail): the rest is sent whole first, in case the failure was a flake.
    work: list[tuple[list[Payload], bool]] = [(rest, False)] if rest else []
    while work:
        part, failing = work.pop()
        if not failing:
            outcome, more = yield from _send(part, 1)
            work += [(p, False) for p in more]
            if outcome is Outcome.SUSPECT:
                work.append((part, True))
        elif len(part) == 1:
            outcome, _ = yield from _send(part, 2)
            if outcome is Outcome.SUSPECT:
                yield GiveUp(part)
        else:
            first, second = halves(part)[::-1]
            outcome, more = yield from _send(first, 1)
            work += [(p, False) for p in more]
            if outcome is Outcome.OK:
                work.append((second, True))
            elif outcome is Outcome.SUSPECT:
                work += [(second, False), (first, True)]
            else:
                work.append((second, False))
    return []


def drive(policy: Policy, answer_to: Callable[[Step], Optional[Answer]]) -> None:
    """Run ``policy`` to its end, answering each step with ``answer_to`` (the engine's I/O)."""
    answer: Optional[Answer] = None
    try:
        step = next(policy)
        while True:
            answer = answer_to(step)
            step = policy.send(answer)
    except StopIteration:
        return
