"""Helpers shared by the tests of every directory: ports, child environments, waiting, loggers of
their own, rigs that feed the stand-in, and a hand-moved clock with a SendControl around it.

Imported as ``support`` from anywhere under tests/ (``pythonpath = tests`` in setup.cfg) and from
child interpreters started with :func:`child_env`. Only the standard library is imported here at
first: the library is imported by the helpers that use it, so that a child which needs only
:func:`wait_until` or :class:`Control` loads nothing more (and registers no exit hook) by
importing this module.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from humanloop_logging import DeliveryError, FeedbackShipper, FeedbackStats
    from humanloop_logging.testing import ErrorLog, FakeHumanloop

#: The checkout, and its tests directory (where this module lives).
ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

#: The name of the library's flush threads (docs/delivery.md).
FLUSH_THREAD = "humanloop-feedback-flush"


# -- ports -------------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on right now (it was bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def closed_port_base_url() -> str:
    """A loopback base URL on which nothing listens: every connection is refused at once (the
    backend is down)."""
    return f"http://127.0.0.1:{free_port()}/v4"


@contextlib.contextmanager
def self_signed_tls_server(directory: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 whose certificate (made in ``directory``) is self-signed, as a
    network that re-signs TLS presents it; yields its port. Skips where there is no openssl."""
    import ssl

    import pytest

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                with conn, contextlib.suppress(OSError, ssl.SSLError):
                    context.wrap_socket(conn, server_side=True).close()

    thread = threading.Thread(target=serve, name="tls-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            socket.create_connection(listener.getsockname(), timeout=1.0).close()
        thread.join(5.0)
        listener.close()


# -- child interpreters ------------------------------------------------------------------------


def child_env(*paths: Path, **extra: str) -> dict[str, str]:
    """The environment of a child interpreter: this process's, without any ``HUMANLOOP_`` setting
    of its own or pytest's current test; ``paths``, this checkout and its tests (this module)
    importable first; unbuffered output; then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUMANLOOP_")}
    env.pop("PYTEST_CURRENT_TEST", None)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [*map(str, paths), str(ROOT), str(TESTS), os.environ.get("PYTHONPATH")])
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def humanloop_env(api_key: str, base_url: str, **settings: object) -> dict[str, str]:
    """The variables that give a child's handlers ``api_key``, ``base_url`` and ``settings``."""
    env = {"HUMANLOOP_API_KEY": api_key, "HUMANLOOP_BASE_URL": base_url}
    for name, value in settings.items():
        env[f"HUMANLOOP_FEEDBACK_{name.upper()}"] = str(value)
    return env


# -- file systems ------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(directory: Path, *options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``directory`` with ``options`` (``size=512k``, ``ro``), or a skip where
    mounting is not allowed (it needs root)."""
    import pytest

    directory.mkdir()
    if not shutil.which("mount") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


# -- waiting -----------------------------------------------------------------------------------


@contextlib.contextmanager
def sigint_as_a_terminal_gives_it() -> Iterator[None]:
    """Children started within get SIGINT at its default, as a terminal user's programs do.

    A shell starts background jobs (CI runners among them) with SIGINT ignored, and an ignored
    signal stays ignored across ``exec``: a child Python would then install no KeyboardInterrupt
    handler and a Ctrl-C test could never stop it. A handled signal is reset to the default by
    ``exec``, so handling it here for the moment of the spawn is enough.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Serve:
    """A running ``python -m humanloop_logging serve`` whose stdout lines can be awaited."""

    def __init__(self, *args: str) -> None:
        env = child_env()
        with sigint_as_a_terminal_gives_it():  # Ctrl-C stops it, even under a background job
            self.process = subprocess.Popen(
                [sys.executable, "-m", "humanloop_logging", "serve", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def line(self, timeout: float = 10.0) -> str:
        """The next line of stdout, waiting for it (the child flushes after printing)."""
        return self.lines.get(timeout=timeout)

    def stop(self, signum: int, timeout: float = 5.0) -> tuple[int, str]:
        """Send ``signum`` and return the exit code and stderr once the child has exited."""
        self.process.send_signal(signum)
        self.process.wait(timeout=timeout)
        assert self.process.stderr is not None
        return self.process.returncode, self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.01) -> bool:
    """Look at ``condition`` every ``every`` seconds until it holds; False if ``timeout`` passed.

    Only for a state the library gives no event for (a counter of ``stats()`` that no flush(),
    on_error call or request marks). Whatever has an event is waited on through it: ``flush()``,
    an ``ErrorLog``, the stand-in's ``wait_for_items``/``wait_for_requests``/``wait_for_arrivals``.
    """
    end = time.monotonic() + timeout
    pause = threading.Event()  # never set: a pause between looks
    while not condition():
        if time.monotonic() > end:
            return False
        pause.wait(every)
    return True


# -- threads and counters ----------------------------------------------------------------------


def flush_threads(besides: Collection[threading.Thread] = ()) -> list[threading.Thread]:
    """The library's flush threads alive now, leaving out ``besides`` (those of earlier tests)."""
    return [t for t in threading.enumerate() if t.name == FLUSH_THREAD and t not in besides]


def assert_consistent(stats: FeedbackStats) -> None:
    """Every record handed over (or taken over from a spool) is in exactly one bucket, and no
    counter is negative."""
    buckets = (
        stats.sent,
        stats.rejected,
        stats.dropped,
        stats.failed,
        stats.filtered,
        stats.withheld,
        stats.pending,
    )
    assert stats.enqueued + stats.replayed == sum(buckets), stats
    assert min(stats.enqueued, stats.replayed, stats.spooled, *buckets) >= 0, stats


def data_ids(fake: FakeHumanloop) -> collections.Counter[str]:
    """How often the stand-in accepted each data_id."""
    return collections.Counter(item["data_id"] for item in fake.received)


# -- loggers and rigs --------------------------------------------------------------------------

_names = itertools.count()


def own_logger(name: Optional[str] = None) -> logging.Logger:
    """A logger of its own (a fresh name unless one is given), at DEBUG, that does not propagate."""
    logger = logging.getLogger(f"tests.logger.{next(_names)}" if name is None else name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def feedback(logger: logging.Logger, data_id: str, **fields: Any) -> None:
    """Log a rating of ``data_id`` (``value="good"``) through ``logger``; ``fields`` override."""
    extra: dict[str, Any] = {"data_id": data_id, "type": "rating", "value": "good"}
    extra.update(fields)
    logger.info("feedback", extra=extra)


def hand_over(shipper: FeedbackShipper, data_id: str, **fields: Any) -> None:
    """Give ``shipper`` a rating of ``data_id`` (``value="good"``; ``fields`` override) the way an
    adapter does: as a structlog event, through a FeedbackProcessor."""
    from humanloop_logging import FeedbackProcessor

    event: dict[str, Any] = {"event": "fb", "data_id": data_id, "type": "rating", "value": "good"}
    event.update(fields)
    FeedbackProcessor(shipper=shipper)(None, "info", event)


class HandlerRig:
    """A FeedbackHandler on a logger of its own, reporting to an ErrorLog (its own unless one is
    given). ``log`` passes its fields as they are, ``feedback`` makes a rating of them."""

    def __init__(
        self, api_key: str, base_url: str, *, errors: Optional[ErrorLog] = None, **settings: Any
    ) -> None:
        from humanloop_logging import FeedbackHandler
        from humanloop_logging.testing import ErrorLog

        self.errors = ErrorLog() if errors is None else errors
        self.handler = FeedbackHandler(
            api_key=api_key, base_url=base_url, on_error=self.errors, **settings
        )
        self.logger = own_logger()
        self.logger.addHandler(self.handler)

    def log(self, **extra: Any) -> None:
        self.logger.info("feedback", extra=extra)

    def feedback(self, data_id: str, **fields: Any) -> None:
        feedback(self.logger, data_id, **fields)

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()


class Rig:
    """A shipper on the stand-in, fed through a FeedbackProcessor (the thinnest adapter).

    Only a full batch or ``flush()`` sends: ``flush_interval`` is a minute unless given.
    """

    def __init__(self, fake: FakeHumanloop, **settings: Any) -> None:
        from humanloop_logging import FeedbackProcessor, FeedbackShipper
        from humanloop_logging.testing import ErrorLog

        self.fake = fake
        self.errors = ErrorLog()
        options: dict[str, Any] = {
            "api_key": fake.api_key,
            "base_url": fake.base_url,
            "flush_interval": 60.0,
            "max_retry_time": 10.0,
            "on_error": self.errors,
        }
        options.update(settings)
        self.shipper: FeedbackShipper = FeedbackShipper(**options)
        self._processor = FeedbackProcessor(shipper=self.shipper)

    def send(self, data_id: str, **fields: Any) -> None:
        """A rating of ``data_id`` (``value="good"``) as a structlog event; ``fields`` override."""
        event: dict[str, Any] = {"event": "fb", "data_id": data_id, "type": "rating"}
        event["value"] = "good"
        event.update(fields)
        self._processor(None, "info", event)

    def stats(self) -> FeedbackStats:
        """The shipper's counters, checked to be consistent."""
        stats = self.shipper.stats()
        assert_consistent(stats)
        return stats


class Rigs:
    """Builds Rigs on one stand-in, with ``defaults`` under each one's own settings; closes every
    one of them at the end of the ``with`` block."""

    def __init__(self, fake: FakeHumanloop, **defaults: Any) -> None:
        self.fake = fake
        self._defaults = defaults
        self.made: list[Rig] = []

    def __call__(self, **settings: Any) -> Rig:
        rig = Rig(self.fake, **{**self._defaults, **settings})
        self.made.append(rig)
        return rig

    def __enter__(self) -> Rigs:
        return self

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        error: Optional[BaseException],
        trace: Optional[TracebackType],
    ) -> None:
        for rig in self.made:
            rig.shipper.close(timeout=2.0)


# -- a clock and a SendControl of the test's own -----------------------------------------------


class Clock:
    """A monotonic clock that stands still until the test, or a Control's sleep, moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Control:
    """What the shipper gives a transport (a SendControl): a deadline (none unless given), and
    waits that are recorded instead of waited; with a ``clock`` (the transport's too), a wait moves
    it, so ``max_retry_time`` passes without real waiting. Each retry announced is recorded."""

    def __init__(self, *, deadline: float = math.inf, clock: Optional[Clock] = None) -> None:
        self._deadline = deadline
        self._clock = clock
        self.waits: list[float] = []
        self.retries: list[DeliveryError] = []

    def deadline(self) -> float:
        return self._deadline

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self._clock is not None:
            self._clock.advance(seconds)

    def retrying(self, error: DeliveryError, wait: float) -> None:
        self.retries.append(error)

    def give_up_early(self, error: DeliveryError, attempts: int) -> bool:
        return False
