"""Every file in examples/ run for real, the way its docstring and the docs say, against the stand-in.

``TABLE`` says how each example is run and driven: a server gets requests and then the signal a
deploy or a Ctrl-C sends, a Celery worker gets tasks and then a warm shutdown, a script runs to its
end. The children keep what they log queued until their shutdown (a flush interval longer than
any run, a batch larger than any run's records), so what arrives was sent by the shutdown path;
each run must deliver exactly the records it logged, with their values, and end with its stack's
usual exit status. A file in examples/ without an entry in ``TABLE`` (or a row in the table of
docs/examples.md) fails here: an example nobody runs is an example that rots.
"""

from __future__ import annotations

import collections
import json
import signal
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import support
from support import ROOT, free_port, humanloop_env

from humanloop_logging.testing import FakeHumanloop
from integration.integration_support import (
    API_KEY,
    APPS,
    OUTCOMES,
    QUEUED_UNTIL_SHUTDOWN,
    Outcome,
    Run,
    Running,
    http_post,
    python,
)
from integration.stack_scenarios import GUNICORN_READY, GUNICORN_WORKERS

EXAMPLES = ROOT / "examples"

#: Requests, tasks or CSV rows per run.
N = 24

#: A feedback item as the tests compare it: (data_id, type, value).
Item = tuple[str, str, Any]


@dataclass
class Played:
    """What a run logged (as the stand-in should receive it) and how its process ended."""

    expected: collections.Counter[Item]
    exit_code: int
    seconds: float
    output: str
    #: Lines the process must have printed (a script's summary).
    said: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Example:
    """One way of running one example file."""

    file: str
    #: How it is run and stopped (the test's id).
    how: str
    play: Callable[[FakeHumanloop, Path], Played]
    #: The exit statuses that are this stack's usual end of that shutdown.
    exit_codes: tuple[int, ...] = (0,)


def env(fake: FakeHumanloop, **extra: str) -> dict[str, str]:
    """A child's environment: the stand-in's URL and key, records queued until shutdown."""
    settings = humanloop_env(API_KEY, fake.base_url, exit_timeout=3.0, **QUEUED_UNTIL_SHUTDOWN)
    return support.child_env(EXAMPLES, **settings, **extra)


def ids(prefix: str, count: int = N) -> list[str]:
    return [f"{prefix}-{n}" for n in range(count)]


def value(n: int) -> str:
    """Alternating ratings, so that a value lost or swapped on the way shows."""
    return "good" if n % 2 else "bad"


# -- servers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    """A request to an example's server and the feedback item it logs."""

    path: str
    form: Mapping[str, str]
    item: Item


