"""flush_after: what an invocation logged has arrived when it returns, in each form, within one
bound, and a bound that passes is said once and never raised.

Every shipper here sends only when flushed (``flush_interval`` of an hour, batches larger than
any test logs), so a record at the stand-in when the call returns was sent by flush_after.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Callable, Union

import pytest
from support import HandlerRig, Rig, data_ids

from humanloop_logging import (
    ConfigurationError,
    FeedbackHandler,
    FeedbackProcessor,
    FeedbackShipper,
    flush_after,
)
from humanloop_logging.testing import FakeHumanloop

pytestmark = pytest.mark.timeout(60)

#: Settings under which only a flush sends.
HELD: dict[str, Any] = {"flush_interval": 3600.0, "batch_size": 1000}


class Rigs:
    """Handlers on the stand-in that send only when flushed; closed at the end."""

    def __init__(self, fake: FakeHumanloop) -> None:
        self.fake = fake
        self.made: list[HandlerRig] = []

    def __call__(self) -> HandlerRig:
        rig = HandlerRig(self.fake.api_key, self.fake.base_url, **HELD)
        self.made.append(rig)
        return rig

    def close(self) -> None:
        self.fake.clear()  # release anything a test left held, so the closes deliver it
        for rig in self.made:
            rig.close()


@pytest.fixture
def rigs(fake_humanloop: FakeHumanloop) -> Iterator[Rigs]:
    made = Rigs(fake_humanloop)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """flush_after's own warnings so far."""
    caplog.set_level(logging.WARNING, logger="humanloop_logging")

    def said() -> list[str]:
        return [
            record.getMessage()
            for record in caplog.records
            if record.name == "humanloop_logging" and record.getMessage().startswith("flush_after")
        ]

    return said


def rate(rig: HandlerRig, prefix: str, count: int) -> None:
    for n in range(count):
        rig.feedback(f"{prefix}-{n}")


def arrived(fake: FakeHumanloop, prefix: str) -> int:
    return sum(1 for item in fake.received if item["data_id"].startswith(prefix))


# -- the forms -----------------------------------------------------------------------------------


def test_a_bare_decorator_sends_what_the_call_logged_before_it_returns(
    fake_humanloop: FakeHumanloop, rigs: Rigs
) -> None:
    """@flush_after: the records have arrived when the call returns, and so has its value."""
    rig = rigs()

    @flush_after
    def invocation(count: int) -> dict[str, int]:
        rate(rig, "bare", count)
        return {"statusCode": 200}

    assert invocation(3) == {"statusCode": 200}
    assert arrived(fake_humanloop, "bare") == 3


@pytest.mark.parametrize("given", [False, True], ids=["every-shipper", "given-handler"])
def test_the_decorator_with_arguments_sends_before_returning(
    fake_humanloop: FakeHumanloop, rigs: Rigs, given: bool
) -> None:
    """@flush_after(timeout=...) and @flush_after(handler, timeout=...) alike."""
    rig = rigs()
    decorate = flush_after(rig.handler, timeout=30) if given else flush_after(timeout=30)

    @decorate
    def invocation() -> str:
        rate(rig, "args", 4)
        return "done"

    assert invocation() == "done"
    assert arrived(fake_humanloop, "args") == 4


@pytest.mark.parametrize("form", ["bare", "arguments"])
def test_an_async_function_stays_async_and_sends_before_returning(
    fake_humanloop: FakeHumanloop, rigs: Rigs, form: str
) -> None:
    """The wrapper of an async function is itself a coroutine function; awaited, it returns the
    function's value with the records arrived."""
    rig = rigs()

    async def invocation(count: int) -> int:
        await asyncio.sleep(0)
        rate(rig, "async", count)
        return count

    wrapped = flush_after(invocation) if form == "bare" else flush_after(timeout=30)(invocation)
    assert inspect.iscoroutinefunction(wrapped)
    assert asyncio.run(wrapped(5)) == 5
    assert arrived(fake_humanloop, "async") == 5


def test_the_event_loop_runs_while_the_flush_waits(
    fake_humanloop: FakeHumanloop, rigs: Rigs
) -> None:
    """The async flush waits off the loop: while the stand-in holds its request, another task on
    the same loop runs and lets it go; were the loop blocked, the flush would end at its bound
    with nothing sent."""
    rig = rigs()
    fake_humanloop.hang_next(1)

    @flush_after(timeout=30)
    async def invocation() -> None:
        rate(rig, "loop", 3)

    async def release_the_hold() -> None:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, fake_humanloop.wait_for_arrivals, 1, 30.0)
        fake_humanloop.clear()  # the held request is dropped; the shipper sends it again

    async def main() -> None:
        await asyncio.gather(invocation(), release_the_hold())

    asyncio.run(main())
    assert arrived(fake_humanloop, "loop") == 3


