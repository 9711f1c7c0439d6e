"""Every stack scenario as a function of the backend's URL, shared by the tests and the table.

A scenario starts the real process, has it log a known set of feedback records, triggers the real
shutdown and returns a ``Run``: which records it logged, how the process ended and how long the
shutdown took. What the backend received is counted by the caller, which owns the stand-in.
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from support import closed_port_base_url, free_port

from humanloop_logging.testing import FakeHumanloop
from integration.integration_support import (
    APPS,
    OUTCOMES,
    QUEUED_UNTIL_SHUTDOWN,
    SHUTDOWN_BOUND,
    Outcome,
    Run,
    Running,
    assert_ended,
    child_env,
    get_all,
    python,
    received_counts,
)

#: Records per scenario (requests, tasks or log calls).
N = 100

#: Killed by SIGTERM (uvicorn >= 0.29 re-raises it after its shutdown), or the library turned it
#: into SystemExit(128 + SIGTERM).
SIGTERM_ENDINGS = (-signal.SIGTERM, 128 + signal.SIGTERM)

#: Seconds a stand-in answer takes in the dictConfig scenario: a dictConfig() that waited for a
#: send would take at least this long.
DICTCONFIG_LATENCY = 1.0

#: The drain budget of the dictConfig scenario: room for the exit drain at that latency.
DICTCONFIG_EXIT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[str, Optional[FakeHumanloop]], Run]
    #: Exit statuses that count as the process's normal reaction to its shutdown.
    exit_codes: tuple[int, ...]
    #: Seconds the shutdown may take: the drain budget plus the stack's own tear-down.
    shutdown_bound: float = SHUTDOWN_BOUND


def _ids(prefix: str, count: int = N) -> list[str]:
    return [f"{prefix}-{n}" for n in range(count)]


def _serve_and_sigterm(
    argv: Sequence[str],
    env: dict[str, str],
    port: int,
    prefix: str,
    *,
    cwd: Path = APPS,
    ready: int = 0,
) -> Run:
    """Start a server, GET /feedback/<id> N times (each answered after its log call), SIGTERM it.

    With ``ready``, first wait until that many gunicorn workers said they are ready.
    """
    server = Running(argv, env, cwd=cwd)
    try:
        base = f"http://127.0.0.1:{port}"
        if ready:
            server.wait_for_line(GUNICORN_READY, count=ready)
        server.wait_for_http(base + "/health")
        ids = _ids(prefix)
        bodies = get_all(base, [f"/feedback/{data_id}" for data_id in ids])
        server.send_signal(signal.SIGTERM)
        code, seconds = server.finish(timeout=60)
    finally:
        server.kill_group()
    # Each answer ends with the pid of the process that logged it: how many workers took part.
    workers = {body.split()[-1] for body in bodies if body.split()}
    return Run(ids, code, seconds, server.output(), {"workers": float(len(workers))})


# -- uvicorn ---------------------------------------------------------------------------------------


def _with_spool(env: dict[str, str]) -> Path:
    """Give a child a spool file of its own; returns its path."""
    path = Path(tempfile.mkdtemp(prefix="hl-spool-")) / "feedback.db"
    env["HUMANLOOP_FEEDBACK_SPOOL_PATH"] = str(path)
    return path


def _drain_after(run: Run, env: dict[str, str], spool: Path) -> Run:
    """What a process killed by its signal left in its spool, sent by ``spool drain``."""
    drained = subprocess.run(
        [python(), "-m", "humanloop_logging", "spool", "drain", str(spool)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = "\n".join([run.output, drained.stdout, drained.stderr])
    measured = {**run.measured, "drain_exit": float(drained.returncode)}
    return Run(run.expected, run.exit_code, run.shutdown_seconds, output, measured)


def uvicorn_cli(
    lifespan_close: bool, spool: bool = False
) -> Callable[[str, Optional[FakeHumanloop]], Run]:
    def run(base_url: str, fake: Optional[FakeHumanloop]) -> Run:
        port = free_port()
        env = child_env(base_url, extra={"HL_LIFESPAN_CLOSE": "1" if lifespan_close else "0"})
        # With the backend down there is nothing a drain could send: it would retry until stopped.
        path = _with_spool(env) if spool and fake is not None else None
        argv = [python(), "-m", "uvicorn", "asgi_app:app", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--app-dir", str(APPS), "--lifespan", "on"]
        ended = _serve_and_sigterm(argv, env, port, "uvicorn-cli")
        return ended if path is None else _drain_after(ended, env, path)

    return run


def uvicorn_script(
    exit_on_sigterm: bool, spool: bool = False
) -> Callable[[str, Optional[FakeHumanloop]], Run]:
    def run(base_url: str, fake: Optional[FakeHumanloop]) -> Run:
        port = free_port()
        env = child_env(base_url)
        path = _with_spool(env) if spool and fake is not None else None
        argv = [python(), str(APPS / "uvicorn_script.py"), "--port", str(port)]
        if exit_on_sigterm:
            argv.append("--exit-on-sigterm")
        ended = _serve_and_sigterm(argv, env, port, "uvicorn-run")
        return ended if path is None else _drain_after(ended, env, path)

    return run


# -- gunicorn and Django ---------------------------------------------------------------------------


GUNICORN_WORKERS = 2
#: The line each gunicorn worker prints once it handles SIGTERM itself (apps/gunicorn_ready.py).
GUNICORN_READY = "gunicorn worker ready"


def _gunicorn_argv(port: int) -> list[str]:
    argv = [python(), "-m", "gunicorn", "--bind", f"127.0.0.1:{port}"]
    argv += ["--workers", str(GUNICORN_WORKERS), "--chdir", str(APPS)]
    return [*argv, "--config", str(APPS / "gunicorn_ready.py")]


def gunicorn(worker: str, preload: bool) -> Callable[[str, Optional[FakeHumanloop]], Run]:
    def run(base_url: str, _fake: Optional[FakeHumanloop]) -> Run:
        port = free_port()
        env = child_env(base_url)
        argv = [*_gunicorn_argv(port), "--worker-class", worker]
        if worker == "gthread":
            argv += ["--threads", "4"]
        if preload:
            argv.append("--preload")
        argv.append("wsgi_app:application")
        return _serve_and_sigterm(argv, env, port, f"gunicorn-{worker}", ready=GUNICORN_WORKERS)

    return run


def django_gunicorn(base_url: str, _fake: Optional[FakeHumanloop]) -> Run:
    port = free_port()
    env = child_env(base_url, extra={"DJANGO_SETTINGS_MODULE": "hl_django.settings"})
    argv = [*_gunicorn_argv(port), "hl_django.wsgi:application"]
    return _serve_and_sigterm(argv, env, port, "django", ready=GUNICORN_WORKERS)


# -- Celery ----------------------------------------------------------------------------------------


def celery_prefork(base_url: str, _fake: Optional[FakeHumanloop]) -> Run:
    """100 tasks on a prefork pool of 2 whose children are replaced every 10 tasks; warm shutdown."""
    with tempfile.TemporaryDirectory(prefix="hl-celery-") as tmp:
        done_file = Path(tmp) / "done.txt"
        env = child_env(
            base_url,
            extra={"HL_CELERY_DIR": str(Path(tmp) / "broker"), "HL_DONE_FILE": str(done_file)},
        )
        argv = [python(), "-m", "celery", "-A", "celery_app", "worker", "--pool", "prefork"]
        argv += ["--concurrency", "2", "--max-tasks-per-child", "10", "--loglevel", "INFO"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-n", "hl@%h"]
        worker = Running(argv, env)
        try:
            worker.wait_for_line(" ready.", timeout=60)
            ids = _ids("celery")
            producer = subprocess.run(
                [python(), str(APPS / "celery_app.py"), "celery", str(N)],
                env=env,
                cwd=str(APPS),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert producer.returncode == 0, producer.stdout + producer.stderr
            started = time.monotonic()
            _wait_for_lines(done_file, N, worker, timeout=90)
            # Children replaced every 10 tasks end (and drain) while the tasks run.
            tasks = {"tasks_s": time.monotonic() - started}
            worker.send_signal(signal.SIGTERM)  # warm shutdown
            code, seconds = worker.finish(timeout=60)
        finally:
            worker.kill_group()
        return Run(ids, code, seconds, worker.output(), tasks)


def _wait_for_lines(path: Path, count: int, proc: Running, timeout: float) -> None:
    """Until ``path`` has ``count`` lines; fails early if ``proc`` dies or ``timeout`` runs out."""

    def lines() -> int:
        return len(path.read_text().splitlines()) if path.exists() else 0

    ran = f"before {count} tasks ran"
    proc.poll(lambda: lines() >= count, timeout, lambda: f"{lines()}/{count} tasks ran", ran)


# -- scripts that end normally ---------------------------------------------------------------------


def _script(
    argv: Sequence[str], env: dict[str, str], last_line: str, timeout: float = 90
) -> Running:
    """Run a script to its end; the shutdown is timed from its ``last_line`` to its exit."""
    proc = Running(argv, env)
    try:
        proc.wait_for_line(last_line, timeout=timeout)
    except AssertionError:
        proc.kill_group()
        raise
    return proc


def multiprocessing_run(method: str, kind: str) -> Callable[[str, Optional[FakeHumanloop]], Run]:
    def run(base_url: str, _fake: Optional[FakeHumanloop]) -> Run:
        prefix = f"mp-{method}-{kind}"
        env = child_env(base_url)
        argv = [python(), str(APPS / "mp_feedback.py"), method, kind, prefix, str(N)]
        started = time.monotonic()
        proc = _script(argv, env, "CHILDREN-DONE")
        since = time.monotonic()
        code, seconds = proc.finish(timeout=60, since=since)
        # The children end (and drain) before CHILDREN-DONE: their part of the cost shows here.
        children = {"children_s": since - started}
        return Run(_ids(prefix), code, seconds, proc.output(), children)

    return run


def dictconfig_later(base_url: str, fake: Optional[FakeHumanloop]) -> Run:
    """N records, a dictConfig() naming only another logger, N more; a slow backend."""
    if fake is not None:
        fake.set_latency(DICTCONFIG_LATENCY)
    env = child_env(base_url, {**QUEUED_UNTIL_SHUTDOWN, "exit_timeout": DICTCONFIG_EXIT_TIMEOUT})
    argv = [python(), str(APPS / "dictconfig_script.py"), "dictconfig", str(N)]
    proc = _script(argv, env, "LOGGED")
    since = time.monotonic()
    code, seconds = proc.finish(timeout=60, since=since)
    took = [line.split()[1] for line in proc.lines if line.startswith("DICTCONFIG ")]
    measured = {"dictconfig_s": float(took[0])} if took else {}
    return Run(_ids("dictconfig", 2 * N), code, seconds, proc.output(), measured)


def structlog_formatter(mode: str) -> Callable[[str, Optional[FakeHumanloop]], Run]:
    def run(base_url: str, _fake: Optional[FakeHumanloop]) -> Run:
        prefix = f"structlog-{mode}"
        env = child_env(base_url)
        argv = [python(), str(APPS / "structlog_script.py"), mode, prefix, str(N)]
        proc = _script(argv, env, "LOGGED")
        since = time.monotonic()
        code, seconds = proc.finish(timeout=60, since=since)
        return Run(_ids(prefix), code, seconds, proc.output())

    return run


# -- the registry ----------------------------------------------------------------------------------

START_METHODS = ("fork", "forkserver", "spawn")
MP_KINDS = ("process", "pool", "pool-maxtasks", "executor")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("uvicorn CLI, SIGTERM", uvicorn_cli(lifespan_close=False), SIGTERM_ENDINGS),
        Scenario(
            "uvicorn CLI, SIGTERM, spool, then spool drain",
            uvicorn_cli(lifespan_close=False, spool=True),
            SIGTERM_ENDINGS,
        ),
        Scenario(
            "uvicorn CLI, SIGTERM, close() in lifespan",
            uvicorn_cli(lifespan_close=True),
            SIGTERM_ENDINGS,
        ),
        Scenario("uvicorn.run(), SIGTERM", uvicorn_script(exit_on_sigterm=False), SIGTERM_ENDINGS),
        Scenario(
            "uvicorn.run(), SIGTERM, spool, then spool drain",
            uvicorn_script(exit_on_sigterm=False, spool=True),
            SIGTERM_ENDINGS,
        ),
        Scenario(
            "exit_on_sigterm() + uvicorn.run(), SIGTERM",
            uvicorn_script(exit_on_sigterm=True),
            (128 + signal.SIGTERM,),
        ),
        *(
            Scenario(
                f"gunicorn {worker}{' --preload' if preload else ''}, SIGTERM",
                gunicorn(worker, preload),
                (0,),
            )
            for worker in ("sync", "gthread")
            for preload in (False, True)
        ),
        Scenario("Django LOGGING under gunicorn, SIGTERM", django_gunicorn, (0,)),
        Scenario("Celery prefork --max-tasks-per-child 10, warm shutdown", celery_prefork, (0,)),
        *(
            Scenario(f"multiprocessing {kind}, {method}", multiprocessing_run(method, kind), (0,))
            for method in START_METHODS
            for kind in MP_KINDS
        ),
        Scenario(
            "dictConfig() of another logger, 100 + 100",
            dictconfig_later,
            (0,),
            shutdown_bound=DICTCONFIG_EXIT_TIMEOUT + 10,
        ),
        Scenario(
            "structlog ProcessorFormatter, handler on root",
            structlog_formatter("handler"),
            (0,),
        ),
        Scenario(
            "structlog ProcessorFormatter, processor + handler",
            structlog_formatter("processor+handler"),
            (0,),
        ),
    ]
}


def play(name: str, fake: Optional[FakeHumanloop]) -> Outcome:
    """Run scenario ``name`` against ``fake`` (backend up) or a closed port (``None``: down).

    The outcome is kept for the session's summary table before anything is asserted on it.
    """
    scenario = SCENARIOS[name]
    if fake is None:
        run = scenario.run(closed_port_base_url(), None)
        outcome = Outcome(name, "down", run, collections.Counter())
    else:
        run = scenario.run(fake.base_url, fake)
        outcome = Outcome(name, "up", run, received_counts(fake.received))
    OUTCOMES.append(outcome)
    print("STACK", json.dumps(outcome.row()))  # shown per test by pytest -rA
    return outcome


def assert_shut_down_as_usual(outcome: Outcome) -> None:
    """The process ended the way its stack ends on that shutdown, within the scenario's bound."""
    __tracebackhide__ = True
    scenario = SCENARIOS[outcome.scenario]
    assert_ended(outcome, scenario.exit_codes, scenario.shutdown_bound)
