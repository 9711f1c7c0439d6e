"""SIGTERM: with ``exit_on_sigterm()`` a plain process delivers its queue before it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from support import hand_over

from humanloop_logging.testing import FakeHumanloop

SCRIPT = textwrap.dedent(
    """
    import logging, os, sys, threading
    from humanloop_logging import FeedbackHandler, exit_on_sigterm
    print("installed" if {install} and exit_on_sigterm() else "default", flush=True)
    handler = FeedbackHandler(flush_interval=3600, batch_size=10_000)
    log = logging.getLogger("app")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for n in range(50):
        log.info("feedback", extra={{"data_id": f"d{{n}}", "type": "rating", "value": "good"}})
    print("logged", flush=True)
    # A server's main loop, until a signal ends it. It wakes now and then, as servers' loops do:
    # an untimed wait can miss a signal that lands just before the thread blocks (CPython only
    # sets a flag then), whoever the other threads are.
    while True:
        threading.Event().wait(0.5)
    """
)

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")


def _run(fake: FakeHumanloop, install: bool) -> int:
    env = {**os.environ, "HUMANLOOP_API_KEY": fake.api_key, "HUMANLOOP_BASE_URL": fake.base_url}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(install=install)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == ("installed" if install else "default")
    assert proc.stdout.readline().strip() == "logged"
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


@pytest.mark.timeout(60)
def test_sigterm_after_exit_on_sigterm_delivers_the_queue(fake_humanloop: FakeHumanloop) -> None:
    """exit_on_sigterm() turns SIGTERM into exit 143 with the atexit drain: all 50 arrive."""
    assert _run(fake_humanloop, install=True) == 128 + signal.SIGTERM
    assert sorted(item["data_id"] for item in fake_humanloop.received) == sorted(
        f"d{n}" for n in range(50)
    )


@pytest.mark.timeout(60)
def test_default_sigterm_kills_without_sending(fake_humanloop: FakeHumanloop) -> None:
    """Without it, Python's default SIGTERM kills the process at once: nothing is sent."""
    assert _run(fake_humanloop, install=False) == -signal.SIGTERM
    assert fake_humanloop.received == []


def test_exit_on_sigterm_leaves_an_existing_handler_alone() -> None:
    """An application's own SIGTERM handler is never replaced."""
    script = textwrap.dedent(
        """
        import signal
        from humanloop_logging import exit_on_sigterm
        mine = lambda signum, frame: None
        signal.signal(signal.SIGTERM, mine)
        print(exit_on_sigterm(), signal.getsignal(signal.SIGTERM) is mine)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def blocked_signals(native_id: int) -> int:
    """A thread's mask of blocked signals, from Linux's /proc."""
    with open(f"/proc/self/task/{native_id}/status") as status:
        return next(int(line.split()[1], 16) for line in status if line.startswith("SigBlk:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads Linux's /proc")
def test_the_librarys_threads_leave_sigterm_to_the_main_thread(
    fake_humanloop: FakeHumanloop,
) -> None:
    """The flush and watchdog threads block SIGTERM and SIGINT, so the kernel hands those to the
    main thread, the only one that runs Python's handlers (a background thread that took one
    would leave a main thread blocked in a wait unaware of it)."""
    from humanloop_logging import FeedbackShipper

    shipper = FeedbackShipper(fake_humanloop.api_key, fake_humanloop.base_url)
    try:
        hand_over(shipper, "dp-1")
        assert shipper.flush(5)
        names = {"humanloop-feedback-flush", "humanloop-feedback-watchdog"}
        ours = [t for t in threading.enumerate() if t.name in names]
        assert {t.name for t in ours} == names
        for thread in ours:
            assert thread.native_id is not None
            blocked = blocked_signals(thread.native_id)
            for number in (signal.SIGTERM, signal.SIGINT):
                assert blocked & (1 << (number - 1)), (thread.name, signal.Signals(number).name)
        main = threading.main_thread().native_id
        assert main is not None
        assert not blocked_signals(main) & (1 << (signal.SIGTERM - 1))
    finally:
        shipper.close()


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_the_librarys_threads_are_born_with_sigterm_blocked(
    fake_humanloop: FakeHumanloop,
) -> None:
    """Blocked from the first instruction a thread runs, not from a line of its own: a signal
    that reached a new thread before it masked itself was lost to a main thread blocked in a
    wait. A trace function runs in each new thread before its target does, and reads the mask
    there."""
    from humanloop_logging import FeedbackShipper

    at_birth: dict[str, set[int]] = {}

    def first_event(frame: object, event: str, arg: object) -> None:
        name = threading.current_thread().name
        if name.startswith("humanloop-feedback") and name not in at_birth:
            at_birth[name] = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        sys.settrace(None)

    threading.settrace(first_event)
    try:
        shipper = FeedbackShipper(fake_humanloop.api_key, fake_humanloop.base_url)
        try:
            hand_over(shipper, "dp-1")
            assert shipper.flush(5)
        finally:
            shipper.close()
    finally:
        threading.settrace(None)
    assert "humanloop-feedback-flush" in at_birth
    for name, blocked in at_birth.items():
        assert {signal.SIGTERM, signal.SIGINT} <= blocked, name
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
