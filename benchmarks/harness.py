"""Processes of the suite: versions of the library under test, the sink, workers, the SDK's venv.

Every measurement that involves the library runs in a worker process (``benchmarks.worker``) whose
``PYTHONPATH`` starts with the directory holding the version under test: the working tree, or a
revision extracted with ``git archive`` into a temporary directory. Workers run with the scratch
directory as their working directory, so that ``python -m`` cannot pick up the checkout by
accident, and every answer names the file the library was imported from, which is checked.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Optional

__all__ = [
    "API_KEY",
    "REPO",
    "RunFailed",
    "Sink",
    "Version",
    "Worker",
    "baseline_version",
    "current_version",
    "refused_url",
    "run_worker",
    "sdk_python",
]

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"


class RunFailed(Exception):
    """A measurement did not complete, or did not deliver what it should have."""


@dataclass(frozen=True)
class Version:
    """A version of ``humanloop_logging``: ``path`` is the directory that holds the package."""

    key: str  # "current" or "baseline"
    label: str  # what tables call it: "working tree", or the revision's short hash
    path: Path


def current_version() -> Version:
    return Version("current", "working tree", REPO)


def baseline_version(revision: str, scratch: Path) -> Version:
    """``humanloop_logging/`` at ``revision``, extracted with ``git archive`` under ``scratch``.

    Neither the index nor the working tree is touched.
    """
    short = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", f"{revision}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", short, "humanloop_logging"],
        check=True,
        capture_output=True,
    ).stdout
    target = scratch / f"baseline-{short}"
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not (member.isfile() or member.isdir()):
                raise RunFailed(f"unexpected entry in the archive of {short}: {member.name}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter="data")
        else:  # Pythons before the extraction filters; our own repository's archive, checked above
            tar.extractall(target)
    return Version("baseline", short, target)


def worker_env(version: Optional[Version]) -> dict[str, str]:
    """The environment of a worker: the version first on the path, no HUMANLOOP_* settings (so
    that defaults are the defaults), and no proxy for the loopback sink."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUMANLOOP_")}
    paths = ([str(version.path)] if version else []) + [str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_library(answer: Mapping[str, Any], version: Optional[Version]) -> None:
    """The worker imported the version it was meant to."""
    if version is None:
        return
    expected = str(version.path / "humanloop_logging")
    if not str(answer.get("library", "")).startswith(expected):
        raise RunFailed(
            f"the worker imported humanloop_logging from {answer.get('library')!r}, "
            f"not from {expected}"
        )


def _parse_result(line: str) -> Optional[dict[str, Any]]:
    if line.startswith("RESULT "):
        value = json.loads(line[len("RESULT ") :])
        if isinstance(value, dict):
            return value
    return None


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


class Worker:
    """A worker process; ``answers()`` yields its ``RESULT`` lines as they come."""

    def __init__(
        self,
        kind: str,
        args: Mapping[str, Any],
        version: Optional[Version],
        scratch: Path,
        *,
        python: str = sys.executable,
        interactive: bool = False,
    ) -> None:
        self.kind = kind
        self.version = version
        self._stderr_path = Path(tempfile.mkstemp(prefix=f"{kind}-", suffix=".err", dir=scratch)[1])
        self._stderr: IO[bytes] = open(self._stderr_path, "wb")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            [python, "-m", "benchmarks.worker", kind, json.dumps(args)],
            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=str(scratch),
            env=worker_env(version),
            text=True,
        )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def next_answer(self) -> dict[str, Any]:
        """The next ``RESULT`` line, checked for the library it came from."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            answer = _parse_result(line)
            if answer is not None:
                if "library" in answer:
                    check_library(answer, self.version)
                return answer
        self.process.wait(30)
        raise RunFailed(
            f"worker {self.kind} ended (exit status {self.process.returncode}) without an "
            f"answer; its stderr ends with:\n{_tail(self._stderr_path)}"
        )

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.next_answer()

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RunFailed(f"worker {self.kind} still running after {timeout:.0f} s") from None
        finally:
            self._stderr.close()

    def stderr_text(self) -> str:
        return _tail(self._stderr_path, 20_000)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._stderr.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.stdin is not None and self.process.poll() is None:
            with suppress(OSError):
                self.process.stdin.close()
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(30)
        self.kill()
        self._stderr_path.unlink(missing_ok=True)


def run_worker(
    kind: str,
    args: Mapping[str, Any],
    version: Optional[Version],
    scratch: Path,
    *,
    python: str = sys.executable,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """Run a one-shot worker to its end and return its (last) answer."""
    with Worker(kind, args, version, scratch, python=python) as worker:
        answer = worker.next_answer()
        status = worker.wait(timeout)
        if status != 0:
            raise RunFailed(
                f"worker {kind} exited with status {status}:\n{_tail(worker._stderr_path)}"
            )
        return answer


class Sink:
    """The lean sink (``benchmarks.sink``) in its own process, controlled over HTTP."""

    def __init__(self, scratch: Path, delay: float = 0.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sink", "--port", "0", "--delay", str(delay)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=str(scratch),
            env=worker_env(None),
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on " not in line:
            self.close()
            raise RunFailed(f"the sink did not start: {line!r}")
        self.root = line.rsplit(" ", 1)[-1].strip()
        self.base_url = self.root + "/v4"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, body: Optional[Mapping[str, Any]] = None) -> Any:
        data = json.dumps(body or {}).encode() if method == "POST" else None
        request = urllib.request.Request(self.root + path, data=data, method=method)
        with self._opener.open(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._call("GET", "/stats")
        return stats

    def reset(self) -> None:
        self._call("POST", "/reset")

    def configure(self, *, delay: Optional[float] = None, status: Optional[int] = None) -> None:
        config: dict[str, Any] = {}
        if delay is not None:
            config["delay"] = delay
        if status is not None:
            config["status"] = status
        self._call("POST", "/config", config)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def refused_url() -> Iterator[str]:
    """A base URL on a loopback port that is bound but never listens: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v4"


def default_sdk_venv(version: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "humanloop-logging-bench" / f"humanloop-sdk-{version}"


def sdk_python(venv: Path, version: str) -> tuple[Optional[str], dict[str, Any]]:
    """The Python of a virtualenv with the official SDK ``humanloop==version``, made if needed.

    Returns ``(python, facts)``, or ``(None, facts)`` with ``facts["error"]`` when it cannot be
    had (no index reachable, say). ``facts`` names the SDK's pins and what they installed.
    """
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    probe = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({'humanloop': m.version('humanloop'), 'urllib3': m.version('urllib3'), "
        "'requires': m.requires('humanloop'), 'python': sys.version.split()[0]}))"
    )

    def facts() -> Optional[dict[str, Any]]:
        if not python.exists():
            return None
        done = subprocess.run(
            [str(python), "-c", probe], check=False, capture_output=True, text=True
        )
        if done.returncode != 0:
            return None
        found: dict[str, Any] = json.loads(done.stdout)
        return found if found.get("humanloop") == version else None

    found = facts()
    if found is None:
        print(f"  making a virtualenv for the Humanloop SDK {version} at {venv} ...", flush=True)
        pin = f"humanloop=={version}"
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", pin],
        ]
        for step in steps:
            done = subprocess.run(step, check=False, capture_output=True, text=True)
            if done.returncode != 0:
                return None, {"error": f"{' '.join(step)} failed: {done.stderr.strip()[-600:]}"}
        found = facts()
        if found is None:
            return None, {"error": f"humanloop=={version} did not install into {venv}"}
    found["venv"] = str(venv)
    return str(python), found
