"""How a fleet of processes shares one rate limit: delivery, the limit tracked, 429s and waves.

    python benchmarks/bench_fleet.py                      # 4 processes x 5,000 records, 20 req/s
    python benchmarks/bench_fleet.py --processes 8 --records 2000 --rate-limit 10 --json
    python benchmarks/bench_fleet.py --pythonpath /tmp/old  # the clients run an older library

The stand-in (``FakeHumanloop`` with ``set_rate_limit``) runs in a process of its own, so it never
shares a GIL with a client; it always comes from this checkout. Each of ``--processes`` client
processes builds a ``FeedbackHandler`` with the library's defaults (only ``api_key``, ``base_url``
and whatever ``--flush-interval``/``--setting`` add), waits until every client is ready, then logs
``--records`` feedback records with the data ids ``p<process>-<n>``, as fast as it can (or at
``--offered-rate`` records/s), then calls ``flush(timeout)`` and ``close()`` and reports its
``stats()``. The clients import ``humanloop_logging`` from ``--pythonpath DIR`` when it is given
(say an older version from ``git archive``), else the installed one; they use only the public
API, so any version runs. ``run(...)`` does the same for another script and returns the dict that
``--json`` prints.

What is measured, from the stand-in's record of every request and the clients' reports:

- delivery: every data id logged arrived once (``complete``), else how many are ``missing`` and
  how many arrived twice (``duplicates``);
- the limit tracked: ``accepted_per_second`` (requests answered 200 per second, from the first
  arrival to the last accepted one) against ``limit_per_second``, and ``limit_use``: accepted
  requests over what the bucket could let through in that time (``burst + rate * seconds``), 1.0
  when the fleet used every token the limit offered;
- ``rate_limited`` requests and their share of all requests, ``records_per_second`` delivered
  (from the start signal to the last accepted request) and ``wall_seconds`` (from the start signal
  until every client has closed its handler and exited);
- waves: the arrivals counted per 100 ms bucket over the run, for all requests (``arrivals``),
  the ones answered 429 (``refused``) and the ``resends`` (requests carrying a data id an earlier
  request carried: the retries, told apart by content whatever the batching), each as ``peak``,
  ``mean``, ``cv`` (standard deviation over mean), ``dispersion`` (variance over mean) and
  ``empty_share`` (buckets with no arrival).

What a wave looks like in these numbers: independent clients retrying at independent moments
arrive like a Poisson stream, whose dispersion is about 1 and whose CV is about 1/sqrt(mean);
requests paced evenly have a dispersion below 1. A fleet turned away together that comes back
together (four processes refused in the same millisecond, each then waiting exactly the same
``Retry-After: 1``) piles its arrivals into a few buckets with empty ones between: a peak many
times the mean, a CV well above 1, a dispersion well above 1 and a large empty share. The
``resends`` series shows this for the retries alone, and ``timeline`` (accepted and refused
requests per second) shows the rhythm.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Optional, Union

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "hl-fleet-key"
#: The hidden first arguments that make this script one of the run's processes.
CLIENT_ROLE = "_client"
STAND_IN_ROLE = "_stand-in"


def run(
    *,
    processes: int = 4,
    records: int = 5000,
    rate_limit: float = 20.0,
    burst: Optional[int] = None,
    retry_after: Optional[str] = "integer",
    offered_rate: Optional[float] = None,
    flush_interval: Optional[float] = None,
    settings: Optional[Mapping[str, Any]] = None,
    latency: float = 0.0,
    flush_timeout: float = 180.0,
    pythonpath: Union[str, os.PathLike[str], None] = None,
    bucket_seconds: float = 0.1,
) -> dict[str, Any]:
    """Run the fleet against one rate-limited stand-in and return what was measured.

    ``retry_after`` is the stand-in's form of ``Retry-After`` (``"integer"``, ``"fractional"``
    or None); ``offered_rate`` paces each process (records/s; None: as fast as it can);
    ``settings`` are more ``FeedbackHandler`` keyword arguments; ``latency`` delays every answer
    of the stand-in (seconds); ``pythonpath`` is where the clients import ``humanloop_logging``
    from (None: the installed one).
    """
    if processes < 1 or records < 1:
        raise ValueError("processes and records must be at least 1")
    if not rate_limit > 0:
        raise ValueError("rate_limit must be > 0: the fleet is measured against a limit")
    path = None if pythonpath is None else os.path.abspath(os.fspath(pythonpath))
    handler_settings = dict(settings or {})
    if flush_interval is not None:
        handler_settings["flush_interval"] = flush_interval
    config: dict[str, Any] = {
        "processes": processes,
        "records": records,
        "rate_limit": rate_limit,
        "burst": burst,
        "retry_after": retry_after,
        "offered_rate": offered_rate,
        "settings": handler_settings,
        "latency": latency,
        "flush_timeout": flush_timeout,
        "pythonpath": path,
        "bucket_seconds": bucket_seconds,
    }
    started: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="hl-fleet-") as scratch:
        try:
            stand_in = _spawn(
                STAND_IN_ROLE,
                {
                    "rate_limit": rate_limit,
                    "burst": burst,
                    "retry_after": retry_after,
                    "latency": latency,
                },
                env=_env(str(ROOT) if (ROOT / "humanloop_logging").is_dir() else None),
                cwd=scratch,
                stderr=None,
            )
            started.append(stand_in)
            ready = _read_json_line(stand_in, "the stand-in")
            clients: list[tuple[subprocess.Popen[str], IO[bytes]]] = []
            for index in range(processes):
                stderr = tempfile.TemporaryFile(dir=scratch)  # noqa: SIM115 (closed below)
                client = _spawn(
                    CLIENT_ROLE,
                    {
                        "index": index,
                        "records": records,
                        "base_url": ready["base_url"],
                        "settings": handler_settings,
                        "offered_rate": offered_rate,
                        "flush_timeout": flush_timeout,
                    },
                    env=_env(path),
                    cwd=scratch,
                    stderr=stderr,
                )
                started.append(client)
                clients.append((client, stderr))
            libraries = [_read_json_line(client, "a client", errors) for client, errors in clients]
            _check_imported_from(path, libraries)
            go = time.time()
            for client, _ in clients:
                assert client.stdin is not None
                client.stdin.write("go\n")
                client.stdin.flush()
            reports = []
            for client, errors in clients:
                reports.append(_read_json_line(client, "a client", errors, flush_timeout + 120))
                client.wait(60)
                errors.seek(0)
                reports[-1]["stderr"] = errors.read().decode("utf-8", "replace").splitlines()
                errors.close()
            done = time.time()
            seen = _stop_stand_in(stand_in)
        finally:
            for process in started:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    return _analyse(
        config, ready=ready, libraries=libraries, reports=reports, seen=seen, go=go, done=done
    )


# -- the processes -------------------------------------------------------------------------------


def _spawn(
    role: str, config: Mapping[str, Any], *, env: dict[str, str], cwd: str, stderr: Any
) -> subprocess.Popen[str]:
    """This script in a new interpreter as one of the run's processes."""
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), role, json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
        cwd=cwd,
    )


