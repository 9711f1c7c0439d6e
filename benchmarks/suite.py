"""The whole benchmark suite in one command, each figure for the working tree and, with
``--baseline REV``, for that revision too, measured side by side in the same run.

    python -m benchmarks --quick                      # a smoke run: small, a minute or two
    python -m benchmarks --baseline 29fb9dc           # the full suite, before and after
    python -m benchmarks --only caller,e2e            # some sections (--skip works too)
    python -m benchmarks --render                     # the tables and plots from the results

Sections:

- ``caller``: what a log call costs the caller's thread, tagged and untagged, through
  ``NullHandler`` (the floor), ``SimpleQueue.put``, ``QueueHandler`` + ``QueueListener``,
  OpenTelemetry's ``LoggingHandler`` + ``BatchLogRecordProcessor`` (discarding exporter) and
  ``FeedbackHandler`` (sending to the sink meanwhile), as ratios to ``NullHandler`` and to
  ``SimpleQueue.put``; and through loguru, ``FeedbackSink`` (on the handler's shipper) as a
  ratio to loguru's no-op sink, beside ``FeedbackHandler`` to ``NullHandler``.
- ``validate``: the flush thread's work per record alone (validation and the request body), in
  microseconds, each version in its own worker.
- ``e2e``: wall and CPU time of this process from the first log call to ``flush()`` done, for
  ``n`` records, against the floor (the same log calls through a ``NullHandler``, then plain
  ``requests`` posting arrays it builds inside its clock, on one ``Session``), for each batch size; and the official
  Humanloop SDK (0.5.18, in a virtualenv of its own) once per record and with arrays.
- ``roundtrips``: records/s delivered for a burst with default settings when every request takes
  20, 50 or 150 ms.
- ``fleet``: ``benchmarks/bench_fleet.py``'s ``run()``: processes behind one rate limit.
- ``memory``: RSS of a process logging 5,000 records/s while the service is down, without and
  with a spool, against the bound its queue implies.
- ``exit``: how long a process takes to exit with ``N`` records logged just before, against the
  sink and with the service down, and how many of them arrived.

Method: the machine is small and noisy, so configurations are interleaved round by round in a
shuffled order, ratios are taken within a round, and the median of those ratios is reported.
Every measurement of the library runs in a worker process (``benchmarks/worker.py``) whose
``PYTHONPATH`` points at the version under test; the sink (``benchmarks/sink.py``) runs in its own
process. Every delivery is checked against the sink's count: a run that did not deliver exactly
what it logged is reported as failed, and left out of the ratios.

Results go to ``docs/bench-results.json``; the documentation's performance page
(``docs/performance.md``, between its ``bench:start`` and ``bench:end`` markers) and
``docs/bench-*.png`` are regenerated from them.
A run of some sections keeps the others' results. ``--quick`` writes to a temporary directory
instead, unless ``--write`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from benchmarks import bench_send, report
from benchmarks.harness import (
    API_KEY,
    REPO,
    RunFailed,
    Sink,
    Version,
    Worker,
    baseline_version,
    current_version,
    default_sdk_venv,
    refused_url,
    run_worker,
    sdk_python,
)

__all__ = ["SECTIONS", "main"]

SECTIONS = ("caller", "validate", "e2e", "roundtrips", "fleet", "memory", "exit", "send")
SDK_VERSION = "0.5.18"
#: The library's defaults that some sections size themselves against (docs/settings.md).
DEFAULT_MAX_QUEUE_SIZE = 10_000
DEFAULT_EXIT_TIMEOUT = 5.0


@dataclass
class Context:
    args: argparse.Namespace
    scratch: Path
    versions: list[Version]
    rng: random.Random
    _sdk: Optional[tuple[Optional[str], dict[str, Any]]] = field(default=None)

    @property
    def quick(self) -> bool:
        return bool(self.args.quick)

    def sdk(self) -> tuple[Optional[str], dict[str, Any]]:
        """The SDK venv's Python (made on first use), or ``None`` and why not."""
        if self._sdk is None:
            if self.args.no_sdk:
                self._sdk = (None, {"error": "skipped (--no-sdk)"})
            else:
                venv = Path(self.args.sdk_venv) if self.args.sdk_venv else None
                self._sdk = sdk_python(venv or default_sdk_venv(SDK_VERSION), SDK_VERSION)
        return self._sdk


def median(values: Iterable[float]) -> Optional[float]:
    values = list(values)
    return statistics.median(values) if values else None


