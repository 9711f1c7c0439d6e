"""``humanloop-logging demo``: the README's main job, run as a user runs it, in a child process;
and run in-process, where it must leave the process's logging as it found it."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import TextIO

import pytest
import structlog
from support import child_env

from humanloop_logging.demo import run_demo


def test_the_demo_delivers_every_valid_record_exactly_once() -> None:
    """With default settings, the demo's faults (503s, a 429 with Retry-After, dropped
    connections) and its close cost no valid record, and none arrives twice."""
    env = child_env()  # without HUMANLOOP_ settings: defaults are defaults
    result = subprocess.run(
        [sys.executable, "-m", "humanloop_logging", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.splitlines()[-1]
    assert summary.endswith("valid records, each exactly once"), result.stdout
    received, _, expected = summary.split(" received ")[1].split(" valid ")[0].partition(" of ")
    assert received == expected


# -- the demo run in-process: it leaves logging and structlog as it found them ------------------

#: The loggers the demo configures for its run ("" is the root logger).
TOUCHED = ("", "humanloop_logging", "chatapp.feedback")

LoggerState = tuple[list[logging.Handler], int, bool, bool]


def logging_state() -> dict[str, LoggerState]:
    """Handlers, level, propagate and disabled of each logger the demo touches."""
    loggers = {name: logging.getLogger(name) for name in TOUCHED}
    return {
        name: (list(logger.handlers), logger.level, logger.propagate, logger.disabled)
        for name, logger in loggers.items()
    }


@pytest.fixture
def global_logging() -> Iterator[None]:
    """Put logging and structlog back after the test, whatever the demo did to them."""
    saved = logging_state()
    configured, config = structlog.is_configured(), structlog.get_config()
    try:
        yield
    finally:
        for name, (handlers, level, propagate, disabled) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled
        if configured:
            structlog.configure(**config)
        else:
            structlog.reset_defaults()


def configure_like_an_app() -> None:
    """What an application that runs the demo might have set up before."""
    root = logging.getLogger()
    root.addHandler(logging.NullHandler())
    root.setLevel(logging.WARNING)
    own = logging.getLogger("humanloop_logging")
    own.addHandler(logging.NullHandler())
    own.setLevel(logging.ERROR)
    own.propagate = False
    app = logging.getLogger("chatapp.feedback")
    app.addHandler(logging.NullHandler())
    app.setLevel(logging.DEBUG)
    structlog.configure(
        processors=[structlog.processors.KeyValueRenderer()],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=True,
    )


def demo_in_process(out: TextIO) -> int:
    """A small, quick run of the demo (its faults included) against the built-in stand-in."""
    return run_demo(events=40, threads=2, duration=0.1, out=out)


@pytest.mark.parametrize("setup", ["defaults", "configured"])
@pytest.mark.usefixtures("global_logging")
def test_the_demo_leaves_logging_and_structlog_as_it_found_them(setup: str) -> None:
    """Run in someone's process (a test, a notebook), the demo gives back the handlers, levels
    and propagation of the loggers it used, and structlog's configuration, as they were."""
    if setup == "configured":
        configure_like_an_app()
    else:
        structlog.reset_defaults()
    before = logging_state()
    configured, config = structlog.is_configured(), structlog.get_config()

    out = io.StringIO()
    assert demo_in_process(out) == 0, out.getvalue()

    assert logging_state() == before
    assert structlog.is_configured() == configured
    assert structlog.get_config() == config


class Unwritable(io.StringIO):
    """An output that fails on the demo's first line, after the demo has set logging up."""

    def write(self, text: str) -> int:
        raise OSError("the terminal went away")


@pytest.mark.usefixtures("global_logging")
def test_a_demo_that_fails_still_gives_logging_and_structlog_back() -> None:
    """An error in the middle of the run (here: its output fails) restores the same state."""
    configure_like_an_app()
    before = logging_state()
    config = structlog.get_config()

    with pytest.raises(OSError, match="terminal went away"):
        demo_in_process(Unwritable())

    assert logging_state() == before
    assert structlog.get_config() == config