def _env(pythonpath: Optional[str]) -> dict[str, str]:
    """The environment of a child: ``pythonpath`` first, and no HUMANLOOP_* settings, so the
    library runs on its defaults."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HUMANLOOP_")}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    return env


def _check_imported_from(path: Optional[str], libraries: Sequence[Mapping[str, Any]]) -> None:
    """Every client imported ``humanloop_logging`` from ``path`` (when given), not another copy."""
    if path is None:
        return
    for library in libraries:
        module = os.path.abspath(library["module"])
        if os.path.commonpath([module, path]) != path:
            raise RuntimeError(f"a client imported humanloop_logging from {module}, not {path}")


def _read_json_line(
    process: subprocess.Popen[str],
    who: str,
    errors: Optional[IO[bytes]] = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """The next line of a child's stdout as JSON; a RuntimeError with its stderr if it died."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if line:
        result: dict[str, Any] = json.loads(line)
        return result
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
    detail = ""
    if errors is not None:
        errors.seek(0)
        detail = errors.read().decode("utf-8", "replace")[-4000:]
    raise RuntimeError(f"{who} ended without a report (exit {process.returncode}):\n{detail}")


def _stop_stand_in(stand_in: subprocess.Popen[str]) -> dict[str, Any]:
    """Close the stand-in's stdin, which stops it, and read what it saw."""
    out, _ = stand_in.communicate(timeout=120)
    seen: dict[str, Any] = json.loads(out)
    return seen


