"""``humanloop-logging demo``: the README's main job, run as a user runs it, in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_delivers_every_valid_record_exactly_once() -> None:
    """With default settings, the demo's faults (503s, a 429 with Retry-After, dropped
    connections) and its close cost no valid record, and none arrives twice."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env = {k: v for k, v in env.items() if not k.startswith("HUMANLOOP_")}  # defaults are defaults
    result = subprocess.run(
        [sys.executable, "-m", "humanloop_logging", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.splitlines()[-1]
    assert summary.endswith("valid records, each exactly once"), result.stdout
    received, _, expected = summary.split(" received ")[1].split(" valid ")[0].partition(" of ")
    assert received == expected