def brief(exc: BaseException) -> str:
    """A failure for the results: its first line and the last of a traceback, if any."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if len(lines) <= 2:
        return " ".join(lines)
    return f"{lines[0]} ... {lines[-1].strip()}"


def say(text: str) -> None:
    print(text, flush=True)


def version_facts(versions: Sequence[Version]) -> list[dict[str, str]]:
    return [{"key": v.key, "label": v.label, "path": str(v.path)} for v in versions]


# --- caller -------------------------------------------------------------------------------------

#: Every configuration, in the order of the tables; only the current version's worker measures
#: the peers (``queuehandler``, ``otel``), and ``dictlookup`` is only timed untagged.
CALLER_CONFIGS = ("null", "simplequeue", "dictlookup", "queuehandler", "otel", "feedback")


def section_caller(ctx: Context) -> dict[str, Any]:
    rounds = ctx.args.caller_rounds or (3 if ctx.quick else 15)
    number = ctx.args.caller_number or (1000 if ctx.quick else 3000)
    answers: list[dict[str, dict[str, Any]]] = []
    with ExitStack() as stack:
        sink = stack.enter_context(Sink(ctx.scratch))
        workers: dict[str, Worker] = {}
        for version in ctx.versions:
            args = {
                "api_key": API_KEY,
                "base_url": sink.base_url,
                "number": number,
                "peers": version.key == "current",
                # Room for every round's calls: the ratios are about the call, not about drops.
                "settings": {"max_queue_size": 20 * number},
            }
            worker = stack.enter_context(
                Worker("caller", args, version, ctx.scratch, interactive=True)
            )
            worker.next_answer()
            workers[version.key] = worker
        for index in range(rounds):
            got: dict[str, dict[str, Any]] = {}
            for key in ctx.rng.sample(list(workers), k=len(workers)):
                got[key] = workers[key].ask("round")
            answers.append(got)
            say(f"  round {index + 1}/{rounds} done")
        finals = {key: worker.ask("stop") for key, worker in workers.items()}
        for worker in workers.values():
            worker.wait(60)
        received = int(sink.stats()["items"])

    def per_round(key: str, kind: str, name: str, over: str) -> list[float]:
        return [r[key][kind][name] / r[key][kind][over] for r in answers]

    rows: list[dict[str, Any]] = []
    for name in CALLER_CONFIGS:
        for version in ctx.versions:
            key = version.key
            if key != "current" and name != "feedback":
                continue  # the peers do not depend on the library's version
            row: dict[str, Any] = {"config": name, "version": key, "label": version.label}
            for kind in ("tagged", "untagged"):
                measured = answers[0][key][kind]
                if name not in measured:
                    continue
                row[f"{kind}_ns"] = median(r[key][kind][name] * 1e9 for r in answers)
                row[f"{kind}_vs_null"] = median(per_round(key, kind, name, "null"))
                row[f"{kind}_vs_simplequeue"] = median(per_round(key, kind, name, "simplequeue"))
            if len(row) > 3:  # measured (opentelemetry-sdk may be missing, say)
                rows.append(row)
    result: dict[str, Any] = {
        "rounds": rounds,
        "calls_per_measure": number,
        "rows": rows,
        "null_ns": {
            v.key: median(r[v.key]["tagged"]["null"] * 1e9 for r in answers) for v in ctx.versions
        },
    }
    if len(ctx.versions) == 2:
        result["current_vs_baseline"] = {
            kind: median(
                (r["current"][kind]["feedback"] / r["current"][kind]["null"])
                / (r["baseline"][kind]["feedback"] / r["baseline"][kind]["null"])
                for r in answers
            )
            for kind in ("tagged", "untagged")
        }
    failures = []
    for key, final in finals.items():
        stats = final["stats"]
        if not final["flushed"] or stats.get("sent") != final["logged"]:
            failures.append(f"{key}: logged {final['logged']}, stats {stats}")
    logged = sum(int(final["logged"]) for final in finals.values())
    if received != logged:
        failures.append(f"the sink received {received} items of {logged} logged")
    result["delivered"] = {"logged": logged, "received": received}
    loguru = _loguru_summary([r["current"] for r in answers if "current" in r])
    if loguru is not None:
        result["loguru"] = loguru
    # Every round's seconds per call, for a closer look at the spread behind the medians.
    result["per_round_ns"] = [
        {
            key: {
                kind: {name: round(sec * 1e9) for name, sec in r[key][kind].items()}
                for kind in r[key]
            }
            for key in r
        }
        for r in answers
    ]
    result["failures"] = failures
    return result


#: Each adapter beside the floor of its own logging library: the same call through a sink or
#: handler that does nothing.
LOGURU_PAIRS = {"loguru_feedback": "loguru_null", "feedback": "null"}


def _loguru_summary(rounds: Sequence[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """``FeedbackSink`` against loguru's no-op sink, beside ``FeedbackHandler`` against
    ``NullHandler``: medians of per-round ratios, and of seconds per call; None when the worker
    measured no loguru (loguru not installed)."""
    if not rounds or "loguru_null" not in rounds[0]["tagged"]:
        return None
    rows = []
    for name, floor in LOGURU_PAIRS.items():
        row: dict[str, Any] = {"config": name, "floor": floor}
        for kind in ("tagged", "untagged"):
            row[f"{kind}_ns"] = median(r[kind][name] * 1e9 for r in rounds)
            row[f"{kind}_floor_ns"] = median(r[kind][floor] * 1e9 for r in rounds)
            row[f"{kind}_vs_floor"] = median(r[kind][name] / r[kind][floor] for r in rounds)
        rows.append(row)
    return {"rows": rows}


# --- end to end ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One configuration of a section: ``name`` is its row."""

    name: str
    kind: str  # worker kind
    version: Optional[Version]
    args: Mapping[str, Any]
    expected: int
    python: str = sys.executable