def _stand_in_main(config: Mapping[str, Any]) -> int:
    """The stand-in process: serve until stdin closes, then print every request it saw."""
    from humanloop_logging import testing

    fake = testing.FakeHumanloop(api_key=API_KEY, validator="stdlib")
    fake.set_rate_limit(
        config["rate_limit"], burst=config["burst"], retry_after=config["retry_after"]
    )
    if config["latency"]:
        fake.set_latency(config["latency"])
    rate_limit = fake.rate_limit
    assert rate_limit is not None
    with fake:
        line = {"base_url": fake.base_url, "burst": rate_limit[1], "module": testing.__file__}
        print(json.dumps(line), flush=True)
        sys.stdin.read()  # until the runner closes it
    carried: set[str] = set()
    requests = []
    for request in fake.requests:  # in arrival order
        ids = _data_ids(request.body)
        resend = not carried.isdisjoint(ids)
        carried.update(ids)
        requests.append([request.time, request.status, request.item_count, resend])
    received = [item.get("data_id") for item in fake.received]
    json.dump({"requests": requests, "received": received}, sys.stdout)
    return 0


def _data_ids(body: bytes) -> list[str]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return [hashlib.sha1(body).hexdigest()]
    items = parsed if isinstance(parsed, list) else [parsed]
    return [str(item.get("data_id")) for item in items if isinstance(item, dict)]


