"""SIGTERM: with ``exit_on_sigterm()`` a plain process delivers its queue before it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

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
    threading.Event().wait()  # a server's main loop, until a signal ends it
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
