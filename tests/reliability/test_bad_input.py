"""Arbitrary values in every feedback field and arbitrary ``extra``, through handler and processor.

The flush thread is held in a request that the stand-in never answers while the examples run, so
a logging call that waited for the network (or for the flush thread) would hang the test. When
the stand-in lets go, everything logged goes out in mixed batches, and every record must be
accounted for: delivered, or reported through ``on_error``.
"""

from __future__ import annotations

import itertools
import logging
import math
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import (
    HYPOTHESIS_EXAMPLES,
    MEASUREMENTS,
    SECRET_KEY,
    Cleanup,
    ErrorLog,
    received_counts,
)

from humanloop_logging import FeedbackHandler, FeedbackProcessor
from humanloop_logging.testing import FakeHumanloop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MAX_EXAMPLES = 500
FIELDS = ("data_id", "type", "value", "user", "created_at", "unset")
RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "event",
    *FIELDS,
}


# -- hostile objects ------------------------------------------------------------------------------


class Refused(RuntimeError):
    pass


def _refuse(*_args: object, **_kwargs: object) -> Any:
    raise Refused("refused")


class Hostile:
    """Raises from every special method a logging library might call."""

    __str__ = __repr__ = __format__ = __eq__ = __hash__ = _refuse
    __bool__ = __len__ = __iter__ = __int__ = __float__ = __index__ = _refuse