def test_without_an_asyncio_loop_the_async_wrapper_flushes_on_its_own_thread(
    fake_humanloop: FakeHumanloop, rigs: Rigs
) -> None:
    """Driven by hand, as another event loop (trio) drives a coroutine: the flush runs where
    the coroutine runs, and the value comes back."""
    rig = rigs()

    @flush_after(timeout=30)
    async def invocation() -> str:
        rate(rig, "no-loop", 2)
        return "done"

    coroutine = invocation()
    with pytest.raises(StopIteration) as finished:
        coroutine.send(None)
    assert finished.value.value == "done"
    assert arrived(fake_humanloop, "no-loop") == 2


def test_with_the_loops_executor_shut_down_the_flush_still_happens(
    fake_humanloop: FakeHumanloop, rigs: Rigs
) -> None:
    """A loop whose default executor is shut down already (a handler awaited late in a shutdown):
    the flush runs on the loop's thread rather than fail."""
    rig = rigs()

    @flush_after(timeout=30)
    async def invocation() -> str:
        rate(rig, "shut", 2)
        return "done"

    async def main() -> str:
        await asyncio.get_running_loop().shutdown_default_executor()
        return await invocation()

    assert asyncio.run(main()) == "done"
    assert arrived(fake_humanloop, "shut") == 2


def test_the_context_manager_sends_at_the_end_of_the_block(
    fake_humanloop: FakeHumanloop, rigs: Rigs
) -> None:
    """with flush_after(timeout=...): the block's records have arrived once it is left."""
    rig = rigs()
    with flush_after(timeout=30):
        rate(rig, "with", 2)
    assert arrived(fake_humanloop, "with") == 2


def test_the_async_context_manager_sends_at_the_end_of_the_block(
    fake_humanloop: FakeHumanloop, rigs: Rigs
) -> None:
    """async with flush_after(...): the same, awaited."""
    rig = rigs()

    async def main() -> None:
        async with flush_after(rig.handler, timeout=30):
            rate(rig, "async-with", 2)

    asyncio.run(main())
    assert arrived(fake_humanloop, "async-with") == 2


class Failed(Exception):
    """The function's own error."""


def test_a_function_that_raises_still_sends_and_its_error_propagates(
    fake_humanloop: FakeHumanloop, rigs: Rigs
) -> None:
    """Sync, async and a block: the records are sent, and the caller gets the very error."""
    rig = rigs()
    error = Failed("the handler failed")

    @flush_after
    def sync() -> None:
        rate(rig, "raise-sync", 1)
        raise error

    @flush_after(timeout=30)
    async def coroutine() -> None:
        rate(rig, "raise-async", 1)
        raise error

    with pytest.raises(Failed) as sync_raised:
        sync()
    assert arrived(fake_humanloop, "raise-sync") == 1
    with pytest.raises(Failed) as async_raised:
        asyncio.run(coroutine())
    assert arrived(fake_humanloop, "raise-async") == 1

    def block() -> None:
        with flush_after(timeout=30):
            rate(rig, "raise-with", 1)
            raise error

    with pytest.raises(Failed) as block_raised:
        block()
    assert arrived(fake_humanloop, "raise-with") == 1
    assert sync_raised.value is async_raised.value is block_raised.value is error


# -- which shippers ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["handler", "processor", "shipper"])
def test_only_the_shippers_given_are_flushed(
    fake_humanloop: FakeHumanloop, rigs: Rigs, kind: str
) -> None:
    """Given a handler, a processor or a shipper, flush_after flushes that one, not the rest."""
    mine, other = rigs(), rigs()
    processor = FeedbackProcessor(shipper=mine.handler.shipper)
    targets: dict[str, Union[FeedbackHandler, FeedbackProcessor, FeedbackShipper]] = {
        "handler": mine.handler,
        "processor": processor,
        "shipper": mine.handler.shipper,
    }
    target = targets[kind]

    @flush_after(target, timeout=30)
    def invocation() -> None:
        rate(mine, "mine", 2)
        rate(other, "other", 2)

    invocation()
    assert arrived(fake_humanloop, "mine") == 2
    assert arrived(fake_humanloop, "other") == 0
    assert other.handler.flush(30)
    assert arrived(fake_humanloop, "other") == 2


def test_by_default_every_shipper_of_the_process_is_flushed(fake_humanloop: FakeHumanloop) -> None:
    """Two shippers nobody passed to flush_after, a handler's and a structlog processor's: both
    are sent."""
    rig = HandlerRig(fake_humanloop.api_key, fake_humanloop.base_url, **HELD)
    processor = FeedbackProcessor(fake_humanloop.api_key, fake_humanloop.base_url, **HELD)
    try:

        @flush_after
        def invocation() -> None:
            rig.feedback("from-handler")
            processor(None, "info", {"data_id": "from-processor", "type": "action", "value": "x"})

        invocation()
        assert data_ids(fake_humanloop) == {"from-handler": 1, "from-processor": 1}
    finally:
        rig.close()
        processor.close()


