"""The ``send`` section: backfilling a JSON log file with ``humanloop-logging send``.

A structlog-style JSON-lines file is written to the scratch directory (one line in ten is
feedback). The floor is a process that only runs ``json.loads`` on every line of the same file;
``send`` is the real command, in its own process, sending to the lean sink. Both are timed as
whole processes (start-up included), and alternate, so the machine's load weighs on both alike.
The goal is at least half the floor's line rate. Peak RSS of the ``send`` process is sampled from
``/proc`` (or psutil) and compared across two file sizes: flat means it does not grow with the
file.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from benchmarks.harness import Sink, worker_env

GOAL = 0.5
FLOOR = "import json,sys\nwith open(sys.argv[1],'rb') as f:\n    for line in f: json.loads(line)\n"


def write_log(path: Path, lines: int) -> int:
    """A structlog ``JSONRenderer`` file of ``lines`` lines, every tenth one feedback."""
    stamp = "2024-05-01T12:00:00.000000Z"
    with path.open("w", encoding="utf-8") as out:
        for n in range(lines):
            if n % 10 == 0:
                event: dict[str, Any] = {
                    "data_id": f"dp-{n}", "type": "rating", "value": "good", "user": "u-7",
                    "event": "feedback", "level": "info", "timestamp": stamp,
                }  # fmt: skip
            else:
                event = {
                    "event": "request handled", "path": f"/items/{n}", "status": 200,
                    "duration_ms": n % 97, "level": "info", "timestamp": stamp,
                }  # fmt: skip
            out.write(json.dumps(event) + "\n")
    return (lines + 9) // 10


def _floor(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR, str(path)], check=True, env=worker_env(None))
    return time.perf_counter() - started


def _send(
    path: Path, sink: Sink, state: Path, rss: Callable[[int], Optional[int]]
) -> dict[str, Any]:
    env = worker_env(None)
    env["HUMANLOOP_API_KEY"] = "hl-bench-key"
    env["HUMANLOOP_BASE_URL"] = sink.base_url
    state.unlink(missing_ok=True)
    sink.reset()
    command = [sys.executable, "-m", "humanloop_logging", "send", "--quiet", "--state", str(state)]
    started = time.perf_counter()
    child = subprocess.Popen([*command, str(path)], env=env, stdout=subprocess.DEVNULL)
    peak = 0
    while child.poll() is None:
        peak = max(peak, rss(child.pid) or 0)
        time.sleep(0.02)  # sampling RSS, not waiting for an outcome
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "status": child.returncode,
        "peak_rss_mib": peak / 2**20,
        "items": sink.stats()["items"],
    }


def run(
    scratch: Path, sizes: list[int], rounds: int, rss: Callable[[int], Optional[int]]
) -> dict[str, Any]:
    runs = []
    failures = []
    with Sink(scratch) as sink:
        for lines in sizes:
            path = scratch / f"send-{lines}.log"
            records = write_log(path, lines)
            floors, sends = [], []
            for _ in range(rounds):
                floors.append(_floor(path))
                sends.append(_send(path, sink, scratch / "send-state.json", rss))
            floor = statistics.median(floors)
            send_s = statistics.median(s["seconds"] for s in sends)
            bad = [s for s in sends if s["status"] != 0 or s["items"] != records]
            if bad:
                failures.append(f"{lines:,} lines: {bad[0]['items']:,} of {records:,} records "
                                f"arrived, exit {bad[0]['status']}")  # fmt: skip
            runs.append(
                {
                    "lines": lines,
                    "records": records,
                    "bytes": path.stat().st_size,
                    "floor_s": floor,
                    "send_s": send_s,
                    "floor_lines_per_s": lines / floor,
                    "send_lines_per_s": lines / send_s,
                    "send_records_per_s": records / send_s,
                    "ratio": floor / send_s,
                    "peak_rss_mib": max(s["peak_rss_mib"] for s in sends),
                }
            )
            path.unlink()
    flat = None
    if len(runs) > 1 and runs[0]["peak_rss_mib"]:
        flat = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
    return {
        "goal": GOAL,
        "rounds": rounds,
        "runs": runs,
        "rss_growth": flat,
        "failures": failures + [
            f"{r['lines']:,} lines: {r['ratio']:.2f}x the floor, under the goal of {GOAL}x"
            for r in runs if r["ratio"] < GOAL
        ],
    }  # fmt: skip
