"""What the suite's results look like to a reader: Markdown tables (printed, and written into the
documentation's performance page, docs/performance.md, between its ``<!-- bench:start -->`` and
``<!-- bench:end -->`` markers) and PNG plots.

Everything here works from the results JSON alone, so ``python -m benchmarks --render`` can
regenerate the page's block and the plots without measuring anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

__all__ = ["BEGIN", "END", "markdown", "text", "update_page", "write"]

BEGIN = "<!-- bench:start -->"
END = "<!-- bench:end -->"

CALLER_LABELS = {
    "null": "`NullHandler` (the floor)",
    "simplequeue": "a handler whose `emit` only does `SimpleQueue.put`",
    "dictlookup": "a handler whose `handle` only looks for `data_id`",
    "queuehandler": "stdlib `QueueHandler` + `QueueListener`",
    "otel": "OpenTelemetry `LoggingHandler` + `BatchLogRecordProcessor`",
    "feedback": "`FeedbackHandler`",
}
PLOTS = {
    "caller": "bench-caller.png",
    "e2e": "bench-e2e.png",
    "roundtrips": "bench-roundtrips.png",
    "memory": "bench-memory.png",
    "exit": "bench-exit.png",
    "fleet": "bench-fleet.png",
}


TIMES = "\u00d7"


def _x(value: Optional[float], digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}{TIMES}"


def _num(value: Optional[float], digits: int = 2, unit: str = "") -> str:
    return "" if value is None else f"{value:,.{digits}f}{unit}"


def _rounds(count: int) -> str:
    return "1 round" if count == 1 else f"{count} rounds"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _versions(data: Mapping[str, Any]) -> dict[str, str]:
    return {v["key"]: v["label"] for v in data.get("meta", {}).get("versions", [])}


def _failures(data: Mapping[str, Any]) -> list[str]:
    failures = list(data.get("failures") or [])
    if not failures:
        return []
    return ["", f"**{len(failures)} run(s) failed** and are left out of the figures:", ""] + [
        f"- {line}" for line in failures[:10]
    ]


# --- sections -------------------------------------------------------------------------------------


def _caller(data: Mapping[str, Any]) -> list[str]:
    versions = _versions(data)
    null_ns = data.get("null_ns", {}).get("current")
    lines = [
        "**The caller's thread**: what one log call costs, relative to the same call through a "
        f"`NullHandler` ({null_ns:,.0f} ns here) and to a handler that only puts the record on a "
        f"`SimpleQueue`; median of per-round ratios over {_rounds(data['rounds'])} of "
        f"{data['calls_per_measure']:,} calls. `FeedbackHandler` sends to the sink meanwhile.",
        "",
    ]
    body = []
    for row in data["rows"]:
        label = CALLER_LABELS[row["config"]]
        if row["config"] == "feedback":
            label = (
                f"**{label}** ({row['label']})"
                if row["version"] == "current"
                else (f"{label} ({row['label']})")
            )
        body.append(
            [
                label,
                _x(row.get("tagged_vs_null")),
                _x(row.get("tagged_vs_simplequeue")),
                _x(row.get("untagged_vs_null")),
                _x(row.get("untagged_vs_simplequeue")),
            ]
        )
    header = [
        "handler",
        "tagged, vs `NullHandler`",
        "tagged, vs `SimpleQueue.put`",
        "untagged, vs `NullHandler`",
        "untagged, vs `SimpleQueue.put`",
    ]
    lines += _table(header, body)
    versus = data.get("current_vs_baseline")
    if versus and "baseline" in versions:
        lines += [
            "",
            f"`FeedbackHandler`, {versions['current']} vs {versions['baseline']} (each relative "
            f"to its own process's `NullHandler`): tagged {_x(versus['tagged'], 3)}, untagged "
            f"{_x(versus['untagged'], 3)}.",
        ]
    lines += _loguru(data.get("loguru"))
    delivered = data.get("delivered")
    if delivered:
        through = (
            "`FeedbackHandler` and `FeedbackSink`" if data.get("loguru") else "`FeedbackHandler`"
        )
        lines += [
            "",
            f"Tagged records logged through {through} in the run: {delivered['logged']:,}; "
            f"received by the sink: {delivered['received']:,}.",
        ]
    return lines


LOGURU_LABELS = {
    "loguru_feedback": "`FeedbackSink`, vs loguru's no-op sink",
    "feedback": "`FeedbackHandler`, vs `NullHandler`",
}


def _loguru(data: Optional[Mapping[str, Any]]) -> list[str]:
    """The loguru rows of the caller section: each adapter against its own library's floor."""
    if not data:
        return []
    lines = [
        "",
        '**loguru**: the same calls through loguru (`logger.info("feedback", data_id=..., '
        'type=..., value=...)`; untagged `logger.info("handled in {} ms", 12)`), loguru\'s '
        "default format. `FeedbackSink` (sharing the handler's shipper) relative to loguru's no-op "
        "sink, `logger.add(lambda m: None)`, beside `FeedbackHandler` relative to `NullHandler`; "
        "medians of per-round ratios, and ns per call. loguru's tagged calls are timed after the "
        "stdlib handlers' and an untimed flush, so the sink's records never weigh on the "
        "handler's calls; the sink's own calls are timed while it sends, as the handler's are.",
        "",
    ]
    body = [
        [
            LOGURU_LABELS[row["config"]],
            _x(row.get("tagged_vs_floor")),
            _x(row.get("untagged_vs_floor")),
            f"{_num(row.get('tagged_ns'), 0)} / {_num(row.get('tagged_floor_ns'), 0)}",
            f"{_num(row.get('untagged_ns'), 0)} / {_num(row.get('untagged_floor_ns'), 0)}",
        ]
        for row in data["rows"]
    ]
    header = ["adapter", "tagged", "untagged", "tagged, ns (vs floor)", "untagged, ns (vs floor)"]
    return lines + _table(header, body)