def listening(port: int) -> bool:
    """Whether something accepts connections on the loopback port (the examples serve no GET)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def server(
    argv: Callable[[int], list[str]],
    posts: Callable[[], list[Post]],
    *,
    stop: signal.Signals = signal.SIGTERM,
    group: bool = False,
    workers: int = 0,
) -> Callable[[FakeHumanloop, Path], Played]:
    """Start the server (``argv`` of a free port; ``PORT`` is set too), send every request (4 at a
    time, each answered 200 after its log call), then ``stop`` it (to its process group with
    ``group``, as Ctrl-C in a terminal does).

    With ``workers``, first wait until that many gunicorn workers said they are ready.
    """

    def play(fake: FakeHumanloop, _tmp: Path) -> Played:
        port = free_port()
        running = Running(argv(port), env(fake, PORT=str(port)), cwd=EXAMPLES)
        todo = posts()
        try:
            if workers:
                running.wait_for_line(GUNICORN_READY, count=workers)
            running.poll(
                lambda: listening(port), 60, lambda: f"nothing listens on {port}", "before serving"
            )

            def send(post: Post) -> None:
                status, body = http_post(f"http://127.0.0.1:{port}{post.path}", post.form)
                assert status == 200, (post.path, status, body[:500])

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(send, todo))
            running.send_signal(stop, group=group)
            code, seconds = running.finish(timeout=60)
        finally:
            running.kill_group()
        expected = collections.Counter(post.item for post in todo)
        return Played(expected, code, seconds, running.output())

    return play


def gunicorn(target: str, *options: str) -> Callable[[int], list[str]]:
    """gunicorn as the examples say, each worker saying when it is ready (a worker that gets
    SIGTERM before it installed its own handler is lost to that race in gunicorn)."""

    def argv(port: int) -> list[str]:
        argv = [python(), "-m", "gunicorn", "--bind", f"127.0.0.1:{port}"]
        argv += ["--workers", str(GUNICORN_WORKERS), "--config", str(APPS / "gunicorn_ready.py")]
        return [*argv, *options, target]

    return argv


def ratings(path: str, name: str, prefix: str, *, query: bool = False) -> Callable[[], list[Post]]:
    """A rating of each of N datapoints, the value alternating, in the form field ``name`` (or
    the query string)."""

    def posts() -> list[Post]:
        made = []
        for n, data_id in enumerate(ids(prefix)):
            url, form = path.format(data_id=data_id), {name: value(n)}
            if query:
                url, form = f"{url}?{name}={value(n)}", {}
            made.append(Post(url, form, (data_id, "rating", value(n))))
        return made

    return posts


def ratings_and_copies() -> list[Post]:
    """Ratings and copies of the same datapoints, interleaved (fastapi_structlog.py): the events
    name no data_id, so each that arrives with the right one got it from its own request."""
    posts = []
    for n, data_id in enumerate(ids("structlog", N // 2)):
        rating = (data_id, "rating", value(n))
        posts.append(Post(f"/answers/{data_id}/rating?value={value(n)}", {}, rating))
        posts.append(Post(f"/answers/{data_id}/copied", {}, (data_id, "action", "copy")))
    return posts


# -- a Celery worker -------------------------------------------------------------------------------


def celery_prefork(fake: FakeHumanloop, tmp: Path) -> Played:
    """A prefork worker of 2 children; N tasks queued by the example's own ``__main__``, each
    logged by a child; then the warm shutdown a SIGTERM starts."""
    child_env = env(fake, CELERY_BROKER_FOLDER=str(tmp / "broker"))
    argv = [python(), "-m", "celery", "-A", "celery_tasks", "worker", "--loglevel", "INFO"]
    argv += ["--concurrency", "2", "-n", "examples@%h"]
    # Cluster chatter a single worker has no use for; each would delay its start.
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    worker = Running(argv, child_env, cwd=EXAMPLES)
    tasks = ids("celery")
    try:
        worker.wait_for_line(" ready.")
        producer = subprocess.run(
            [python(), "celery_tasks.py", *tasks],
            env=child_env,
            cwd=str(EXAMPLES),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert producer.returncode == 0, producer.stdout + producer.stderr
        assert f"queued {N} task(s)" in producer.stdout
        worker.wait_for_line("] succeeded in ", count=N)  # Celery's own line after each task
        worker.send_signal(signal.SIGTERM)
        code, seconds = worker.finish(timeout=60)
    finally:
        worker.kill_group()
    expected = collections.Counter((data_id, "rating", "good") for data_id in tasks)
    return Played(expected, code, seconds, worker.output())


# -- scripts ---------------------------------------------------------------------------------------


def run_script(argv: Sequence[str], fake: FakeHumanloop) -> tuple[int, float, str]:
    """Run a script to its end; its exit status, run time and output."""
    proc = Running(argv, env(fake), cwd=EXAMPLES)
    try:
        code, seconds = proc.finish(timeout=90, since=proc.started)
    finally:
        proc.kill_group()
    return code, seconds, proc.output()


def script_csv(fake: FakeHumanloop, tmp: Path) -> Played:
    """N rows of a CSV export (ratings, actions, a user on some), then the script's summary."""
    rows: list[dict[str, str]] = []
    for n, data_id in enumerate(ids("script")):
        kind, said = ("action", "copy") if n % 3 == 0 else ("rating", value(n))
        user = f"user-{n}" if n % 2 else ""  # an empty cell: no user
        rows.append({"data_id": data_id, "type": kind, "value": said, "user": user})
    path = tmp / "ratings.csv"
    lines = ["data_id,type,value,user", *(",".join(row.values()) for row in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, seconds, output = run_script([python(), "script.py", str(path)], fake)
    users = {item["data_id"]: item.get("user") for item in fake.received}
    assert users == {row["data_id"]: row["user"] or None for row in rows}, output
    expected = collections.Counter((row["data_id"], row["type"], row["value"]) for row in rows)
    summary = f"{N} rows: {N} sent, 0 refused or rejected, 0 not delivered"
    return Played(expected, code, seconds, output, [summary])


def quickstart(fake: FakeHumanloop, _tmp: Path) -> Played:
    """The quickstart runs a stand-in of its own and says what that received; none comes here."""
    code, seconds, output = run_script([python(), "quickstart.py"], fake)
    said = ["sent 420, retried", "the stand-in received 420 feedback items"]
    refused = "on_error: feedback for data_id='data_{}_0' refused: value must be a string"
    said += [refused.format(worker) for worker in range(4)]
    return Played(collections.Counter(), code, seconds, output, said)


def serverless(fake: FakeHumanloop, _tmp: Path) -> Played:
    """Three invocations of the Lambda-style handler: each one's feedback has arrived by the time
    it returns, though the settings here keep records queued until shutdown (``flush_after``)."""
    code, seconds, output = run_script([python(), "serverless_handler.py"], fake)
    expected = collections.Counter(
        [
            ("data_lambda_1", "rating", "good"),
            ("data_lambda_1", "action", "copy"),
            ("data_lambda_2", "rating", "bad"),
            ("data_lambda_3", "rating", "good"),
            ("data_lambda_3", "action", "copy"),
        ]
    )
    said = [
        f"invocation {number}: status 200, {sent} feedback record(s) sent in all when it returned"
        for number, sent in ((1, 2), (2, 3), (3, 5))
    ]
    return Played(expected, code, seconds, output, said)


def loguru_script(fake: FakeHumanloop, _tmp: Path) -> Played:
    """Three answers rated and copied through a bound logger, one correction by keyword
    arguments; what is still queued is sent by the exit."""
    code, seconds, output = run_script([python(), "loguru_app.py"], fake)
    expected = collections.Counter(
        [
            *((data_id, "rating", rating) for data_id, rating in ANSWERS.items()),
            *((data_id, "action", "copy") for data_id in ANSWERS),
            ("data_2", "correction", "Canberra, not Sydney."),
        ]
    )
    return Played(expected, code, seconds, output)


def stdlib_quickstart(fake: FakeHumanloop, _tmp: Path) -> Played:
    """The README's quickstart as a program: its three records, sent by the exit."""
    code, seconds, output = run_script([python(), "stdlib_quickstart.py"], fake)
    expected = collections.Counter(
        [
            ("data_abc", "rating", "good"),
            ("data_abc", "rating", None),
            ("data_abc", "issue", ("hallucination",)),
        ]
    )
    return Played(expected, code, seconds, output)


def dictconfig_script(fake: FakeHumanloop, _tmp: Path) -> Played:
    """dictConfig twice: the record the closed first handler queued and the second handler's both
    arrive, each with the entry's ``default_user``, sent by the exit."""
    code, seconds, output = run_script([python(), "dictconfig.py"], fake)
    assert {item.get("user") for item in fake.received} == {"web-app"}, output
    expected = collections.Counter([("data_abc", "rating", "good"), ("data_abc", "action", "copy")])
    return Played(expected, code, seconds, output)


def stand_in_script(fake: FakeHumanloop, _tmp: Path) -> Played:
    """The stand-in from Python: the first batch meets a 503, the retry is accepted; the script
    prints what its own stand-in received (none comes here)."""
    code, seconds, output = run_script([python(), "stand_in.py"], fake)
    said = [
        "[{'type': 'rating', 'value': 'good', 'data_id': 'data_abc', 'created_at': ",
        "[503, 200]",
    ]
    return Played(collections.Counter(), code, seconds, output, said)


def stand_in_pytest(fake: FakeHumanloop, _tmp: Path) -> Played:
    """An app's own tests with the ``fake_humanloop`` fixture the installed package registers."""
    argv = [python(), "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_with_the_stand_in.py"]
    code, seconds, output = run_script(argv, fake)
    return Played(collections.Counter(), code, seconds, output, ["2 passed"])


#: The answers examples/loguru_app.py rates.
ANSWERS = {"data_1": "good", "data_2": "bad", "data_3": "good"}


# -- the table -------------------------------------------------------------------------------------

#: How each file in examples/ is run. Every file needs at least one entry (see the test below).
TABLE: list[Example] = [
    Example("quickstart.py", "python quickstart.py", quickstart),
    Example("stdlib_quickstart.py", "python stdlib_quickstart.py", stdlib_quickstart),
    Example("dictconfig.py", "python dictconfig.py", dictconfig_script),
    Example("script.py", "python script.py ratings.csv", script_csv),
    Example(
        "fastapi_app.py",
        "uvicorn CLI, SIGTERM",
        server(
            lambda port: [python(), "-m", "uvicorn", "fastapi_app:app", "--port", str(port)],
            ratings("/answers/{data_id}/rating", "value", "fastapi", query=True),
        ),
        (-signal.SIGTERM,),  # uvicorn raises it again once it has shut down
    ),
    Example(
        "fastapi_structlog.py",
        "uvicorn.run(), SIGTERM",
        server(lambda _port: [python(), "fastapi_structlog.py"], ratings_and_copies),
        (-signal.SIGTERM,),
    ),
    Example(
        "django_app.py",
        "gunicorn -w 2, SIGTERM",
        server(
            gunicorn("django_app:application"),
            ratings("/feedback/{data_id}", "rating", "django-gunicorn"),
            workers=GUNICORN_WORKERS,
        ),
    ),
    Example(
        "django_app.py",
        "runserver with its autoreloader, Ctrl-C",
        server(
            lambda port: [python(), "django_app.py", "runserver", f"127.0.0.1:{port}"],
            ratings("/feedback/{data_id}", "rating", "django-runserver"),
            stop=signal.SIGINT,
            group=True,
        ),
    ),
    Example(
        "flask_app.py",
        "gunicorn -w 2 --preload, SIGTERM",
        server(
            gunicorn("flask_app:app", "--preload"),
            ratings("/answers/{data_id}/rating", "value", "flask-gunicorn"),
            workers=GUNICORN_WORKERS,
        ),
    ),
    Example(
        "flask_app.py",
        "flask run, Ctrl-C",
        server(
            lambda port: [
                python(),
                "-m",
                "flask",
                "--app",
                "flask_app",
                "run",
                "--port",
                str(port),
            ],
            ratings("/answers/{data_id}/rating", "value", "flask-run"),
            stop=signal.SIGINT,
            group=True,
        ),
    ),
    Example("celery_tasks.py", "celery worker, prefork -c 2, warm shutdown", celery_prefork),
    Example("serverless_handler.py", "python serverless_handler.py", serverless),
    Example("loguru_app.py", "python loguru_app.py", loguru_script),
    Example("stand_in.py", "python stand_in.py", stand_in_script),
    Example(
        "test_with_the_stand_in.py", "python -m pytest test_with_the_stand_in.py", stand_in_pytest
    ),
]


def hashable(value: Any) -> Any:
    """A list value (``["hallucination"]``) as a tuple, to be counted."""
    return tuple(value) if isinstance(value, list) else value


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.py"))


@pytest.mark.parametrize("path", example_files(), ids=lambda path: path.name)
def test_every_example_is_run_here_and_listed_in_the_docs(path: Path) -> None:
    """Each file in examples/ has an entry in TABLE and a row in the table of docs/examples.md."""
    assert path.name in {example.file for example in TABLE}, (
        f"examples/{path.name} is run by no test: add an Example for it to TABLE in {__file__}"
    )
    page = (ROOT / "docs" / "examples.md").read_text(encoding="utf-8")
    table = page[: page.index("\n## ")]  # the table, before each file's own section
    anchor = path.name.replace(".", "")
    assert f"\n| [`{path.name}`](#{anchor}) |" in table, (
        f"examples/{path.name} has no row in the table of docs/examples.md"
    )


def test_every_table_entry_names_an_existing_example() -> None:
    """TABLE names no file that is not in examples/ (a renamed or removed example)."""
    assert {example.file for example in TABLE} <= {path.name for path in example_files()}


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("example", TABLE, ids=lambda example: f"{example.file}: {example.how}")
def test_the_example_delivers_exactly_what_it_logged_and_ends_cleanly(
    example: Example, fake: FakeHumanloop
) -> None:
    """Run as documented, the example's records all arrive, exactly once and with their values,
    and its process ends with its stack's usual status and no traceback."""
    with tempfile.TemporaryDirectory(prefix="hl-example-") as tmp:
        played = example.play(fake, Path(tmp))
    received = collections.Counter(
        (item["data_id"], item["type"], hashable(item.get("value"))) for item in fake.received
    )
    # The session's summary table counts records by a key of their own: an example may send
    # several about one data_id.
    keys = [" ".join(map(str, item)) for item in played.expected.elements()]
    run = Run(keys, played.exit_code, played.seconds, played.output)
    counts = collections.Counter(" ".join(map(str, item)) for item in received.elements())
    OUTCOMES.append(Outcome(f"{example.file}: {example.how}", "up", run, counts))
    print("STACK", json.dumps(OUTCOMES[-1].row()))

    tail = "\n".join(played.output.splitlines()[-80:])
    assert received == played.expected, tail
    assert played.exit_code in example.exit_codes, tail
    assert "Traceback" not in played.output, tail
    for line in played.said:
        assert line in played.output, tail