def measure(ctx: Context, sink: Sink, run: Run, timeout: float = 300.0) -> dict[str, Any]:
    """Run one worker against the sink; raises ``RunFailed`` unless exactly what it logged
    arrived."""
    sink.reset()
    args = {"base_url": sink.base_url, **run.args}
    answer = run_worker(
        run.kind, args, run.version, ctx.scratch, python=run.python, timeout=timeout
    )
    got = sink.stats()
    answer["received"] = got["items"]
    answer["requests_seen"] = got["requests"]
    answer["in_flight_max"] = got["in_flight_max"]
    problems = []
    if got["items"] != run.expected:
        problems.append(f"the sink received {got['items']} items, not {run.expected}")
    if answer.get("failed_requests"):
        problems.append(f"{answer['failed_requests']} requests failed")
    stats = answer.get("stats")
    if stats is not None and (not answer.get("flushed") or stats.get("sent") != run.expected):
        problems.append(f"flushed={answer.get('flushed')}, stats {stats}")
    if problems:
        raise RunFailed(f"{run.name}: " + "; ".join(problems))
    return answer


def interleave(
    ctx: Context,
    sink: Sink,
    rounds: int,
    plan: Callable[[int], list[Run]],
    before: Optional[Callable[[Run], None]] = None,
) -> tuple[dict[str, list[Optional[dict[str, Any]]]], list[str]]:
    """Every run of ``plan(round)`` in a shuffled order, round after round; a failed run is
    ``None`` in its row and its reason is in the list returned."""
    table: dict[str, list[Optional[dict[str, Any]]]] = {}
    failures: list[str] = []
    for index in range(rounds):
        runs = plan(index)
        ctx.rng.shuffle(runs)
        for run in runs:
            if before is not None:
                before(run)
            try:
                answer: Optional[dict[str, Any]] = measure(ctx, sink, run)
            except RunFailed as exc:
                answer = None
                failures.append(f"round {index + 1}: {brief(exc)}")
                say(f"  FAILED {exc}")
            table.setdefault(run.name, [None] * rounds)[index] = answer
        say(f"  round {index + 1}/{rounds} done")
    return table, failures


def section_validate(ctx: Context) -> dict[str, Any]:
    """The flush thread's work per record, alone: each version in a worker of its own, taking
    turns round by round."""
    n = 2_000 if ctx.quick else 20_000
    rounds = 2 if ctx.quick else 7
    size = 500
    args = {"n": n, "batch_size": size, "repeat": 5}

    def plan(index: int) -> list[Run]:
        return [Run(f"validate [{v.key}]", "validate", v, args, 0) for v in ctx.versions]

    with Sink(ctx.scratch) as sink:  # (nothing is sent: the sink only checks that)
        table, failures = interleave(ctx, sink, rounds, plan)
    rows = []
    current = table.get("validate [current]", [])
    for version in ctx.versions:
        answers = table[f"validate [{version.key}]"]
        done = [a for a in answers if a is not None]
        pairs = [(c, a) for c, a in zip(current, answers) if a is not None and c is not None]
        rows.append(
            {
                "version": version.key,
                "label": version.label,
                "batch_api": bool(done and done[0]["batch_api"]),
                "us_per_record": median(a["seconds_per_record"] * 1e6 for a in done),
                "current_vs_this": median(
                    c["seconds_per_record"] / a["seconds_per_record"] for c, a in pairs
                ),
                "rounds_ok": len(done),
            }
        )
    return {"n": n, "batch_size": size, "rounds": rounds, "rows": rows, "failures": failures}