def _e2e(data: Mapping[str, Any]) -> list[str]:
    sdk = data.get("sdk") or {}
    lines = [
        f"**End to end**: {data['n']:,} records, from the first log call to `flush()` done, "
        "against the sink (no delay) in its own process; wall time and this process's CPU time "
        f"(all its threads), medians over {_rounds(data['rounds'])}. The floor is the same log calls "
        "through a `NullHandler`, then plain `requests` posting JSON arrays of B items, built inside its clock, "
        "on one `Session`, one after the other. *Share of the floor's speed* is floor wall / wall "
        "(goal ≥ 0.9); *CPU vs floor* is CPU / floor CPU (goal ≤ 1.3); both medians of per-round "
        "ratios. `FeedbackHandler` runs with `batch_size=B` and `max_queue_size` = n (so that the "
        "burst fits), everything else default.",
        "",
    ]
    body = []
    for row in data["rows"]:
        name = row["name"]
        if row["kind"] == "floor":
            name = f"floor (`NullHandler` + `requests`, B={row['batch_size']})"
        elif row["kind"] == "feedback":
            label = name.split("[", 1)[1].rstrip("]")
            bold = "**" if row.get("version") == "current" else ""
            name = f"{bold}`FeedbackHandler`{bold} B={row['batch_size']} ({label})"
        elif row["batch_size"] == 1:
            name = f"SDK {sdk.get('humanloop', '')} `feedback()` once per record (vs floor B={row['floor_batch_size']})"
        else:
            name = f"SDK {sdk.get('humanloop', '')} `feedback(body=[...])`, B={row['batch_size']}"
        body.append(
            [
                name,
                _num(row["wall_s"], 3, " s"),
                _num(row["cpu_s"], 3, " s"),
                _x(row["share_of_floor_speed"]),
                _x(row["cpu_vs_floor"]),
                _num(row["requests"], 0),
                f"{row['rounds_ok']}/{row['rounds_planned']}",
            ]
        )
    header = ["configuration", "wall", "CPU", "share of floor's speed", "CPU vs floor"]
    lines += _table([*header, "requests", "rounds"], body)
    if sdk.get("error"):
        lines += ["", f"The SDK was left out of this run: {sdk['error']}"]
    elif sdk:
        lines += [
            "",
            f"The SDK ({sdk.get('humanloop')}, in a virtualenv of its own with urllib3 "
            f"{sdk.get('urllib3')}: it requires {', '.join(_short_requires(sdk.get('requires')))}) "
            "is pointed at the sink with `Humanloop(api_key=..., host=base_url)`.",
        ]
    return lines


def _short_requires(requires: Optional[Sequence[str]]) -> list[str]:
    wanted = ("urllib3", "pydantic", "aiohttp", "frozendict")
    return [f"`{r.replace(' ', '')}`" for r in requires or () if r.split()[0].lower() in wanted]


