"""``humanloop-logging send``: JSON log lines in, each feedback record delivered once, against the
stand-in; formats, dry run, report, exit codes, ``kill -9`` and resume, and ``--follow`` across
the file rotations log shippers do."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import child_env, closed_port_base_url, data_ids, humanloop_env

from humanloop_logging.cli import main
from humanloop_logging.testing import FakeHumanloop

pytestmark = [pytest.mark.timeout(90)]

KEY = "hl-send-secret-key"


@pytest.fixture
def fake() -> Iterator[FakeHumanloop]:
    with FakeHumanloop(api_key=KEY) as server:
        yield server


def fb(data_id: str, **more: Any) -> dict[str, Any]:
    return {"event": "feedback", "data_id": data_id, "type": "rating", "value": "good", **more}


def write_lines(path: Path, events: list[Any], mode: str = "w") -> None:
    with path.open(mode, encoding="utf-8") as out:
        for event in events:
            out.write((event if isinstance(event, str) else json.dumps(event)) + "\n")


def send(tmp_path: Path, fake: FakeHumanloop, *args: str) -> int:
    state = str(tmp_path / "state.json")
    return main(["send", "--api-key", KEY, "--base-url", fake.base_url, "--state", state, *args])


def test_each_preset_and_auto(tmp_path: Path, fake: FakeHumanloop) -> None:
    """structlog, python-json-logger and loguru lines are recognised, by preset and by auto; the
    line's own time becomes created_at."""
    structlog_line = fb("s-1", timestamp="2024-05-01T12:00:00Z", level="info")
    pjl_line = {**fb("p-1"), "asctime": "2024-05-01 12:00:00,250", "levelname": "INFO"}
    loguru_line = {
        "text": "feedback\n",
        "record": {
            "extra": {"data_id": "l-1", "type": "rating", "value": 4},
            "time": {"repr": "2024-05-01 12:00:00+00:00", "timestamp": 1714564800.5},
            "message": "feedback",
        },
    }
    for name, event in (
        ("structlog", structlog_line),
        ("python-json-logger", pjl_line),
        ("loguru", loguru_line),
    ):
        path = tmp_path / f"{name}.log"
        write_lines(path, [{"event": "other"}, event])
        assert send(tmp_path, fake, "--quiet", "--format", name, str(path)) == 0
    both = tmp_path / "mixed.log"
    write_lines(both, [structlog_line, pjl_line, loguru_line])
    assert send(tmp_path, fake, "--quiet", "--format", "auto", str(both)) == 0
    assert fake.wait_for_items(6)
    created = {item["data_id"]: item["created_at"] for item in fake.received}
    assert created["s-1"].startswith("2024-05-01T12:00:00")
    assert created["l-1"].startswith("2024-05-01T12:00:00.5")
    assert data_ids(fake) == Counter({"s-1": 2, "p-1": 2, "l-1": 2})


def test_a_preset_does_not_read_another_formats_lines(tmp_path: Path, fake: FakeHumanloop) -> None:
    """With --format loguru, top-level feedback keys are not loguru's and are skipped."""
    path = tmp_path / "app.log"
    write_lines(path, [fb("top-1")])
    assert send(tmp_path, fake, "--quiet", "--format", "loguru", str(path)) == 0
    assert fake.received == []


def test_nested_path_field_mapping_and_time_field(
    tmp_path: Path, fake: FakeHumanloop, capsys: pytest.CaptureFixture[str]
) -> None:
    """--path, --field and --time-field read feedback from where an app put it."""
    path = tmp_path / "app.log"
    event = {"ts": 1714564800, "ctx": {"fb": {"req": {"id": "n-1"}, "kind": "flag", "v": "x"}}}
    write_lines(path, [event, {"ctx": {"fb": {"kind": "flag"}}}, "not json at all"])
    status = send(
        tmp_path, fake, str(path), "--path", "ctx.fb", "--field", "data_id=req.id",
        "--field", "type=kind", "--field", "value=v", "--time-field", "ts",
    )  # fmt: skip
    assert status == 0
    assert fake.wait_for_items(1)
    [item] = fake.received
    assert (item["data_id"], item["type"], item["value"]) == ("n-1", "flag", "x")
    assert item["created_at"].startswith("2024-05-01T12:00:00")
    out = capsys.readouterr().out
    assert "3 lines read" in out
    assert "skipped:         2 (2 not feedback)" in out