class HostileClass:
    """Even ``isinstance`` raises on this one: its ``__class__`` lookup fails."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise Refused("__class__")

    __repr__ = __str__ = _refuse


class HostileStr(str):
    __str__ = __repr__ = __hash__ = __eq__ = encode = __len__ = _refuse


class HostileInt(int):
    __int__ = __index__ = __float__ = __repr__ = __str__ = _refuse


class HostileFloat(float):
    __float__ = __repr__ = __str__ = _refuse


class HostileList(list[Any]):
    __iter__ = __len__ = __repr__ = _refuse


class HostileTz(tzinfo):
    utcoffset = dst = tzname = _refuse


class HostileDatetime(datetime):
    isoformat = astimezone = __repr__ = _refuse


def recursive_list() -> list[Any]:
    loop: list[Any] = ["a"]
    loop.append(loop)
    return loop


def recursive_dict() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


class Make:
    """A hostile object, made only when logged: the strategies never touch the real thing."""

    def __init__(self, factory: Callable[[], Any], name: str) -> None:
        self.factory = factory
        self.name = name

    def __repr__(self) -> str:
        return f"Make({self.name})"


def made(value: Any) -> Any:
    """``value`` with every Make inside replaced by what it makes."""
    if isinstance(value, Make):
        return value.factory()
    if isinstance(value, list):
        return [made(v) for v in value]
    if isinstance(value, tuple):
        return tuple(made(v) for v in value)
    if isinstance(value, dict):
        return {k: made(v) for k, v in value.items()}
    return value


HUGE = "h" * ((1 << 20) + 1)  # over the 1 MiB record limit on its own
HUGE_WIDE = "\u00e9" * (600 * 1024)  # under a million characters, over 1 MiB as UTF-8
BIG = "b" * 100_000  # large but acceptable

hostile: st.SearchStrategy[Any] = st.sampled_from(
    [
        Make(Hostile, "Hostile"),
        Make(lambda: HostileStr("looks fine"), 'HostileStr("looks fine")'),
        Make(lambda: HostileInt(7), "HostileInt(7)"),
        Make(lambda: HostileFloat(0.5), "HostileFloat(0.5)"),
        Make(lambda: HostileList(["a"]), 'HostileList(["a"])'),
        Make(
            lambda: datetime(2024, 1, 1, tzinfo=HostileTz()),
            "datetime(2024, 1, 1, tzinfo=HostileTz())",
        ),
        Make(
            lambda: HostileDatetime(2024, 1, 1, tzinfo=timezone.utc),
            "HostileDatetime(2024, 1, 1, tzinfo=timezone.utc)",
        ),
        Make(recursive_list, "recursive_list"),
        Make(recursive_dict, "recursive_dict"),
        Make(lambda: (x for x in "generator"), '(x for x in "generator")'),
        Make(lambda: HUGE, "HUGE"),
        Make(lambda: HUGE_WIDE, "HUGE_WIDE"),
        Make(lambda: BIG, "BIG"),
        Make(lambda: 10**5000, "10**5000"),  # past int's default string conversion limit
        Make(lambda: float("nan"), 'float("nan")'),
        Make(lambda: float("inf"), 'float("inf")'),
        Make(lambda: -math.inf, "-math.inf"),
        Make(lambda: Decimal("NaN"), 'Decimal("NaN")'),
        Make(object, "object()"),
        Make(lambda: print, "print"),
        Make(
            lambda: ValueError("an exception as a value"), 'ValueError("an exception as a value")'
        ),
    ]
)

surrogates = st.builds(
    lambda head, lone, tail: head + lone + tail,
    st.text(max_size=5),
    st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]),
    st.text(max_size=5),
)

scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    surrogates,
    st.binary(max_size=20),
    st.binary(max_size=20).map(bytearray),
    st.decimals(),
    st.fractions(),
    st.complex_numbers(),
    st.dates(),
    st.times(),
    st.timedeltas(),
    hostile,
)

anything: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.sets(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), children, max_size=3),
    ),
    max_leaves=8,
)

offsets = st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)).map(timezone)
datetimes = st.datetimes(timezones=st.none() | offsets)

FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "data_id": st.one_of(st.text(min_size=1), anything, hostile),
    "type": st.one_of(
        st.sampled_from(["rating", "action", "issue", "correction"]), anything, hostile
    ),
    "value": st.one_of(
        st.sampled_from(["good", "bad"]),
        st.lists(st.text(), max_size=3),
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(),
        anything,
        hostile,
    ),
    "user": st.one_of(st.text(), anything, hostile),
    "created_at": st.one_of(
        datetimes,
        datetimes.map(lambda d: d.isoformat()),
        st.floats(min_value=-1e11, max_value=1e11),
        anything,
        hostile,
    ),
    "unset": st.one_of(st.booleans(), anything, hostile),
}

extra_keys = st.text(min_size=1, max_size=12).filter(lambda key: key not in RESERVED)


@st.composite
def feedback_records(draw: st.DrawFn) -> tuple[bool, dict[str, Any], dict[str, Any]]:
    """(tracked, feedback fields, other extra keys). Tracked records get a known data_id."""
    tracked = draw(st.booleans())
    fields = {"type": draw(FIELD_VALUES["type"])}
    if not tracked:
        fields["data_id"] = draw(FIELD_VALUES["data_id"])
    for name in ("value", "user", "created_at", "unset"):
        if draw(st.booleans()):
            fields[name] = draw(FIELD_VALUES[name])
    others = draw(st.dictionaries(extra_keys, anything, max_size=4))
    return tracked, fields, others


# -- the run --------------------------------------------------------------------------------------


class Ledger:
    """What was logged: witnesses (always valid) and tracked records (anything), by data_id."""

    def __init__(self) -> None:
        prefix = uuid.uuid4().hex[:8]
        self._numbers = itertools.count()
        self.prefix = prefix
        self.witnesses: list[str] = []
        self.tracked: list[str] = []
        self.calls = 0

    def next_id(self, kind: str) -> str:
        return f"{self.prefix}-{kind}-{next(self._numbers)}"


def hold_the_flush_thread(fake: FakeHumanloop, log_one: Callable[[dict[str, Any]], None]) -> str:
    """Send one record into a request the stand-in holds unanswered until clear()."""
    fake.hang_next(1)
    first = f"first-{uuid.uuid4().hex[:8]}"
    log_one({"data_id": first, "type": "rating", "value": "good"})
    assert fake.wait_for_arrivals(1, timeout=10)
    return first


def run_examples(ledger: Ledger, log_one: Callable[[dict[str, Any]], None]) -> int:
    examples = 0

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same examples on every run, so CI results are reproducible
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(record=feedback_records())
    def log_example(record: tuple[bool, dict[str, Any], dict[str, Any]]) -> None:
        nonlocal examples
        examples += 1
        tracked, fields, others = record
        if tracked:
            fields = {**fields, "data_id": ledger.next_id("tracked")}
            ledger.tracked.append(fields["data_id"])
        witness = ledger.next_id("witness")
        ledger.witnesses.append(witness)
        log_one(made({**others, **fields}))  # must not raise
        log_one({"data_id": witness, "type": "rating", "value": "good"})
        ledger.calls += 2

    log_example()
    return examples


def settle_and_check(
    *,
    name: str,
    fake: FakeHumanloop,
    errors: ErrorLog,
    ledger: Ledger,
    first: str,
    flush: Callable[[float], bool],
    stats: Callable[[], Any],
) -> None:
    fake.clear()  # lets go of the held request: the client retries it and sends the rest
    assert flush(120.0), stats()
    counts = received_counts(fake)
    refused = errors.refused()
    rejected = errors.rejected()
    s = stats()
    # Every logging call was counted, and every count is in exactly one bucket.
    assert s.enqueued == ledger.calls + 1
    assert (s.pending, s.dropped, s.failed) == (0, 0, 0)
    assert s.enqueued == s.sent + s.rejected + s.dropped + s.failed + s.pending
    assert s.sent == sum(counts.values())
    assert s.rejected == len(refused) + len(rejected)
    # Valid records that shared batches with bad ones arrived, once each.
    assert counts[first] == 1
    assert [w for w in ledger.witnesses if counts[w] != 1] == []
    # Each tracked record arrived once or was reported once, never both.
    refused_ids = [str(e.record.get("data_id")) for e in refused]
    rejected_ids = [data_id for data_id, _ in rejected]
    for data_id in ledger.tracked:
        outcomes = (counts[data_id], refused_ids.count(repr(data_id)), rejected_ids.count(data_id))
        assert sorted(outcomes) == [0, 0, 1], (data_id, outcomes)
    for error in refused:
        assert error.field in (*FIELDS, "record")
        assert error.reason
    MEASUREMENTS[f"bad input ({name})"] = (
        f"{s.enqueued} records: {s.sent} delivered, {len(refused)} refused before sending, "
        f"{len(rejected)} rejected by the stand-in (422) after passing the client's checks"
    )


@pytest.fixture
def slow_client() -> dict[str, Any]:
    """Settings for a client whose one held request would outlast the whole run."""
    return {
        "api_key": SECRET_KEY,
        "batch_size": 100,
        "max_in_flight": 1,  # the held request holds the only sender: everything queues
        "flush_interval": 0.05,
        "max_queue_size": 1_000_000,
        "timeout": 200.0,
        "max_retry_time": 30.0,
        "exit_timeout": 2.0,
    }


def test_handler_takes_anything(
    fake: FakeHumanloop, errors: ErrorLog, cleanup: Cleanup, slow_client: dict[str, Any]
) -> None:
    """FeedbackHandler: no logging call raises or blocks, and every record is accounted for."""
    handler = FeedbackHandler(base_url=fake.base_url, on_error=errors, **slow_client)
    logger = cleanup.attach("reliability.bad_input.handler", handler)

    def log_one(extra: dict[str, Any]) -> None:
        logger.info("feedback", extra=extra)

    first = hold_the_flush_thread(fake, log_one)
    ledger = Ledger()
    HYPOTHESIS_EXAMPLES["handler"] = run_examples(ledger, log_one)
    settle_and_check(
        name="handler",
        fake=fake,
        errors=errors,
        ledger=ledger,
        first=first,
        flush=handler.flush,
        stats=handler.stats,
    )


def test_processor_takes_anything(
    fake: FakeHumanloop, errors: ErrorLog, cleanup: Cleanup, slow_client: dict[str, Any]
) -> None:
    """FeedbackProcessor: no logging call raises or blocks, and every record is accounted for."""
    processor = FeedbackProcessor(base_url=fake.base_url, on_error=errors, **slow_client)
    cleanup.close(processor)

    def render(_logger: Any, _method: str, _event: Any) -> str:
        return ""

    structlog.configure(
        processors=[processor, render],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    log = structlog.get_logger()

    def log_one(fields: dict[str, Any]) -> None:
        log.info("feedback", **fields)

    first = hold_the_flush_thread(fake, log_one)
    ledger = Ledger()
    HYPOTHESIS_EXAMPLES["processor"] = run_examples(ledger, log_one)
    settle_and_check(
        name="processor",
        fake=fake,
        errors=errors,
        ledger=ledger,
        first=first,
        flush=processor.flush,
        stats=processor.stats,
    )


@pytest.mark.timeout(30)
@pytest.mark.parametrize("adapter", ["handler", "processor"])
def test_value_on_which_isinstance_raises_is_refused_and_counted(
    adapter: str, fake: FakeHumanloop, errors: ErrorLog, cleanup: Cleanup
) -> None:
    """A value whose ``__class__`` lookup raises is counted and reported like any other bad value."""
    settings: dict[str, Any] = {
        "api_key": SECRET_KEY,
        "base_url": fake.base_url,
        "on_error": errors,
    }
    log_one: Callable[[dict[str, Any]], None]
    if adapter == "handler":
        handler = FeedbackHandler(**settings)
        logger = cleanup.attach("reliability.bad_input.class", handler)
        adapter_stats, flush = handler.stats, handler.flush

        def log_one(extra: dict[str, Any]) -> None:
            logger.info("feedback", extra=extra)

    else:
        processor = FeedbackProcessor(**settings)
        cleanup.close(processor)
        adapter_stats, flush = processor.stats, processor.flush

        def log_one(extra: dict[str, Any]) -> None:
            processor(None, "info", dict(extra))

    log_one({"data_id": "dp-hostile", "type": "rating", "value": HostileClass()})
    log_one({"data_id": "dp-fine", "type": "rating", "value": "good"})
    assert flush(10.0)

    assert received_counts(fake) == {"dp-fine": 1}
    stats = adapter_stats()
    assert (stats.enqueued, stats.sent, stats.rejected, stats.pending) == (2, 1, 1, 0)
    assert [error.field for error in errors.refused()] == ["value"]