def _roundtrips(data: Mapping[str, Any]) -> list[str]:
    versions = _versions(data)
    keys = list(versions)
    lines = [
        f"**Round trips**: records/s delivered for a burst of {data['n']:,} records with default "
        "settings (only `max_queue_size` raised to hold the burst), from the first log call to "
        "`flush()` done, when every request takes the given time at the sink; median over "
        f"{_rounds(data['rounds'])}. Goal with the concurrent sender: ≥ 8,000 records/s at 50 ms.",
        "",
    ]
    header = ["time per request"]
    header += [f"{versions[k]}: records/s" for k in keys]
    header += [f"{versions[k]}: requests, most in flight" for k in keys]
    by_delay: dict[float, dict[str, Mapping[str, Any]]] = {}
    for row in data["rows"]:
        by_delay.setdefault(row["delay_ms"], {})[row["version"]] = row
    body = []
    versus = data.get("current_vs_baseline") or {}
    for delay, rows in by_delay.items():
        cells = [f"{delay:g} ms"]
        cells += [_num(rows[k]["records_per_s"], 0) if k in rows else "" for k in keys]
        cells += [
            f"{_num(rows[k]['requests'], 0)}, {rows[k]['in_flight_max']}" if k in rows else ""
            for k in keys
        ]
        body.append(cells)
    if versus:
        header.append(f"{versions.get('current')} vs {versions.get('baseline')}")
        for cells, delay in zip(body, by_delay):
            cells.append(_x(versus.get(f"{delay:g}")))
    lines += _table(header, body)
    return lines


#: The figures of ``bench_fleet.run()`` shown, in order, with what they are called here.
FLEET_FIGURES = [
    ("delivered", "records delivered"),
    ("logged", "records logged"),
    ("duplicates", "delivered twice"),
    ("requests", "requests"),
    ("rate_limited_share", "share answered 429"),
    ("limit_per_second", "the limit (requests/s)"),
    ("accepted_per_second", "accepted requests/s"),
    ("accepted_over_limit", "accepted / limit"),
    ("limit_use", "limit use (accepted / what the bucket allowed)"),
    ("records_per_second", "records/s delivered"),
    ("delivery_seconds", "seconds to deliver"),
    ("waves.arrivals.cv", "arrivals per 100 ms: CV"),
    ("waves.arrivals.dispersion", "arrivals per 100 ms: dispersion"),
    ("waves.arrivals.peak_over_mean", "arrivals per 100 ms: peak / mean"),
    ("waves.resends.dispersion", "resends per 100 ms: dispersion"),
]


