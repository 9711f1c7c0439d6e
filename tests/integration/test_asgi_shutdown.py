"""examples/fastapi_app.py under the servers that end it by SIGTERM: a burst, then the signal.

uvicorn >= 0.29 (its CLI, ``uvicorn.run()``, and gunicorn's uvicorn workers) ends a graceful
shutdown by raising SIGTERM again with Python's default action, so no exit hook runs. Each server
here runs examples/fastapi_app.py (or its structlog variant) with default settings, takes 250
requests from 8 threads at once, and gets SIGTERM as soon as the last answer came, as a deploy
does. With the example's ``FeedbackMiddleware`` every record arrives exactly once; without it
(apps/fastapi_no_drain.py) the process says once, on stderr, what it will lose and how to fix it.
"""

from __future__ import annotations

import collections
import json
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import ROOT, free_port

from humanloop_logging.testing import FakeHumanloop
from integration.integration_support import (
    APPS,
    OUTCOMES,
    SHUTDOWN_BOUND,
    Outcome,
    Run,
    Running,
    assert_ended,
    assert_exactly_once,
    child_env,
    http_get,
    python,
    received_counts,
)
from integration.stack_scenarios import GUNICORN_READY, GUNICORN_WORKERS

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

EXAMPLES = ROOT / "examples"
#: Not a whole number of batches (batch_size is 100 by default): the last, partial batch is
#: still waiting to fill when the signal comes, as it is after most real bursts.
REQUESTS = 250
CONCURRENCY = 8

#: The start of the warning a process gives once when its server will lose what is queued.
WARNING = "uvicorn ends this process by raising SIGTERM again after its shutdown"


@dataclass(frozen=True)
class App:
    name: str
    module: str
    directory: Path


EXAMPLE = App("FastAPI example", "fastapi_app", EXAMPLES)
EXAMPLE_STRUCTLOG = App("FastAPI example, structlog only", "fastapi_structlog", EXAMPLES)
NO_DRAIN = App("FastAPI example without FeedbackMiddleware", "fastapi_no_drain", APPS)

SERVERS = ("uvicorn CLI", "uvicorn.run()", "gunicorn -k uvicorn_worker.UvicornWorker -w 2")


def _argv(server: str, app: App, port: int) -> list[str]:
    target = f"{app.module}:app"
    if server == "uvicorn CLI":
        return [python(), "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)]
    if server == "uvicorn.run()":
        return [python(), str(app.directory / f"{app.module}.py")]
    argv = [
        python(),
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(app.directory),
    ]
    argv += ["--workers", str(GUNICORN_WORKERS), "--config", str(APPS / "gunicorn_ready.py")]
    return [*argv, "--worker-class", "uvicorn_worker.UvicornWorker", target]


def burst_then_sigterm(server: str, app: App, fake: FakeHumanloop) -> Outcome:
    """250 ratings from 8 threads, SIGTERM right after the last answer; what arrived."""
    port = free_port()
    env = child_env(fake.base_url, settings={}, extra={"PORT": str(port)})
    env["PYTHONPATH"] = f"{EXAMPLES}:{env['PYTHONPATH']}"
    running = Running(_argv(server, app, port), env, cwd=app.directory)
    prefix = f"{app.module}-{server.split(maxsplit=1)[0]}"
    ids = [f"{prefix}-{n}" for n in range(REQUESTS)]
    base = f"http://127.0.0.1:{port}"
    try:
        if server.startswith("gunicorn"):
            running.wait_for_line(GUNICORN_READY, count=GUNICORN_WORKERS)
        running.wait_for_http(base + "/docs")

        def rate(data_id: str) -> bytes:
            status, body = http_get(f"{base}/answers/{data_id}/rating?value=good", method="POST")
            assert status == 200, (status, body[:300])
            return body

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            bodies = list(pool.map(rate, ids))
        running.send_signal(signal.SIGTERM)
        code, seconds = running.finish(timeout=60)
    finally:
        running.kill_group()
    workers = {json.loads(body)["pid"] for body in bodies}
    run = Run(ids, code, seconds, running.output(), {"workers": float(len(workers))})
    outcome = Outcome(f"{app.name}, {server}, burst then SIGTERM", "up", run, collections.Counter())
    outcome.received.update(received_counts(fake.received))
    OUTCOMES.append(outcome)
    print("STACK", json.dumps(outcome.row()))
    return outcome


def warnings_in(outcome: Outcome) -> list[str]:
    return [line for line in outcome.run.output.splitlines() if WARNING in line]


#: How each server's process ends: uvicorn's dies by the signal it raises again; gunicorn's master
#: exits 0 once its workers did.
ENDINGS = {
    "uvicorn CLI": (-signal.SIGTERM,),
    "uvicorn.run()": (-signal.SIGTERM,),
    "gunicorn -k uvicorn_worker.UvicornWorker -w 2": (0,),
}


@pytest.mark.parametrize("server", SERVERS)
def test_the_fastapi_example_delivers_a_burst_logged_just_before_sigterm(
    server: str, fake: FakeHumanloop
) -> None:
    """With the example's one line, every record of the burst arrives exactly once, in bounds,
    and no warning is given."""
    outcome = burst_then_sigterm(server, EXAMPLE, fake)
    assert_exactly_once(outcome)
    assert_ended(outcome, ENDINGS[server], SHUTDOWN_BOUND)
    assert warnings_in(outcome) == []


def test_the_structlog_example_delivers_a_burst_logged_just_before_sigterm(
    fake: FakeHumanloop,
) -> None:
    """structlog alone (FeedbackProcessor, no handler): the middleware drains its shipper too."""
    outcome = burst_then_sigterm("uvicorn CLI", EXAMPLE_STRUCTLOG, fake)
    assert_exactly_once(outcome)
    assert_ended(outcome, ENDINGS["uvicorn CLI"], SHUTDOWN_BOUND)
    assert warnings_in(outcome) == []


@pytest.mark.parametrize("server", SERVERS)
def test_without_the_middleware_each_process_warns_once_naming_the_fix(
    server: str, fake: FakeHumanloop
) -> None:
    """Without the line, a process that sends feedback says once, when it starts sending, that its
    server's SIGTERM will lose what is queued, and names the line that fixes it. Nothing is sent
    twice; what arrives depends on how much was still queued (the closing table)."""
    outcome = burst_then_sigterm(server, NO_DRAIN, fake)
    assert_ended(outcome, ENDINGS[server], SHUTDOWN_BOUND)
    assert outcome.duplicates == 0
    assert outcome.unexpected == 0
    warned = warnings_in(outcome)
    workers = int(outcome.run.measured["workers"])
    assert len(warned) == workers, outcome.run.output[-3000:]
    for line in warned:
        assert "app.add_middleware(humanloop_logging.FeedbackMiddleware)" in line