def section_e2e(ctx: Context) -> dict[str, Any]:
    n = ctx.args.e2e_n or (2_000 if ctx.quick else 20_000)
    rounds = ctx.args.e2e_rounds or (2 if ctx.quick else 7)
    sdk_rounds = min(rounds, ctx.args.sdk_rounds or (1 if ctx.quick else 2))
    sizes = sorted(int(b) for b in ctx.args.batch_sizes.split(","))
    sdk_python_path, sdk_facts = ctx.sdk()
    if sdk_python_path is None:
        say(f"  the SDK is left out: {sdk_facts.get('error')}")
    common = {"api_key": API_KEY, "n": n}
    meta: dict[str, dict[str, Any]] = {}

    def add(run: Run, **info: Any) -> Run:
        entry = meta.setdefault(run.name, {**info, "rounds_planned": 0})
        entry["rounds_planned"] += 1
        return run

    def plan(index: int) -> list[Run]:
        runs = []
        with_sdk = sdk_python_path is not None and index < sdk_rounds
        for size in sizes:
            floor = f"floor B={size}"
            args = {**common, "batch_size": size}
            runs.append(add(Run(floor, "floor", None, args, n), kind="floor", batch_size=size))
            for version in ctx.versions:
                name = f"FeedbackHandler B={size} [{version.label}]"
                # Room for the whole burst: the figure is about sending, not dropping.
                args = {**common, "settings": {"batch_size": size, "max_queue_size": n}}
                run = Run(name, "e2e", version, args, n)
                runs.append(add(run, kind="feedback", batch_size=size, version=version.key))
            if with_sdk:
                args = {**common, "batch_size": size}
                run = Run(f"SDK arrays B={size}", "sdk", None, args, n, str(sdk_python_path))
                runs.append(add(run, kind="sdk", batch_size=size))
        if with_sdk:
            args = {**common, "batch_size": 0}
            run = Run("SDK per record", "sdk", None, args, n, str(sdk_python_path))
            runs.append(add(run, kind="sdk", batch_size=1))
        return runs

    with Sink(ctx.scratch) as sink:
        table, failures = interleave(ctx, sink, rounds, plan)

    rows = []
    for name, answers in table.items():
        info = meta[name]
        compared = info["batch_size"] if info["batch_size"] in sizes else sizes[0]
        floors = table[f"floor B={compared}"]
        pairs = [(a, f) for a, f in zip(answers, floors) if a is not None and f is not None]
        done = [a for a in answers if a is not None]
        rows.append(
            {
                "name": name,
                **info,
                "floor_batch_size": compared,
                "wall_s": median(a["wall"] for a in done),
                "cpu_s": median(a["cpu"] for a in done),
                "share_of_floor_speed": median(f["wall"] / a["wall"] for a, f in pairs),
                "cpu_vs_floor": median(a["cpu"] / f["cpu"] for a, f in pairs),
                "requests": median(a["requests_seen"] for a in done),
                "in_flight_max": max((a["in_flight_max"] for a in done), default=None),
                "rounds_ok": len(done),
            }
        )
    kinds = ["floor", "feedback", "sdk"]
    rows.sort(
        key=lambda r: (
            r["batch_size"] == 1,
            r["floor_batch_size"],
            kinds.index(r["kind"]),
            r.get("version") != "current",
        )
    )
    return {
        "n": n,
        "rounds": rounds,
        "sdk_rounds": sdk_rounds if sdk_python_path else 0,
        "batch_sizes": sizes,
        "sdk": sdk_facts,
        "rows": rows,
        "failures": failures,
    }


# --- round trips --------------------------------------------------------------------------------


def section_roundtrips(ctx: Context) -> dict[str, Any]:
    n = ctx.args.roundtrip_n or (2_000 if ctx.quick else 20_000)
    rounds = ctx.args.roundtrip_rounds or (1 if ctx.quick else 3)
    delays = [float(d) for d in ctx.args.delays.split(",")]
    delay_of: dict[str, float] = {}

    def plan(index: int) -> list[Run]:
        runs = []
        for delay in delays:
            for version in ctx.versions:
                name = f"{delay * 1000:g} ms [{version.label}]"
                delay_of[name] = delay
                # Default settings, but room for the whole burst in the queue.
                args = {"api_key": API_KEY, "n": n, "settings": {"max_queue_size": n}}
                runs.append(Run(name, "e2e", version, args, n))
        return runs

    with Sink(ctx.scratch) as sink:

        def before(run: Run) -> None:
            sink.configure(delay=delay_of[run.name])

        table, failures = interleave(ctx, sink, rounds, plan, before)

    rows = []
    for delay in delays:
        for version in ctx.versions:
            name = f"{delay * 1000:g} ms [{version.label}]"
            done = [a for a in table[name] if a is not None]
            rows.append(
                {
                    "delay_ms": delay * 1000,
                    "version": version.key,
                    "label": version.label,
                    "records_per_s": median(n / a["wall"] for a in done),
                    "requests": median(a["requests_seen"] for a in done),
                    "in_flight_max": max((a["in_flight_max"] for a in done), default=None),
                    "rounds_ok": len(done),
                }
            )
    result: dict[str, Any] = {"n": n, "rounds": rounds, "rows": rows, "failures": failures}
    if len(ctx.versions) == 2:
        labels = {v.key: v.label for v in ctx.versions}
        ratios = {}
        for delay in delays:
            current = table[f"{delay * 1000:g} ms [{labels['current']}]"]
            baseline = table[f"{delay * 1000:g} ms [{labels['baseline']}]"]
            ratios[f"{delay * 1000:g}"] = median(
                b["wall"] / c["wall"]
                for c, b in zip(current, baseline)
                if c is not None and b is not None
            )
        result["current_vs_baseline"] = ratios
    return result


# --- fleet --------------------------------------------------------------------------------------

#: Requests/s the stand-in lets through, and records/s each process logs.
FLEET_RATE_LIMIT = 5.0
FLEET_OFFERED_RATE = 500.0