def _client_main(config: Mapping[str, Any]) -> int:
    """A client process: log the records when told to, flush, close, print the stats."""
    import logging

    import humanloop_logging
    from humanloop_logging import FeedbackHandler

    index: int = config["index"]
    handler = FeedbackHandler(api_key=API_KEY, base_url=config["base_url"], **config["settings"])
    logger = logging.getLogger("bench.fleet")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    library = {"module": humanloop_logging.__file__, "version": humanloop_logging.__version__}
    print(json.dumps(library), flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    rate: Optional[float] = config["offered_rate"]
    started = time.time()
    for n in range(config["records"]):
        if rate:
            ahead = started + n / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
        logger.info(
            "feedback", extra={"data_id": f"p{index}-{n}", "type": "rating", "value": "good"}
        )
    logged = time.time()
    flushed = handler.flush(config["flush_timeout"])
    drained = time.time()
    handler.close()
    closed = time.time()
    stats = handler.stats() if hasattr(handler, "stats") else handler.shipper.stats()
    report = {
        "index": index,
        "log_seconds": logged - started,
        "flush_seconds": drained - logged,
        "close_seconds": closed - drained,
        "flushed": flushed,
        "stats": _as_dict(stats),
    }
    print(json.dumps(report), flush=True)
    return 0


def _as_dict(stats: Any) -> dict[str, Any]:
    """The counters of any version's stats object (a dataclass or a named tuple)."""
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    result: dict[str, Any] = stats._asdict()
    return result


# -- the numbers ---------------------------------------------------------------------------------


def _analyse(
    config: Mapping[str, Any],
    *,
    ready: Mapping[str, Any],
    libraries: Sequence[Mapping[str, Any]],
    reports: Sequence[dict[str, Any]],
    seen: Mapping[str, Any],
    go: float,
    done: float,
) -> dict[str, Any]:
    requests: list[list[Any]] = seen["requests"]
    received: list[Optional[str]] = seen["received"]
    expected = {f"p{i}-{n}" for i in range(config["processes"]) for n in range(config["records"])}
    arrived = set(received)
    statuses = Counter(int(status) for _, status, _, _ in requests)
    accepted_times = [t for t, status, _, _ in requests if status == 200]
    rate: float = config["rate_limit"]
    burst: int = ready["burst"]
    first = min((t for t, _, _, _ in requests), default=go)
    last = max((t for t, _, _, _ in requests), default=go)
    last_accepted = max(accepted_times, default=first)
    accepting = max(last_accepted - first, 1e-9)
    width: float = config["bucket_seconds"]
    buckets = max(1, math.ceil((last - first) / width + 1e-9))

    def series(times: Sequence[float]) -> dict[str, Any]:
        return _bucket_stats(times, first, width, buckets)

    total = len(requests)
    client_stats: Counter[str] = Counter()
    for report in reports:
        client_stats.update(
            {
                name: value
                for name, value in report["stats"].items()
                if isinstance(value, int) and not isinstance(value, bool)
            }
        )
    delivered = len(arrived & expected)
    return {
        "config": dict(config),
        "library": dict(libraries[0]) if libraries else {},
        "stand_in": ready["module"],
        "logged": len(expected),
        "delivered": delivered,
        "duplicates": len(received) - len(arrived),
        "missing": len(expected - arrived),
        "unexpected": len(arrived - expected),
        "complete": arrived == expected and len(received) == len(arrived),
        "requests": total,
        "accepted_requests": statuses[200],
        "rate_limited": statuses[429],
        "rate_limited_share": statuses[429] / total if total else 0.0,
        "other_statuses": {str(s): n for s, n in sorted(statuses.items()) if s not in (200, 429)},
        "resends": sum(1 for *_, resend in requests if resend),
        "limit_per_second": rate,
        "burst": burst,
        "accepted_per_second": statuses[200] / accepting,
        "accepted_over_limit": statuses[200] / accepting / rate,
        "limit_use": statuses[200] / (burst + rate * accepting),
        "records_per_second": delivered / max(last_accepted - go, 1e-9),
        "delivery_seconds": last_accepted - go,
        "wall_seconds": done - go,
        "waves": {
            "bucket_seconds": width,
            "arrivals": series([t for t, *_ in requests]),
            "refused": series([t for t, status, _, _ in requests if status == 429]),
            "resends": series([t for t, *_, resend in requests if resend]),
            "accepted": series(accepted_times),
        },
        "timeline": {
            "accepted": _per_second(accepted_times, first, last),
            "refused": _per_second([t for t, s, _, _ in requests if s == 429], first, last),
        },
        "client_stats": dict(client_stats),
        "clients": [
            {key: value for key, value in report.items() if key != "stderr"} for report in reports
        ],
        "client_stderr_lines": sum(len(report["stderr"]) for report in reports),
        "client_stderr": sorted({line for report in reports for line in report["stderr"]})[:5],
    }


def _bucket_stats(
    times: Sequence[float], start: float, width: float, buckets: int
) -> dict[str, Any]:
    """Arrivals per bucket of ``width`` seconds from ``start``: peak, mean, CV, dispersion."""
    counts = [0] * buckets
    for t in times:
        counts[min(buckets - 1, max(0, int((t - start) / width)))] += 1
    mean = statistics.fmean(counts)
    variance = statistics.pvariance(counts, mean)
    return {
        "count": len(times),
        "peak": max(counts),
        "mean": mean,
        "peak_over_mean": max(counts) / mean if mean else 0.0,
        "cv": math.sqrt(variance) / mean if mean else 0.0,
        "dispersion": variance / mean if mean else 0.0,
        "empty_share": counts.count(0) / buckets,
    }


def _per_second(times: Sequence[float], start: float, end: float) -> list[int]:
    counts = [0] * (int(end - start) + 1)
    for t in times:
        counts[min(len(counts) - 1, int(t - start))] += 1
    return counts


# -- the command line ----------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == [CLIENT_ROLE]:
        return _client_main(json.loads(arguments[1]))
    if arguments[:1] == [STAND_IN_ROLE]:
        return _stand_in_main(json.loads(arguments[1]))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=4, help="client processes (4)")
    parser.add_argument("--records", type=int, default=5000, help="records per process (5000)")
    parser.add_argument("--rate-limit", type=float, default=20.0, help="requests/s (20)")
    parser.add_argument("--burst", type=int, default=None, help="(one second's worth)")
    parser.add_argument(
        "--retry-after",
        choices=["integer", "fractional", "none"],
        default="integer",
        help="the stand-in's Retry-After: whole seconds, to the millisecond, or none (integer)",
    )
    parser.add_argument(
        "--offered-rate", type=float, default=None, help="records/s per process (as fast as it can)"
    )
    parser.add_argument("--flush-interval", type=float, default=None, help="(library default)")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="another FeedbackHandler keyword, e.g. --setting batch_size=50 (repeatable)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer (0)")
    parser.add_argument("--flush-timeout", type=float, default=180.0, help="seconds (180)")
    parser.add_argument(
        "--pythonpath",
        metavar="DIR",
        default=None,
        help="import humanloop_logging in the clients from DIR (default: the installed one)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(arguments)
    settings = {}
    for setting in args.setting:
        name, _, value = setting.partition("=")
        settings[name] = json.loads(value)
    result = run(
        processes=args.processes,
        records=args.records,
        rate_limit=args.rate_limit,
        burst=args.burst,
        retry_after=None if args.retry_after == "none" else args.retry_after,
        offered_rate=args.offered_rate,
        flush_interval=args.flush_interval,
        settings=settings,
        latency=args.latency,
        flush_timeout=args.flush_timeout,
        pythonpath=args.pythonpath,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_summary(result)
    return 0 if result["complete"] else 1


def _print_summary(result: Mapping[str, Any]) -> None:
    config = result["config"]
    library = result["library"]
    print(
        f"{config['processes']} processes x {config['records']} records, humanloop-logging "
        f"{library.get('version')} from {library.get('module')}"
    )
    print(
        f"limit {result['limit_per_second']:g} req/s, burst {result['burst']}, Retry-After "
        f"{config['retry_after']}"
    )
    verdict = "all, once each" if result["complete"] else "INCOMPLETE"
    print(
        f"delivered {result['delivered']}/{result['logged']} ({verdict}; missing "
        f"{result['missing']}, duplicates {result['duplicates']})"
    )
    print(
        f"requests {result['requests']}: {result['accepted_requests']} accepted, "
        f"{result['rate_limited']} answered 429 ({result['rate_limited_share']:.1%}), other "
        f"{result['other_statuses'] or 'none'}; {result['resends']} resends"
    )
    print(
        f"accepted {result['accepted_per_second']:.2f} req/s = "
        f"{result['accepted_over_limit']:.2f}x the limit; limit use {result['limit_use']:.2f}"
    )
    print(
        f"{result['records_per_second']:.0f} records/s; delivered in "
        f"{result['delivery_seconds']:.2f} s, wall {result['wall_seconds']:.2f} s"
    )
    waves = result["waves"]
    print(
        f"per {waves['bucket_seconds'] * 1000:.0f} ms:  count  peak   mean  peak/mean   cv  "
        "dispersion  empty"
    )
    for name in ("arrivals", "accepted", "refused", "resends"):
        s = waves[name]
        print(
            f"  {name:<10} {s['count']:>6} {s['peak']:>5} {s['mean']:>6.2f} "
            f"{s['peak_over_mean']:>9.1f} {s['cv']:>5.2f} {s['dispersion']:>10.2f} "
            f"{s['empty_share']:>6.0%}"
        )
    print(f"accepted per second: {' '.join(map(str, result['timeline']['accepted']))}")
    print(f"refused per second:  {' '.join(map(str, result['timeline']['refused']))}")
    stats = result["client_stats"]
    print(f"client stats (summed): {json.dumps(stats, sort_keys=True)}")
    if result["client_stderr_lines"]:
        print(f"client stderr: {result['client_stderr_lines']} lines, the first:")
        print(f"  {result['client_stderr'][0]}")


if __name__ == "__main__":
    raise SystemExit(main())