def test_a_shipper_made_during_the_invocation_is_flushed(fake_humanloop: FakeHumanloop) -> None:
    """The shippers are looked up when the function returns: one built inside the call (a lazy
    set-up on the first, cold-start invocation) is flushed too."""
    made: list[FeedbackShipper] = []

    @flush_after(timeout=30)
    def invocation() -> None:
        rig = Rig(fake_humanloop, **HELD)
        made.append(rig.shipper)
        rig.send("cold-start")

    try:
        invocation()
        assert data_ids(fake_humanloop) == {"cold-start": 1}
    finally:
        for shipper in made:
            shipper.close()


# -- the bound -----------------------------------------------------------------------------------


def test_when_the_bound_passes_the_call_returns_and_one_warning_says_how_many_wait(
    fake_humanloop: FakeHumanloop, rigs: Rigs, warnings: Callable[[], list[str]]
) -> None:
    """The stand-in holds both shippers' requests: each invocation returns its value when the
    bound passes, with one warning naming every record that waits (a handler given with its own
    shipper counted once) and what to do; the records are kept and delivered once it answers."""
    first, second = rigs(), rigs()
    fake_humanloop.hang_next(4)  # a request per shipper and invocation (a flush may add a thread)

    @flush_after(first.handler, first.handler.shipper, second.handler, timeout=0.2)
    def invocation(prefix: str) -> str:
        rate(first, f"{prefix}-first", 2)
        rate(second, f"{prefix}-second", 3)
        return prefix

    assert invocation("held-1") == "held-1"
    assert fake_humanloop.received == []
    said = warnings()
    assert len(said) == 1
    assert said[0].startswith("flush_after: 5 feedback record(s) still wait to be sent")
    assert "timeout of 0.2s" in said[0]
    assert "flush_after(timeout=...)" in said[0]
    assert "blocking=True" in said[0]

    assert invocation("held-2") == "held-2"  # held as well: said again, once
    assert fake_humanloop.received == []
    said = warnings()
    assert len(said) == 2
    assert said[1].startswith("flush_after: 10 feedback record(s) still wait")

    fake_humanloop.clear()  # the service answers again: the dropped requests are sent again
    assert first.handler.flush(30)
    assert second.handler.flush(30)
    assert arrived(fake_humanloop, "held-") == 10
    assert set(data_ids(fake_humanloop).values()) == {1}


def test_a_slow_answer_within_the_bound_is_waited_for(
    fake_humanloop: FakeHumanloop, rigs: Rigs, warnings: Callable[[], list[str]]
) -> None:
    """A service slowed well within the bound: the call waits for it, and says nothing."""
    rig = rigs()
    fake_humanloop.set_latency(0.2)

    @flush_after(timeout=30)
    def invocation() -> None:
        rate(rig, "slow", 3)

    invocation()
    assert arrived(fake_humanloop, "slow") == 3
    assert warnings() == []


class Unfinished:
    """Anything with flush(timeout): one that never finishes, each wait taking all it is given."""

    def __init__(self, name: str, calls: list[tuple[str, float]]) -> None:
        self.name = name
        self.calls = calls

    def flush(self, timeout: float) -> bool:
        self.calls.append((self.name, timeout))
        end = time.monotonic() + timeout
        pause = threading.Event()  # never set: a wait for the time given
        while (left := end - time.monotonic()) > 0:
            pause.wait(left)
        return False


def test_the_timeout_bounds_the_whole_flush_not_each_shipper(
    warnings: Callable[[], list[str]],
) -> None:
    """Each target is asked first without waiting (so all send side by side), then waited for
    within what is left of one deadline: the first uses it all up, the second gets none."""
    calls: list[tuple[str, float]] = []

    @flush_after(Unfinished("a", calls), Unfinished("b", calls), timeout=0.3)
    def invocation() -> int:
        return 7

    assert invocation() == 7
    assert [name for name, _ in calls] == ["a", "b", "a", "b"]
    assert calls[0][1] == calls[1][1] == 0.0
    assert 0.0 < calls[2][1] <= 0.3
    assert calls[3][1] == 0.0
    said = warnings()
    assert len(said) == 1
    assert "feedback still waits (in 2 object(s) that do not count theirs)" in said[0]


class Broken:
    def flush(self, timeout: float) -> bool:
        raise RuntimeError("broken flush")


