"""What the browser tests and the screenshot script share: a real ``humanloop-logging serve`` in a
child process, headless Debian Chromium driven by Playwright, and a FeedbackHandler pointed at the
stand-in.

Imported as ``browser.browser_support``, beside ``support`` (``tests`` is on pytest's path).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Optional

from support import sigint_as_a_terminal_gives_it

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright, ViewportSize

ROOT = Path(__file__).resolve().parents[2]
#: Debian's Chromium: Playwright's own browser download is not used.
CHROMIUM = "/usr/bin/chromium"
#: Headless, and quiet on the network: without the background-networking flags Chromium reaches
#: out for updates, sync and safe browsing on its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The stand-in's default key, which serve accepts when no --api-key is given.
API_KEY = "hl-test-key"
#: A laptop screen.
VIEWPORT: ViewportSize = {"width": 1366, "height": 768}

_INSPECTOR = re.compile(r"^Inspector: (http://127\.0\.0\.1:(\d+)/)$")


def missing() -> Optional[str]:
    """Why the browser cannot run here (Playwright or Chromium missing), or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install '.[browser]')"
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


def launch(playwright: Playwright) -> Browser:
    """Headless Debian Chromium."""
    executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


class ServeProcess:
    """``python -m humanloop_logging serve --port 0`` in a child process, its banner read."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ)
        env = {k: v for k, v in env.items() if not k.startswith("HUMANLOOP_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        with sigint_as_a_terminal_gives_it():  # stop() is a Ctrl-C, even under a background job
            self.process = subprocess.Popen(
                [sys.executable, "-m", "humanloop_logging", "serve", "--port", "0", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()
        self.url = ""
        while (line := self.line()) != "Press Ctrl-C to stop.":
            found = _INSPECTOR.match(line)
            if found:
                self.url, self.port = found.group(1), int(found.group(2))
        assert self.url, "serve prints its inspector's URL"
        self.base_url = f"{self.url}v4"

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def line(self, timeout: float = 30.0) -> str:
        """The next line serve prints, waiting for it."""
        return self.lines.get(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """Ctrl-C, as a person would stop it; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode
