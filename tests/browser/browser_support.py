"""What the browser tests and the screenshot script share: a real ``humanloop-logging serve`` in a
child process, headless Debian Chromium driven by Playwright, and a FeedbackHandler pointed at the
stand-in.

Imported as ``browser.browser_support``, beside ``support`` (``tests`` is on pytest's path).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from support import Serve

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
        self.child = Serve("--port", "0", *args)
        self.url = ""
        while (line := self.child.line(timeout=30.0)) != "Press Ctrl-C to stop.":
            found = _INSPECTOR.match(line)
            if found:
                self.url, self.port = found.group(1), int(found.group(2))
        assert self.url, "serve prints its inspector's URL"
        self.base_url = f"{self.url}v4"

    def stop(self, timeout: float = 10.0) -> int:
        """Ctrl-C, as a person would stop it; the exit status (killed if it does not stop)."""
        process = self.child.process
        code = process.poll()
        if code is None:
            try:
                code, _stderr = self.child.stop(signal.SIGINT, timeout)
            except subprocess.TimeoutExpired:
                code = None
        self.child.kill()
        return code if code is not None else process.returncode