def section_fleet(ctx: Context) -> dict[str, Any]:
    """``benchmarks/bench_fleet.py``'s ``run()`` for each version (keywords it does not take are
    not passed: it is another script, and may change)."""
    try:
        fleet = importlib.import_module("benchmarks.bench_fleet")
    except ModuleNotFoundError as exc:
        if exc.name != "benchmarks.bench_fleet":
            raise
        return {"missing": "benchmarks/bench_fleet.py is not there", "failures": []}
    run = getattr(fleet, "run", None)
    if not callable(run):
        return {"missing": "benchmarks/bench_fleet.py has no run()", "failures": []}
    parameters = inspect.signature(run).parameters
    # A limit both versions must live with: 4 processes offering 500 records/s each would send
    # 20 requests/s of 100 records one at a time, and the limit lets through 5.
    wanted: dict[str, Any] = {
        "processes": ctx.args.fleet_processes or (2 if ctx.quick else None),
        "records": ctx.args.fleet_records or (1000 if ctx.quick else None),
        "rate_limit": ctx.args.fleet_rate_limit or FLEET_RATE_LIMIT,
        "offered_rate": ctx.args.fleet_offered_rate or FLEET_OFFERED_RATE,
    }
    kwargs = {k: v for k, v in wanted.items() if v is not None and k in parameters}
    results: dict[str, Any] = {}
    failures = []
    for version in ctx.rng.sample(ctx.versions, k=len(ctx.versions)):
        say(f"  {version.label} ...")
        try:
            result = run(pythonpath=str(version.path), **kwargs)
        except Exception as exc:  # its failure is this section's, not the suite's
            failures.append(f"{version.label}: {type(exc).__name__}: {brief(exc)}")
            say(f"  FAILED {failures[-1]}")
            continue
        result = json.loads(json.dumps(result, default=str))
        module = str(result.get("library", {}).get("module", ""))
        if module and not module.startswith(str(version.path)):
            failures.append(f"{version.label}: the clients imported {module}")
        if result.get("complete") is False:
            failures.append(
                f"{version.label}: delivered {result.get('delivered')} of {result.get('logged')}"
                f" (missing {result.get('missing')}, duplicates {result.get('duplicates')})"
            )
        results[version.key] = result
    return {
        "results": {v.key: results[v.key] for v in ctx.versions if v.key in results},
        "keywords": kwargs,
        "doc": (inspect.getdoc(fleet) or "").split("\n\n")[0],
        "failures": failures,
    }


# --- memory -------------------------------------------------------------------------------------


def _rss_reader() -> Callable[[int], Optional[int]]:
    """RSS of a process by pid, in bytes (``None`` once it has gone)."""
    try:
        import psutil
    except ImportError:
        page = os.sysconf("SC_PAGE_SIZE")

        def from_proc(pid: int) -> Optional[int]:
            try:
                with open(f"/proc/{pid}/statm") as statm:
                    return int(statm.read().split()[1]) * page
            except (OSError, ValueError, IndexError):
                return None

        return from_proc

    def from_psutil(pid: int) -> Optional[int]:
        try:
            return int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            return None

    return from_psutil


def _spool_sizes(path: Path) -> tuple[int, int]:
    """Bytes of the spool's database file, and of its write-ahead log (-wal, -shm) beside it."""
    database = journal = 0
    for entry in path.iterdir() if path.exists() else ():
        with suppress(OSError):  # the journal comes and goes
            size = entry.stat().st_size
            if entry.name.endswith(("-wal", "-shm")):
                journal += size
            elif entry.suffix == ".db":
                database += size
    return database, journal