def test_a_flush_that_raises_never_reaches_the_caller(
    warnings: Callable[[], list[str]],
) -> None:
    """A target whose flush raises: the function returns its value, and the target is said to
    be unsent."""

    @flush_after(Broken(), timeout=1)
    def invocation() -> str:
        return "ok"

    assert invocation() == "ok"
    assert len(warnings()) == 1


# -- the wrapper and its arguments -----------------------------------------------------------------


def test_the_wrapper_keeps_the_functions_signature_and_metadata() -> None:
    """functools.wraps: name, docstring, module, __wrapped__ and signature, sync and async."""

    def handler(event: dict[str, Any], context: object = None) -> int:
        """The entry point."""
        return 0

    async def ahandler(event: dict[str, Any], *, context: object = None) -> int:
        """The async entry point."""
        return 0

    pairs: list[tuple[Callable[..., Any], Callable[..., Any]]] = [
        (handler, flush_after(handler)),
        (handler, flush_after(timeout=1)(handler)),
        (ahandler, flush_after(ahandler)),
    ]
    for function, wrapped in pairs:
        assert wrapped is not function
        assert wrapped.__wrapped__ is function  # type: ignore[attr-defined]
        for name in ("__name__", "__qualname__", "__doc__", "__module__"):
            assert getattr(wrapped, name) == getattr(function, name)
        assert inspect.signature(wrapped) == inspect.signature(function)
        assert inspect.iscoroutinefunction(wrapped) is inspect.iscoroutinefunction(function)


def test_a_method_is_wrapped_and_bound_as_usual(fake_humanloop: FakeHumanloop, rigs: Rigs) -> None:
    """A decorated method receives its instance."""
    rig = rigs()

    class Service:
        def __init__(self) -> None:
            self.name = "svc"

        @flush_after(timeout=30)
        def handle(self, count: int) -> str:
            rate(rig, self.name, count)
            return self.name

    assert Service().handle(2) == "svc"
    assert arrived(fake_humanloop, "svc") == 2


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda: flush_after(2), "flush_after(timeout=2)"),  # type: ignore[call-overload]
        (lambda: flush_after(timeout=-1), "finite number of seconds >= 0, not -1"),
        (lambda: flush_after(timeout=float("nan")), "not nan"),
        (lambda: flush_after(timeout="2"), "not '2'"),  # type: ignore[call-overload]
        (lambda: flush_after(timeout=True), "not True"),
        (lambda: flush_after(object(), timeout=1), "flush(timeout)"),  # type: ignore[call-overload]
    ],
)
def test_bad_arguments_are_refused_with_what_to_write(
    call: Callable[[], object], says: str
) -> None:
    """A ConfigurationError (a ValueError) that says what to write instead."""
    with pytest.raises(ConfigurationError) as raised:
        call()
    assert says in str(raised.value)


def test_a_generator_function_or_a_non_function_is_refused() -> None:
    """A generator's body runs after the call returns: wrapping it would flush too early."""

    def generator() -> Iterator[int]:
        yield 1

    async def agenerator() -> AsyncIterator[int]:
        yield 1

    for function in (generator, agenerator):
        with pytest.raises(TypeError, match=r"use `with flush_after\(\.\.\.\):` inside it"):
            flush_after(function)
    with pytest.raises(TypeError, match="decorates a function, not int"):
        flush_after(timeout=1)(5)  # type: ignore[type-var]


def test_a_partial_of_a_coroutine_function_is_wrapped_as_async(
    fake_humanloop: FakeHumanloop, rigs: Rigs
) -> None:
    """functools.partial of an async function is still awaited, then flushed."""
    rig = rigs()

    async def invocation(prefix: str, count: int) -> int:
        rate(rig, prefix, count)
        return count

    wrapped = flush_after(functools.partial(invocation, "partial"))
    assert inspect.iscoroutinefunction(wrapped)
    assert asyncio.run(wrapped(2)) == 2
    assert arrived(fake_humanloop, "partial") == 2


def test_a_handler_and_processor_are_accepted_as_targets_of_the_context_manager(
    fake_humanloop: FakeHumanloop,
) -> None:
    """flush_after(handler, processor) with separate shippers: both are sent at the block's end."""
    handler = FeedbackHandler(fake_humanloop.api_key, fake_humanloop.base_url, **HELD)
    processor = FeedbackProcessor(fake_humanloop.api_key, fake_humanloop.base_url, **HELD)
    log = logging.getLogger("tests.serverless.pair")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        with flush_after(handler, processor, timeout=30):
            log.info("r", extra={"data_id": "pair-h", "type": "rating", "value": "good"})
            processor(None, "info", {"data_id": "pair-p", "type": "rating", "value": "bad"})
        assert data_ids(fake_humanloop) == {"pair-h": 1, "pair-p": 1}
    finally:
        log.removeHandler(handler)
        handler.close()
        processor.close()
