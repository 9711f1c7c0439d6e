"""A process frozen the way a serverless platform freezes it: SIGSTOP right after the handler
returns. With flush_after, everything the invocation logged has arrived by then; without it, none
of it has, and it goes only if the process is ever thawed and ends normally.

The child sends only when flushed (``flush_interval`` of an hour, batches larger than an
invocation logs), so what the stand-in holds at the freeze was sent by flush_after, not by timing.
The parent waits on the child's line and on the kernel's report that it stopped, never on a clock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import IO

import pytest
from support import ROOT, child_env, data_ids, humanloop_env

from humanloop_logging.testing import FakeHumanloop

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP (POSIX)"),
]

#: Records each invocation logs, and invocations per process (the first is the cold start).
RECORDS = 25
INVOCATIONS = 3

#: The function platform, played by a child: it reads an invocation number per line, calls the
#: handler, and says ``returned <n>`` the moment the handler has returned.
CHILD = """
import logging, sys
from humanloop_logging import FeedbackHandler, flush_after

feedback = FeedbackHandler(flush_interval=3600, batch_size=1000)  # key and URL from the env
log = logging.getLogger("app.feedback")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(feedback)
records = int(sys.argv[1])

def handler(event, context):
    for n in range(records):
        log.info("rated", extra={"data_id": f"inv{event}-{n}", "type": "rating", "value": "good"})
    return {"statusCode": 200}

if sys.argv[2] == "flush_after":
    handler = flush_after(timeout=30)(handler)

for line in sys.stdin:
    if line.strip() == "exit":
        break
    response = handler(int(line), None)
    print("returned", int(line), response["statusCode"], flush=True)
"""


@dataclass(frozen=True)
class Frozen:
    """What the stand-in held at each freeze, and after the child had exited."""

    at_freezes: list[int]
    after_exit: int


def freeze_after_each_invocation(fake: FakeHumanloop, mode: str) -> Frozen:
    env = child_env(**humanloop_env(fake.api_key, fake.base_url))
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(RECORDS), mode],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdin, stdout = _pipes(child)
    at_freezes: list[int] = []
    try:
        for number in range(1, INVOCATIONS + 1):
            stdin.write(f"{number}\n")
            stdin.flush()
            line = stdout.readline()  # the handler has just returned
            os.kill(child.pid, signal.SIGSTOP)  # ... and the platform freezes the process
            if line != f"returned {number} 200\n":
                child.kill()  # stopped or not
                pytest.fail(f"the child said {line!r}; stderr: {child.communicate()[1]}")
            _, status = os.waitpid(child.pid, os.WUNTRACED)
            assert os.WIFSTOPPED(status)
            at_freezes.append(len(fake.received))  # with the child still stopped
            os.kill(child.pid, signal.SIGCONT)
        stdin.write("exit\n")
        stdin.flush()
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            child.wait()
    return Frozen(at_freezes, len(fake.received))


def _pipes(child: subprocess.Popen[str]) -> tuple[IO[str], IO[str]]:
    assert child.stdin is not None
    assert child.stdout is not None
    return child.stdin, child.stdout


def test_with_flush_after_every_record_has_arrived_when_the_process_is_frozen(
    fake_humanloop: FakeHumanloop,
) -> None:
    """At each freeze, the cold start's included, the stand-in holds every record logged so far;
    each arrived once."""
    frozen = freeze_after_each_invocation(fake_humanloop, "flush_after")
    assert frozen.at_freezes == [RECORDS * n for n in range(1, INVOCATIONS + 1)]
    assert frozen.after_exit == RECORDS * INVOCATIONS
    assert set(data_ids(fake_humanloop).values()) == {1}


def test_without_flush_after_nothing_has_arrived_when_the_process_is_frozen(
    fake_humanloop: FakeHumanloop,
) -> None:
    """The control: the same child without flush_after has sent nothing at any freeze; its
    records go only at a normal exit, which a frozen function may never have."""
    frozen = freeze_after_each_invocation(fake_humanloop, "plain")
    assert frozen.at_freezes == [0] * INVOCATIONS
    assert frozen.after_exit == RECORDS * INVOCATIONS
    assert set(data_ids(fake_humanloop).values()) == {1}


def test_the_serverless_example_sends_each_invocations_feedback_before_it_returns(
    fake_humanloop: FakeHumanloop,
) -> None:
    """examples/serverless_handler.py, run as its docs page says: three invocations, each one's
    records sent by the time it returned (its own count of sent records), all five received."""
    example = ROOT / "examples" / "serverless_handler.py"
    done = subprocess.run(
        [sys.executable, str(example)],
        env=child_env(**humanloop_env(fake_humanloop.api_key, fake_humanloop.base_url)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "invocation 1: status 200, 2 feedback record(s) sent in all when it returned",
        "invocation 2: status 200, 3 feedback record(s) sent in all when it returned",
        "invocation 3: status 200, 5 feedback record(s) sent in all when it returned",
    ]
    assert data_ids(fake_humanloop) == {"data_lambda_1": 2, "data_lambda_2": 1, "data_lambda_3": 2}
    assert done.stderr == ""