def section_memory(ctx: Context) -> dict[str, Any]:
    import threading

    duration = ctx.args.memory_duration or (6.0 if ctx.quick else 60.0)
    rate = ctx.args.memory_rate
    spool_limit = ctx.args.max_spool_bytes
    queue_size = DEFAULT_MAX_QUEUE_SIZE
    reference = run_worker("reference", {"n": queue_size}, None, ctx.scratch)
    reference_mib = reference["bytes"] / 2**20
    read_rss = _rss_reader()
    with ExitStack() as stack:
        url = stack.enter_context(refused_url())
        workers: list[tuple[dict[str, Any], Worker, Optional[Path]]] = []
        for version in ctx.versions:
            for mode in ("queue", "spool"):
                settings: dict[str, Any] = {}  # the defaults: max_queue_size 10,000
                spool_dir: Optional[Path] = None
                if mode == "spool":
                    spool_dir = Path(tempfile.mkdtemp(prefix="spool-", dir=ctx.scratch))
                    settings["spool_path"] = str(spool_dir / "feedback.db")
                    settings["max_spool_bytes"] = spool_limit
                args = {
                    "api_key": API_KEY,
                    "base_url": url,
                    "rate": rate,
                    "duration": duration,
                    "settings": settings,
                }
                worker = stack.enter_context(Worker("memory", args, version, ctx.scratch))
                run: dict[str, Any] = {"version": version.key, "label": version.label}
                run["mode"] = mode
                run["settings"] = dict(settings, spool_path="(temporary)") if spool_dir else {}
                workers.append((run, worker, spool_dir))
        for run, worker, _ in workers:
            ready = worker.next_answer()
            run["started"] = time.monotonic()
            run["rss_start"] = ready["rss"]
            run["samples"] = []
            run["spool_samples"] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.25):
                now = time.monotonic()
                for run, worker, spool_dir in workers:
                    if worker.process.poll() is not None:
                        continue
                    rss = read_rss(worker.pid)
                    if rss is not None:
                        run["samples"].append((now - run["started"], rss))
                    if spool_dir is not None:
                        sizes = _spool_sizes(spool_dir)
                        run["spool_samples"].append((now - run["started"], *sizes))

        sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        sampler.start()
        failures = []
        try:
            for run, worker, _ in workers:
                try:
                    done = worker.next_answer()
                    worker.wait(60)
                except RunFailed as exc:
                    failures.append(f"{run['label']} {run['mode']}: {brief(exc)}")
                    continue
                run.update(
                    logged=done["logged"],
                    seconds=done["seconds"],
                    stats=done["stats"],
                    rss_final=done["rss"],
                    peak_rss=done["peak_rss"],
                )
        finally:
            stop.set()
            sampler.join()
    mib = 2**20
    for run, _, _ in workers:
        if "rss_final" not in run:
            continue
        samples = run.pop("samples")
        spool = run.pop("spool_samples")
        del run["started"]
        rss_values = [rss for _, rss in samples] + [run["rss_final"]]
        peak = max([*rss_values, run["peak_rss"]])
        # After the queue filled (and a margin), a longer outage may cost nothing more. What
        # keeping every record logged in that window would take is the yardstick: a queue that
        # grows with the outage takes all of it, a bounded one next to none (a one-off step, such
        # as the first batch given up on after max_retry_time, is a small share of it).
        full_at = min(duration, queue_size / rate + 2.0)
        window = (max(full_at, duration / 2), duration)
        late = [rss for t, rss in samples if t >= window[0]]
        late_growth = (run["rss_final"] - min(late)) / mib if late else None
        unbounded = rate * (window[1] - window[0]) * reference["bytes"] / queue_size / mib
        run.update(
            {
                "rss_start_mib": run.pop("rss_start") / mib,
                "rss_final_mib": run.pop("rss_final") / mib,
                "rss_peak_mib": peak / mib,
                "late_window_s": list(window),
                "late_growth_mib": late_growth,
                "unbounded_growth_mib": unbounded,
                "late_growth_share": None if late_growth is None else late_growth / unbounded,
                "queue_full_at_s": full_at,
                "spool_db_max_bytes": max((db for _, db, _ in spool), default=None),
                "spool_wal_max_bytes": max((wal for _, _, wal in spool), default=None),
                "rss_mib_over_time": [(round(t, 2), round(rss / mib, 2)) for t, rss in samples],
                "spool_mib_over_time": [
                    (round(t, 2), round(db / mib, 3), round(wal / mib, 3)) for t, db, wal in spool
                ],
            }
        )
        del run["peak_rss"]
        run["growth_mib"] = run["rss_peak_mib"] - run["rss_start_mib"]
        run["bounded"] = run["late_growth_share"] is not None and run["late_growth_share"] < 0.25
        if not run["bounded"]:
            grew = "no samples" if late_growth is None else f"{late_growth:.2f} MiB"
            failures.append(
                f"{run['label']} {run['mode']}: RSS grew {grew} from {window[0]:.0f} s to "
                f"{window[1]:.0f} s, after the queue was full (unbounded: {unbounded:.1f} MiB)"
            )
        # The documented bound of the database file: max_spool_bytes plus one batch. Its WAL comes
        # on top (up to 40 MiB between checkpoints) and is reported, not checked.
        if spool and run["spool_db_max_bytes"] > spool_limit + 2**20:
            failures.append(
                f"{run['label']} spool: a database file of {run['spool_db_max_bytes']:,} bytes"
            )
    return {
        "rate": rate,
        "duration_s": duration,
        "max_queue_size": queue_size,
        "max_spool_bytes": spool_limit,
        "queue_reference_mib": reference_mib,
        "runs": [run for run, _, _ in workers],
        "failures": failures,
    }


# --- exit ---------------------------------------------------------------------------------------