def test_gzip_and_skipped_counts(
    tmp_path: Path, fake: FakeHumanloop, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gzip file is read through; lines that are not JSON or not feedback are counted."""
    path = tmp_path / "app.log.gz"
    with gzip.open(path, "wt", encoding="utf-8") as zipped:
        zipped.write(json.dumps(fb("g-1")) + "\n" + '{"data_id": broken\n' + '{"x": 1}\n')
        zipped.write(json.dumps({"data_id": "g-2", "event": "no type"}) + "\n")
    assert send(tmp_path, fake, str(path)) == 0
    assert data_ids(fake) == Counter({"g-1": 1})
    out = capsys.readouterr().out
    assert "skipped:         3 (1 no feedback type, 1 not JSON, 1 not feedback)" in out


def test_stdin(tmp_path: Path, fake: FakeHumanloop) -> None:
    """``-`` (the default) reads standard input, in a real process."""
    lines = "".join(json.dumps(fb(f"in-{n}")) + "\n" for n in range(5))
    env = child_env(**humanloop_env(KEY, fake.base_url))
    done = subprocess.run(
        [sys.executable, "-m", "humanloop_logging", "send", "--state", str(tmp_path / "s.json")],
        input=lines, capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert data_ids(fake) == Counter({f"in-{n}": 1 for n in range(5)})
    assert KEY not in done.stdout + done.stderr


def test_dry_run_lists_the_problems_and_with_verbose_every_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run sends nothing (the base URL is a closed port) and lints: by default the lines it
    would refuse or skip, then the summary; --verbose adds a line per record it would send."""
    path = tmp_path / "app.log"
    write_lines(
        path,
        [
            fb("ok-1", timestamp="2024-05-01T12:00:00Z"),
            {"event": "plain"},
            {"data_id": "x", "type": "rating", "value": float("inf")},
            {"data_id": "y"},
            '{"data_id": ',
            *(fb(f"ok-{n}") for n in range(2, 1000)),
        ],
    )
    args = ["send", "--dry-run", "--api-key", KEY, "--base-url", closed_port_base_url(), str(path)]
    problems = [
        f"{path}:3: refuse: value must be a finite number, got inf",
        f"{path}:4: skip: no feedback type",
        f"{path}:5: skip: not JSON",
    ]
    totals = [
        "  would send:      999",
        "  rejected (422):  0",
        "  invalid:         1",
        "  skipped:         3 (1 no feedback type, 1 not JSON, 1 not feedback)",
    ]
    assert main(args) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == problems
    assert out[3].startswith("1,003 lines read in ")
    assert out[3].endswith("; 1,000 feedback records")
    assert out[4:] == totals
    assert main([*args, "--verbose"]) == 1
    out = capsys.readouterr().out.splitlines()
    sends = [line for line in out if ": send: " in line]
    assert len(sends) == 999
    assert out[0] == (
        f"{path}:1: send: data_id='ok-1' type='rating' created_at=2024-05-01T12:00:00+00:00"
    )
    assert [line for line in out[:1002] if ": send: " not in line] == problems
    assert out[-4:] == totals
    assert main(["send", "--verbose", "--api-key", KEY, str(path)]) == 2
    assert "--verbose goes with --dry-run" in capsys.readouterr().err


def test_report_names_the_lines_of_a_422_and_an_invalid_record(
    tmp_path: Path, fake: FakeHumanloop, capsys: pytest.CaptureFixture[str]
) -> None:
    """--report lists each line not delivered with its reason and the 422's detail; exit 1."""
    fake.reject_data_ids("bad-1")
    path = tmp_path / "app.log"
    write_lines(path, [fb("ok-1"), {"event": "x"}, fb("bad-1"), fb("ok-2", value=float("nan"))])
    report = tmp_path / "report.jsonl"
    assert send(tmp_path, fake, str(path), "--report", str(report)) == 1
    assert data_ids(fake) == Counter({"ok-1": 1})
    entries = sorted(
        (json.loads(text) for text in report.read_text().splitlines()), key=lambda e: e["line"]
    )
    assert [(e["input"], e["line"], e["status"], e["data_id"]) for e in entries] == [
        (str(path), 3, "rejected", "bad-1"),
        (str(path), 4, "invalid", "ok-2"),
    ]
    assert entries[0]["detail"]
    assert all(isinstance(d, str) for d in entries[0]["detail"])
    assert entries[1]["reason"] == "value must be a finite number, got nan"
    out, err = capsys.readouterr()
    assert "rejected (422):  1" in out
    assert "invalid:         1" in out
    assert KEY not in out + err + report.read_text()


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file, a bad --field and a missing key are usage errors, each said plainly."""
    missing = str(tmp_path / "nope.log")
    assert main(["send", "--api-key", KEY, missing]) == 2
    assert main(["send", "--api-key", KEY, "--field", "colour=x", missing]) == 2
    path = tmp_path / "app.log"
    write_lines(path, [fb("a")])
    env_key = os.environ.pop("HUMANLOOP_API_KEY", None)
    try:
        assert main(["send", "--state", str(tmp_path / "s"), str(path)]) == 2
    finally:
        if env_key is not None:
            os.environ["HUMANLOOP_API_KEY"] = env_key
    err = capsys.readouterr().err
    assert "nope.log: no such file" in err
    assert "--field 'colour=x': write FIELD=KEY" in err
    assert "no api_key" in err


def test_undeliverable_exits_3_and_a_rerun_sends_it(
    tmp_path: Path, fake: FakeHumanloop, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """Given up on (service down): exit 3, the checkpoint stays, and a rerun delivers it all."""
    monkeypatch.setenv("HUMANLOOP_FEEDBACK_MAX_RETRY_TIME", "0")
    path = tmp_path / "app.log"
    write_lines(path, [fb(f"u-{n}") for n in range(3)])
    state = str(tmp_path / "state.json")
    args = ["send", "--api-key", KEY, "--state", state, str(path)]
    assert main([*args, "--base-url", closed_port_base_url()]) == 3
    assert "undeliverable:   3" in capsys.readouterr().out
    assert main([*args, "--base-url", fake.base_url]) == 0
    assert data_ids(fake) == Counter({f"u-{n}": 1 for n in range(3)})


def test_a_second_run_sends_only_what_was_appended(tmp_path: Path, fake: FakeHumanloop) -> None:
    """The checkpoint makes a rerun start after the last settled line."""
    path = tmp_path / "app.log"
    write_lines(path, [fb("a-1"), fb("a-2")])
    assert send(tmp_path, fake, "-q", str(path)) == 0
    assert send(tmp_path, fake, "-q", str(path)) == 0
    write_lines(path, [fb("a-3")], mode="a")
    assert send(tmp_path, fake, "-q", str(path)) == 0
    assert data_ids(fake) == Counter({"a-1": 1, "a-2": 1, "a-3": 1})


# -- processes ------------------------------------------------------------------------------------


def spawn(
    tmp_path: Path, fake: FakeHumanloop, *args: str, **settings: object
) -> subprocess.Popen[str]:
    env = child_env(**humanloop_env(KEY, fake.base_url, **settings))
    command = [sys.executable, "-m", "humanloop_logging", "send", "--state",
               str(tmp_path / "state.json"), *args]  # fmt: skip
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


BATCH = 50


@pytest.mark.slow
def test_kill_9_and_resume_lose_nothing_and_repeat_at_most_a_batch(
    tmp_path: Path, fake: FakeHumanloop
) -> None:
    """SIGKILL at three points of a backfill, then a full run: every record arrived, and at most
    one batch per kill arrived twice."""
    path = tmp_path / "app.log"
    lines = 30_000
    with path.open("w") as out:
        for n in range(lines):
            event = fb(f"k-{n}") if n % 3 == 0 else {"event": "request", "n": n}
            out.write(json.dumps(event) + "\n")
    records = len(range(0, lines, 3))
    fake.set_latency(0.01)
    kills = 0
    for arrivals in (5, 40, 120):
        child = spawn(tmp_path, fake, "-q", str(path), batch_size=BATCH)
        assert fake.wait_for_arrivals(arrivals, timeout=60)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        kills += 1
    fake.set_latency(0)
    child = spawn(tmp_path, fake, str(path), batch_size=BATCH)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    arrived = data_ids(fake)
    twice = sum(count - 1 for count in arrived.values())
    print(f"\nkill -9 x{kills}: {lines} lines, {records} records, {len(arrived)} arrived, "
          f"{twice} twice (batch {BATCH})")  # fmt: skip
    assert set(arrived) == {f"k-{n}" for n in range(0, lines, 3)}
    assert max(arrived.values()) <= 2
    assert twice <= kills * BATCH


@pytest.mark.slow
def test_follow_across_rotations_delivers_each_record_once(
    tmp_path: Path, fake: FakeHumanloop
) -> None:
    """Appends, rename rotation, copytruncate, truncation and a partial last line completed
    later, while ``send --follow`` runs; SIGTERM saves the checkpoint and a restart resumes."""
    path = tmp_path / "app.log"
    beacon = tmp_path / "beacon.log"
    path.touch()
    beacon.touch()
    child = spawn(tmp_path, fake, "--follow", "--poll-interval", "0.02", str(path), str(beacon))
    sent = 0

    def add(target: Path, *names: str, noise: int = 2) -> None:
        nonlocal sent
        events: list[Any] = []
        for name in names:
            events += [{"event": "noise"}] * noise + [fb(name)]
        write_lines(target, events, mode="a")
        sent += len(names)
        assert fake.wait_for_items(sent, timeout=30)

    add(path, "a-1", "a-2", "a-3")  # appends
    write_lines(path, [fb("r-1")], mode="a")  # written just before a rename rotation
    os.rename(path, tmp_path / "app.log.1")
    sent += 1
    add(path, "r-2", "r-3")
    shutil.copyfile(path, tmp_path / "app.log.2")  # copytruncate
    with path.open("r+") as out:
        out.truncate(0)
    add(path, "c-1", "c-2")
    with path.open("r+") as out:  # plain truncation
        out.truncate(0)
    add(path, "t-1")
    whole = json.dumps(fb("p-1")) + "\n"
    with path.open("a") as out:  # a partial last line ...
        out.write(whole[:15])
    add(beacon, "b-1")  # ... seen by two full polls ...
    add(beacon, "b-2")
    with path.open("a") as out:  # ... completed later
        out.write(whole[15:])
    sent += 1
    assert fake.wait_for_items(sent, timeout=30)
    child.send_signal(signal.SIGTERM)
    summary, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    restarted = spawn(tmp_path, fake, "--follow", "--poll-interval", "0.02", str(path),
                      str(beacon))  # fmt: skip
    add(path, "after-1")
    restarted.send_signal(signal.SIGTERM)
    restarted.communicate(timeout=30)
    assert restarted.returncode == 0
    arrived = data_ids(fake)
    print(f"\nfollow: {sent} records written across rotations, {len(arrived)} arrived, "
          f"{sum(arrived.values()) - len(arrived)} twice")  # fmt: skip
    assert sum(arrived.values()) == sent == len(arrived)
    assert "not JSON" not in summary


def on_a_terminal(tmp_path: Path, fake: FakeHumanloop, *args: str) -> str:
    """What ``send`` writes to stderr when stderr is a terminal (a pty of 120 columns)."""
    import fcntl
    import struct
    import termios

    primary, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = child_env(**humanloop_env(KEY, fake.base_url))
    command = [sys.executable, "-m", "humanloop_logging", "send", "--state",
               str(tmp_path / "pty-state.json"), *args]  # fmt: skip
    with subprocess.Popen(command, stderr=secondary, stdout=subprocess.DEVNULL, env=env) as child:
        os.close(secondary)
        chunks = []
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        child.wait(timeout=60)
    os.close(primary)
    assert child.returncode == 0
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_a_progress_bar_on_a_terminal_only_and_not_with_quiet(
    tmp_path: Path, fake: FakeHumanloop
) -> None:
    """On a terminal the bar shows records/s and the counts; --quiet and a pipe show none."""
    path = tmp_path / "app.log"
    write_lines(path, [fb(f"t-{n}") if n % 10 == 0 else {"event": "x"} for n in range(2000)])
    shown = on_a_terminal(tmp_path, fake, str(path))
    assert "rec/s" in shown
    assert "sent 200" in shown
    assert KEY not in shown
    (tmp_path / "pty-state.json").unlink()
    assert on_a_terminal(tmp_path, fake, "--quiet", str(path)) == ""
