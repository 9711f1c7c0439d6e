"""``humanloop-logging send`` stopped before the end: Ctrl-C and SIGTERM (exit 130), an outage
(exit 3, the ``--report`` lines, what the summary counts), and a spool that outlives a
``kill -9``; each time the checkpoint is at a settled line and a rerun delivers the rest."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import (
    child_env,
    closed_port_base_url,
    data_ids,
    humanloop_env,
    sigint_as_a_terminal_gives_it,
    wait_until,
)

from humanloop_logging.cli import main
from humanloop_logging.testing import FakeHumanloop

pytestmark = [pytest.mark.timeout(120)]

KEY = "hl-send-stops-secret-key"
BATCH = 50


@pytest.fixture
def fake() -> Iterator[FakeHumanloop]:
    with FakeHumanloop(api_key=KEY) as server:
        yield server


def backfill(path: Path, lines: int, every: int = 3, prefix: str = "k", mode: str = "w") -> dict[
    str, int
]:  # fmt: skip
    """Write ``lines`` JSON lines, a feedback record on every ``every``-th; {data_id: its line}."""
    start = sum(1 for _ in path.open()) if mode == "a" else 0
    records = {}
    with path.open(mode) as out:
        for n in range(lines):
            if n % every == 0:
                data_id = f"{prefix}-{n}"
                event: dict[str, Any] = {"event": "fb", "data_id": data_id, "type": "rating",
                                         "value": "good"}  # fmt: skip
                records[data_id] = start + n + 1
            else:
                event = {"event": "request", "n": n}
            out.write(json.dumps(event) + "\n")
    return records


def checkpoint(state: Path, path: Path) -> int:
    """The line the state file says is settled in ``path`` (0 when none is)."""
    if not state.exists():
        return 0
    entry = json.loads(state.read_text())["inputs"].get(str(path))
    return 0 if entry is None else int(entry["line"])


def spawn(state: Path, base_url: str, *args: str, **settings: object) -> subprocess.Popen[str]:
    env = child_env(**humanloop_env(KEY, base_url, batch_size=BATCH, **settings))
    command = [sys.executable, "-m", "humanloop_logging", "send", "--state", str(state), *args]
    with sigint_as_a_terminal_gives_it():
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )


def figure(summary: str, label: str) -> int:
    """A number of the summary: ``  sent:            1,234``."""
    for line in summary.splitlines():
        if line.startswith(f"  {label}:"):
            return int(line.split(":", 1)[1].split()[0].replace(",", ""))
    raise AssertionError(f"no {label!r} in the summary:\n{summary}")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_on_a_finite_input_exits_130_at_a_settled_checkpoint(
    tmp_path: Path, fake: FakeHumanloop, signum: signal.Signals
) -> None:
    """Ctrl-C (or SIGTERM) during a backfill: the batch in flight settles, the checkpoint is
    saved after it, the summary is printed and the exit status is 130; a rerun delivers the
    rest, with at most one batch twice."""
    path, state = tmp_path / "app.log", tmp_path / "state.json"
    records = backfill(path, 12_000)
    fake.set_latency(0.05)
    child = spawn(state, fake.base_url, str(path))
    assert fake.wait_for_arrivals(5, timeout=60)
    child.send_signal(signum)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    arrived = data_ids(fake)
    settled = checkpoint(state, path)
    print(f"\n{signum.name}: {len(records)} records, checkpoint at line {settled:,}, "
          f"{len(arrived)} arrived before the stop")  # fmt: skip
    assert 0 < settled < max(records.values())
    before = {data_id for data_id, line in records.items() if line <= settled}
    assert before <= set(arrived)  # every line before the checkpoint is delivered
    assert len(set(arrived) - before) <= BATCH  # past it, at most the batch that did not settle
    assert figure(out, "sent") == sum(arrived.values())
    assert "lines read in" in out
    fake.set_latency(0)
    rerun = spawn(state, fake.base_url, str(path))
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    arrived = data_ids(fake)
    twice = sum(arrived.values()) - len(arrived)
    print(f"after the rerun: {len(arrived)} arrived, {twice} twice (batch {BATCH})")
    assert set(arrived) == set(records)
    assert twice <= BATCH
    assert f"resumed after line {settled:,}" in out


def test_undeliverable_lines_are_reported_and_a_rerun_delivers_them(
    tmp_path: Path, fake: FakeHumanloop, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """A service answering 503 past max_retry_time: --report names each line of the batch given
    up on (input, line, reason), exit 3, the checkpoint stays before it, and a rerun once the
    service is back delivers it and the rest, each once."""
    monkeypatch.setenv("HUMANLOOP_FEEDBACK_MAX_RETRY_TIME", "0")
    monkeypatch.setenv("HUMANLOOP_FEEDBACK_BATCH_SIZE", str(BATCH))
    path, state, report = tmp_path / "app.log", tmp_path / "state.json", tmp_path / "report.jsonl"
    first = backfill(path, 3 * BATCH, prefix="a")
    args = ["send", "--api-key", KEY, "--base-url", fake.base_url, "--state", str(state)]
    assert main([*args, "--quiet", str(path)]) == 0
    settled = checkpoint(state, path)
    assert settled == 3 * BATCH
    later = backfill(path, 3 * 70, prefix="b", mode="a")
    fake.fail_next(1000, 503)
    assert main([*args, "--report", str(report), str(path)]) == 3
    out = capsys.readouterr().out
    assert checkpoint(state, path) == settled
    entries = [json.loads(text) for text in report.read_text().splitlines()]
    given_up = sorted(later.items(), key=lambda item: item[1])[:BATCH]
    assert [(e["input"], e["line"], e["status"], e["data_id"]) for e in entries] == [
        (str(path), line, "undeliverable", data_id) for data_id, line in given_up
    ]
    assert all("503" in e["reason"] for e in entries), entries[0]
    assert KEY not in report.read_text() + out
    assert figure(out, "undeliverable") == BATCH
    assert data_ids(fake) == Counter(dict.fromkeys(first, 1))
    fake.clear()  # the service is back (clear() also forgets what it received)
    assert main([*args, "--report", str(report), str(path)]) == 0
    assert report.read_text() == ""
    assert data_ids(fake) == Counter(dict.fromkeys(later, 1))


def test_the_summary_counts_only_the_records_handed_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """The service is down: the first batch is given up on while the next is already read; the
    summary counts the batch handed over, not the one read ahead, and --report lists its lines."""
    monkeypatch.setenv("HUMANLOOP_FEEDBACK_MAX_RETRY_TIME", "0")
    monkeypatch.setenv("HUMANLOOP_FEEDBACK_BATCH_SIZE", str(BATCH))
    path, report = tmp_path / "app.log", tmp_path / "report.jsonl"
    records = backfill(path, 600, every=2)
    status = main(["send", "--api-key", KEY, "--base-url", closed_port_base_url(), "--state",
                   str(tmp_path / "state.json"), "--report", str(report), str(path)])  # fmt: skip
    assert status == 3
    out = capsys.readouterr().out
    assert f"; {BATCH} feedback records" in out.splitlines()[0]
    assert figure(out, "sent") == 0
    assert figure(out, "undeliverable") == BATCH
    lines = [json.loads(text)["line"] for text in report.read_text().splitlines()]
    assert lines == sorted(records.values())[:BATCH]
    assert not (tmp_path / "state.json").exists() or checkpoint(tmp_path / "state.json", path) == 0


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "humanloop_logging", *command],
        capture_output=True, text=True, env=env, timeout=90, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_with_a_spool_a_record_is_settled_on_disk_and_drain_delivers_it(
    tmp_path: Path, fake: FakeHumanloop
) -> None:
    """With HUMANLOOP_FEEDBACK_SPOOL_PATH set and the service down, send settles each record once
    it is in the spool, up to 40 batches ahead of the service: then it stops (exit 3), the
    checkpoint after the last spooled line and the summary saying how many wait there. ``spool
    drain`` delivers those, and a rerun of send the rest; each record arrives once."""
    path, state, spool = tmp_path / "app.log", tmp_path / "state.json", tmp_path / "fb.db"
    records = backfill(path, 50 * BATCH, every=1)
    ahead = 41 * BATCH  # the batch that went past 40 is settled too, then the run stops
    settings = {"spool_path": spool, "batch_size": BATCH, "max_retry_time": 0}
    down = child_env(**humanloop_env(KEY, closed_port_base_url(), **settings))
    done = run(["send", "--state", str(state), str(path)], down)
    assert done.returncode == 3, done.stderr
    assert "waiting in the spool" in done.stderr
    assert checkpoint(state, path) == ahead
    assert figure(done.stdout, "in the spool") == ahead
    assert figure(done.stdout, "sent") == 0
    up = child_env(**humanloop_env(KEY, fake.base_url, **settings))
    drained = run(["spool", "drain", str(spool)], up)
    assert drained.returncode == 0, drained.stderr
    first = sorted(records, key=records.__getitem__)[:ahead]
    assert data_ids(fake) == Counter(dict.fromkeys(first, 1))
    again = run(["send", "--state", str(state), str(path)], up)
    assert again.returncode == 0, again.stderr
    assert "in the spool" not in again.stdout
    assert figure(again.stdout, "sent") == len(records) - ahead
    assert data_ids(fake) == Counter(dict.fromkeys(records, 1))


@pytest.mark.slow
def test_kill_9_with_a_spool_leaves_a_consistent_checkpoint(
    tmp_path: Path, fake: FakeHumanloop
) -> None:
    """SIGKILL while send spools ahead of a slow service: every line before the checkpoint is in
    the spool or delivered (``spool drain`` delivers it), and a rerun of send delivers the rest;
    at most the batch being settled and the request in flight arrive twice."""
    path, state, spool = tmp_path / "app.log", tmp_path / "state.json", tmp_path / "fb.db"
    records = backfill(path, 30_000)
    fake.set_latency(0.02)
    child = spawn(state, fake.base_url, "-q", str(path), spool_path=spool)
    assert fake.wait_for_arrivals(5, timeout=60)
    assert wait_until(lambda: checkpoint(state, path) >= 3_000, timeout=60)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    settled = checkpoint(state, path)
    before_kill = len(data_ids(fake))
    fake.set_latency(0)
    env = child_env(**humanloop_env(KEY, fake.base_url, batch_size=BATCH))
    drained = run(["spool", "drain", str(spool)], env)
    assert drained.returncode == 0, drained.stderr
    arrived = data_ids(fake)
    before = {data_id for data_id, line in records.items() if line <= settled}
    assert before <= set(arrived)  # the checkpoint is consistent: settled means delivered now
    assert len(set(arrived) - before) <= BATCH  # in the spool past it: the batch being settled
    rerun = spawn(state, fake.base_url, "-q", str(path), spool_path=spool)
    _, err = rerun.communicate(timeout=90)
    assert rerun.returncode == 0, err
    arrived = data_ids(fake)
    twice = sum(count - 1 for count in arrived.values())
    print(f"\nkill -9 with a spool: {len(records)} records, checkpoint at line {settled:,}, "
          f"{before_kill} arrived before the kill, {len(arrived)} in the end, {twice} twice "
          f"(batch {BATCH})")  # fmt: skip
    assert set(arrived) == set(records)
    assert twice <= 2 * BATCH