def section_exit(ctx: Context) -> dict[str, Any]:
    sizes = [
        int(x)
        for x in (
            ctx.args.exit_sizes or ("1000,10000" if ctx.quick else "1000,10000,100000")
        ).split(",")
    ]
    rounds = ctx.args.exit_rounds
    targets: list[tuple[str, Optional[float]]] = [
        ("sink, 0 ms", 0.0),
        ("sink, 50 ms", 0.05),
        ("service down", None),
    ]
    answers: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
    failures: list[str] = []
    with ExitStack() as stack:
        sink = stack.enter_context(Sink(ctx.scratch))
        down = stack.enter_context(refused_url())
        for index in range(rounds):
            plan = [(n, t, v) for n in sizes for t in targets for v in ctx.versions]
            ctx.rng.shuffle(plan)
            for n, (target, delay), version in plan:
                # flush_interval long, so that only full batches go out while the app logs;
                # max_queue_size at least n, so that nothing is dropped before the exit.
                settings: dict[str, Any] = {"flush_interval": 3600.0}
                if n > DEFAULT_MAX_QUEUE_SIZE:
                    settings["max_queue_size"] = n
                args = {
                    "api_key": API_KEY,
                    "base_url": sink.base_url if delay is not None else down,
                    "n": n,
                    "settings": settings,
                }
                if delay is not None:
                    sink.configure(delay=delay)
                sink.reset()
                name = f"{target}, n={n} [{version.label}]"
                try:
                    with Worker("exit", args, version, ctx.scratch) as worker:
                        answer = worker.next_answer()
                        status = worker.wait(DEFAULT_EXIT_TIMEOUT + 60)
                        ended = time.monotonic()
                        stderr = worker.stderr_text()
                except RunFailed as exc:
                    failures.append(f"round {index + 1}: {name}: {brief(exc)}")
                    say(f"  FAILED {failures[-1]}")
                    continue
                received = int(sink.stats()["items"]) if delay is not None else 0
                answer.update(
                    {
                        "exit_s": ended - answer.pop("exiting_at"),
                        "status": status,
                        "received": received,
                        "stderr_lines": len(stderr.splitlines()),
                    }
                )
                if status != 0:
                    failures.append(f"{name}: exit status {status}")
                if answer["exit_s"] > DEFAULT_EXIT_TIMEOUT + 2.0:
                    failures.append(f"{name}: exit took {answer['exit_s']:.1f} s")
                if received > n:
                    failures.append(f"{name}: the sink received {received} of {n}")
                answers.setdefault((n, target, version.key), []).append(answer)
            say(f"  round {index + 1}/{rounds} done")
    rows = []
    for n in sizes:
        for target, _ in targets:
            for version in ctx.versions:
                done = answers.get((n, target, version.key), [])
                rows.append(
                    {
                        "n": n,
                        "target": target,
                        "version": version.key,
                        "label": version.label,
                        "exit_s": median(a["exit_s"] for a in done),
                        "pending_at_exit": median(a["stats"]["pending"] for a in done),
                        "delivered": median(a["received"] for a in done),
                        "rounds_ok": len(done),
                    }
                )
    return {
        "sizes": sizes,
        "rounds": rounds,
        "exit_timeout_s": DEFAULT_EXIT_TIMEOUT,
        "rows": rows,
        "failures": failures,
    }


# --- the command --------------------------------------------------------------------------------


def section_send(ctx: Context) -> dict[str, Any]:
    """``humanloop-logging send`` backfilling a file, against ``json.loads`` of every line."""
    sizes = [int(s) for s in ctx.args.send_sizes.split(",")] if ctx.args.send_sizes else None
    sizes = sizes or ([50_000, 200_000] if ctx.quick else [250_000, 1_000_000])
    return bench_send.run(ctx.scratch, sizes, ctx.args.send_rounds or 1, _rss_reader())