def _lookup(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _fleet(data: Mapping[str, Any]) -> list[str]:
    if data.get("missing"):
        return [f"**Fleet**: not measured: {data['missing']}."]
    versions = _versions(data)
    results = data.get("results") or {}
    keys = [k for k in versions if k in results]
    if not keys:
        return ["**Fleet**: no results."]
    config = results[keys[0]].get("config", {})
    lines = [
        f"**A fleet behind one rate limit** (`benchmarks/bench_fleet.py`): "
        f"{config.get('processes', '?')} processes log {config.get('records', 0):,} records each "
        + (
            f"at {config['offered_rate']:,.0f} records/s"
            if config.get("offered_rate")
            else "as fast as they can"
        )
        + ", with default settings, against the stand-in limited to "
        f"{config.get('rate_limit', '?')} requests/s (a token bucket answering 429 with "
        f"`Retry-After`).",
        "",
    ]

    def cell(value: Any) -> str:
        if isinstance(value, bool) or value is None:
            return "" if value is None else str(value)
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    body = [
        [label, *(cell(_lookup(results[k], name)) for k in keys)]
        for name, label in FLEET_FIGURES
        if any(_lookup(results[k], name) is not None for k in keys)
    ]
    lines += _table(["", *(versions[k] for k in keys)], body)
    return lines


def _memory(data: Mapping[str, Any]) -> list[str]:
    runs = [run for run in data["runs"] if "rss_final_mib" in run]
    window = runs[0]["late_window_s"] if runs else [0, 0]
    lines = [
        f"**Memory during an outage**: a process logs {data['rate']:,.0f} records/s for "
        f"{data['duration_s']:g} s while nothing listens on the service's port. The queue holds "
        f"at most `max_queue_size` = {data['max_queue_size']:,} records (the default); holding "
        f"that many captured records takes {data['queue_reference_mib']:.1f} MiB. With a spool, "
        f"`max_spool_bytes` = {data['max_spool_bytes'] / 2**20:g} MiB bounds the database file; "
        "its write-ahead log comes on top until SQLite checkpoints it. *Late growth* is how much "
        f"RSS grew from {window[0]:g} s to the end, long after the queue was full, next to what "
        "keeping every record logged meanwhile would take: a queue that grows with the outage "
        "would show 100%; bounded is under 25%.",
        "",
    ]
    body = []
    for run in runs:
        stats = run.get("stats", {})
        spool = ""
        if run["mode"] == "spool":
            db = (run.get("spool_db_max_bytes") or 0) / 2**20
            wal = (run.get("spool_wal_max_bytes") or 0) / 2**20
            spool = f"{db:.1f} + {wal:.1f} MiB"
        share = run.get("late_growth_share")
        body.append(
            [
                f"{run['label']}, {'spool' if run['mode'] == 'spool' else 'queue only'}",
                _num(run["rss_start_mib"], 1, " MiB"),
                _num(run["rss_peak_mib"], 1, " MiB"),
                _num(run["rss_final_mib"], 1, " MiB"),
                _num(run["late_growth_mib"], 2, " MiB")
                + (
                    ""
                    if share is None
                    else f" ({share:.0%} of {run['unbounded_growth_mib']:.1f} MiB)"
                ),
                f"{run['logged']:,}",
                f"{stats.get('pending', 0):,} ({stats.get('spooled', 0):,} on disk)",
                f"{stats.get('dropped', 0):,}",
                spool,
                "yes" if run.get("bounded") else "**no**",
            ]
        )
    header = ["version, mode", "RSS at start", "peak", "end", "late growth", "logged", "pending"]
    lines += _table([*header, "dropped", "spool file + WAL, most", "bounded"], body)
    return lines


def _exit(data: Mapping[str, Any]) -> list[str]:
    versions = _versions(data)
    keys = list(versions)
    lines = [
        "**Exit**: a process logs n records as fast as it can (`flush_interval` = 1 h, so only "
        "full batches leave while it logs; `max_queue_size` at least n), then returns from "
        "`main`: how long until it has exited, how many records were still pending then, and "
        "how many reached the sink. Everything else default: `exit_timeout` = "
        f"{data['exit_timeout_s']:g} s.",
        "",
    ]
    header = ["n", "service"]
    for key in keys:
        header += [f"{versions[key]}: exit", "pending at exit", "delivered"]
    grouped: dict[tuple[int, str], dict[str, Mapping[str, Any]]] = {}
    for row in data["rows"]:
        grouped.setdefault((row["n"], row["target"]), {})[row["version"]] = row
    body = []
    for (n, target), rows in grouped.items():
        cells = [f"{n:,}", target]
        for key in keys:
            row = rows.get(key)
            if row is None or row["exit_s"] is None:
                cells += ["", "", ""]
                continue
            cells += [
                _num(row["exit_s"], 2, " s"),
                f"{row['pending_at_exit']:,.0f}",
                f"{row['delivered']:,.0f}",
            ]
        body.append(cells)
    lines += _table(header, body)
    return lines


def _validate(data: Mapping[str, Any]) -> list[str]:
    lines = [
        "**The flush thread's work per record**: validating a record and writing it into the "
        f"request body, alone on one thread, {data['n']:,} records in batches of "
        f"{data['batch_size']}; the best of 5 passes, median over {_rounds(data['rounds'])}. "
        "This is CPU the application shares its GIL with.",
        "",
    ]
    body = []
    for row in data["rows"]:
        how = (
            "a batch at once, its JSON written directly"
            if row["batch_api"]
            else "one record at a time (`to_payload`), then joined"
        )
        bold = "**" if row["version"] == "current" else ""
        body.append(
            [
                f"{bold}{row['label']}{bold}",
                how,
                _num(row["us_per_record"], 2, " µs"),
                "" if row["version"] == "current" else _x(row["current_vs_this"]),
                f"{row['rounds_ok']}/{data['rounds']}",
            ]
        )
    header = ["version", "how", "per record", "working tree vs this", "rounds"]
    return lines + _table(header, body)


def _send(data: Mapping[str, Any]) -> list[str]:
    runs = data["runs"]
    growth = data.get("rss_growth")
    lines = [
        "**`humanloop-logging send`, backfilling a file**: structlog JSON lines, one in ten "
        "feedback, sent to the lean sink. The floor is a process that only runs `json.loads` on "
        "every line of the same file, in the same run; both are timed as whole processes. Goal: "
        f"at least {data['goal']:g}x the floor's line rate."
        + (
            f" Peak RSS of the largest file is {growth:.2f}x that of the smallest."
            if growth
            else ""
        ),
        "",
    ]
    body = [
        [
            f"{run['lines']:,}",
            f"{run['records']:,}",
            _num(run["floor_lines_per_s"], 0, " lines/s"),
            _num(run["send_lines_per_s"], 0, " lines/s"),
            _num(run["send_records_per_s"], 0, " records/s"),
            _x(run["ratio"]),
            _num(run["peak_rss_mib"], 1, " MiB"),
        ]
        for run in runs
    ]
    header = ["lines", "feedback", "floor (json.loads)", "send", "send", "vs floor", "peak RSS"]
    return lines + _table(header, body)


RENDERERS = {
    "caller": _caller,
    "validate": _validate,
    "e2e": _e2e,
    "roundtrips": _roundtrips,
    "fleet": _fleet,
    "memory": _memory,
    "exit": _exit,
    "send": _send,
}


def section_lines(name: str, data: Mapping[str, Any]) -> list[str]:
    if "error" in data and name != "fleet":
        return [f"**{name}**: the section failed: {data['error']}"]
    try:
        lines = RENDERERS[name](data)
    except (KeyError, TypeError, ValueError) as exc:
        lines = [f"**{name}**: cannot render these results ({type(exc).__name__}: {exc})"]
    return lines + _failures(data)


def text(name: str, data: Mapping[str, Any]) -> str:
    """A section's results as printed at the end of the section."""
    return "\n".join(section_lines(name, data))


def markdown(results: Mapping[str, Any], images: Mapping[str, str]) -> str:
    """The performance page's block: every section's table, its plot, and what run it came from."""
    meta = results.get("meta", {})
    sections = results.get("sections", {})
    git = meta.get("git", {})
    tree = f"the working tree at `{git.get('head', '?')}`"
    if git.get("library_changed_since_head"):
        tree += " with uncommitted changes to `humanloop_logging/`"
    baseline = meta.get("baseline")
    quick = any(s.get("meta", {}).get("quick") for s in sections.values())
    minutes = sum(s.get("meta", {}).get("seconds", 0) for s in sections.values()) / 60
    dates = sorted(s.get("meta", {}).get("date", "")[:10] for s in sections.values())
    when = dates[-1] if dates and dates[0] == dates[-1] else " to ".join(dates[:1] + dates[-1:])
    lines = [
        BEGIN,
        "<!-- Generated by `python -m benchmarks` from docs/bench-results.json: edit "
        "benchmarks/report.py, not this block. -->",
        "",
        f"Measured {when} on Python {meta.get('python', '?')}, {meta.get('cpus', '?')} cores, "
        f"{tree}"
        + (f", against `{baseline}` in the same run" if baseline else "")
        + f"; the sections took {minutes:.1f} minutes in all"
        + (" (a `--quick` smoke run: small sizes, few rounds)" if quick else "")
        + ".",
    ]
    for name in ("caller", "validate", "e2e", "roundtrips", "fleet", "memory", "exit", "send"):
        if name not in sections:
            continue
        lines += ["", *section_lines(name, sections[name])]
        if name in images:
            lines += ["", f"![{name}]({images[name]})"]
    lines += ["", END]
    return "\n".join(lines)


def update_page(page: Path, block: str) -> None:
    """Replace the page's block between the markers (a file that does not exist yet is the block
    alone; one without the markers is an error)."""
    if not page.exists():
        page.write_text(block + "\n")
        return
    content = page.read_text()
    start, end = content.find(BEGIN), content.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{page} has no {BEGIN} ... {END} block to replace")
    page.write_text(content[:start] + block + content[end + len(END) :])


def write(results: Mapping[str, Any], docs: Path, page: Path) -> list[Path]:
    """Plots into ``docs`` and the block into ``page``; returns what was written."""
    docs.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    images: dict[str, str] = {}
    try:
        from benchmarks import plots
    except ImportError as exc:  # matplotlib is in the bench extra only
        print(f"no plots: {exc}")
    else:
        for name, data in results.get("sections", {}).items():
            if name not in PLOTS or "error" in data:
                continue
            path = docs / PLOTS[name]
            try:
                drawn = plots.plot(name, data, path)
            except (KeyError, TypeError, ValueError) as exc:  # a table without its plot
                print(f"no plot for {name}: {type(exc).__name__}: {exc}")
                continue
            if drawn:
                written.append(path)
                images[name] = Path(os.path.relpath(path, page.parent)).as_posix()
    update_page(page, markdown(results, images))
    written.append(page)
    return written