SECTION_FUNCTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "caller": section_caller,
    "validate": section_validate,
    "e2e": section_e2e,
    "roundtrips": section_roundtrips,
    "fleet": section_fleet,
    "memory": section_memory,
    "exit": section_exit,
    "send": section_send,
}


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--baseline", metavar="REV", help="also measure humanloop_logging at REV")
    parser.add_argument("--only", help=f"comma-separated sections of: {','.join(SECTIONS)}")
    parser.add_argument("--skip", help="comma-separated sections to leave out")
    parser.add_argument("--quick", action="store_true", help="a small, fast smoke run")
    parser.add_argument("--seed", type=int, help="of the shuffled orders (default: random)")
    out = parser.add_argument_group("output")
    out.add_argument("--results", type=Path, help="results JSON (default docs/bench-results.json)")
    out.add_argument("--docs", type=Path, help="where the plots go (default docs/)")
    out.add_argument(
        "--page", type=Path, help="Markdown page to update (default docs/performance.md)"
    )
    out.add_argument(
        "--write", action="store_true", help="with --quick: write docs/ as a full run does"
    )
    out.add_argument("--no-write", action="store_true", help="print only; write nothing")
    out.add_argument(
        "--render", action="store_true", help="only regenerate the page and plots from --results"
    )
    sdk = parser.add_argument_group("the official SDK")
    sdk.add_argument("--no-sdk", action="store_true", help="leave the SDK out")
    sdk.add_argument("--sdk-venv", help="its virtualenv (default: a cache dir; made if needed)")
    tune = parser.add_argument_group("sizes (defaults: full run / --quick)")
    tune.add_argument("--caller-rounds", type=int, help="15 / 3")
    tune.add_argument("--caller-number", type=int, help="calls per timed run: 3000 / 1000")
    tune.add_argument("--e2e-n", type=int, help="records per run: 20000 / 2000")
    tune.add_argument("--e2e-rounds", type=int, help="7 / 2")
    tune.add_argument("--sdk-rounds", type=int, help="rounds with the SDK: 2 / 1")
    tune.add_argument("--batch-sizes", default="100,500", help="e2e batch sizes: %(default)s")
    tune.add_argument("--roundtrip-n", type=int, help="burst size: 20000 / 2000")
    tune.add_argument("--roundtrip-rounds", type=int, help="3 / 1")
    tune.add_argument("--delays", default="0.02,0.05,0.15", help="seconds: %(default)s")
    tune.add_argument("--fleet-processes", type=int, help="bench_fleet's default / 2")
    tune.add_argument("--fleet-records", type=int, help="per process: bench_fleet's / 1000")
    tune.add_argument("--fleet-rate-limit", type=float, help=f"requests/s: {FLEET_RATE_LIMIT:g}")
    tune.add_argument(
        "--fleet-offered-rate",
        type=float,
        help=f"records/s each process logs: {FLEET_OFFERED_RATE:g}",
    )
    tune.add_argument("--memory-duration", type=float, help="seconds: 60 / 6")
    tune.add_argument("--memory-rate", type=float, default=5000.0, help="records/s: %(default)s")
    tune.add_argument(
        "--max-spool-bytes", type=int, default=16 * 2**20, help="memory's spool: %(default)s"
    )
    tune.add_argument("--exit-sizes", help="records queued: 1000,10000,100000 / 1000,10000")
    tune.add_argument("--exit-rounds", type=int, default=1, help="%(default)s")
    tune.add_argument("--send-sizes", help="lines: 250000,1000000 / 50000,200000")
    tune.add_argument("--send-rounds", type=int, help="1")
    return parser.parse_args(argv)


def selected_sections(args: argparse.Namespace) -> list[str]:
    only = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    skip = {s.strip() for s in args.skip.split(",")} if args.skip else set()
    unknown = [s for s in [*only, *skip] if s not in SECTIONS]
    if unknown:
        raise SystemExit(
            f"unknown section(s): {', '.join(unknown)}; sections: {', '.join(SECTIONS)}"
        )
    return [s for s in SECTIONS if s in only and s not in skip]


def git_facts() -> dict[str, Any]:
    def git(*command: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(REPO), *command], check=False, capture_output=True, text=True
        )
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "humanloop_logging")
    return {
        "head": git("rev-parse", "--short", "HEAD"),
        "library_changed_since_head": bool(changed),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    quick_output = args.quick and not args.write
    out_dir = (
        Path(tempfile.gettempdir()) / "humanloop-logging-bench-quick" if quick_output else None
    )
    results_path = args.results or (out_dir or REPO / "docs") / "bench-results.json"
    docs_dir = args.docs or out_dir or REPO / "docs"
    page = args.page or (out_dir or REPO / "docs") / "performance.md"
    results: dict[str, Any]
    if args.render:
        results = json.loads(results_path.read_text())
        written = report.write(results, docs_dir, page)
        say("\n".join(f"wrote {path}" for path in written))
        return 0
    sections = selected_sections(args)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    scratch = Path(tempfile.mkdtemp(prefix="humanloop-bench-"))
    started = time.monotonic()
    failed = False
    try:
        versions = [current_version()]
        if args.baseline:
            versions.append(baseline_version(args.baseline, scratch))
        ctx = Context(args, scratch, versions, random.Random(seed))
        say(
            f"benchmarks: {', '.join(sections)}; versions: "
            + ", ".join(f"{v.label} ({v.path})" for v in versions)
            + ("; quick" if args.quick else "")
        )
        results = {"sections": {}}
        if results_path.exists() and not quick_output and set(sections) != set(SECTIONS):
            results = json.loads(results_path.read_text())  # the other sections' last results
        for name in sections:
            say(f"\n== {name}")
            section_started = time.monotonic()
            try:
                data = SECTION_FUNCTIONS[name](ctx)
            except Exception as exc:
                data = {"error": f"{type(exc).__name__}: {brief(exc)}", "failures": [brief(exc)]}
            data["meta"] = {
                "versions": version_facts(versions),
                "seconds": round(time.monotonic() - section_started, 1),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "quick": bool(args.quick),
                "seed": seed,
            }
            failed = failed or bool(data.get("failures"))
            results["sections"][name] = data
            say(report.text(name, data))
        results["meta"] = {
            "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "git": git_facts(),
            "baseline": versions[1].label if len(versions) > 1 else None,
            "seconds": round(time.monotonic() - started, 1),
        }
        if not args.no_write:
            results_path.parent.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=1) + "\n")
            written = [results_path, *report.write(results, docs_dir, page)]
            say("\n" + "\n".join(f"wrote {path}" for path in written))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    say(
        f"\nthe suite took {time.monotonic() - started:.0f} s"
        + ("; some runs FAILED" if failed else "")
    )
    return 1 if failed else 0
