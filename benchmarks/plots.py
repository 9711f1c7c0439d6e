"""The suite's PNG plots (matplotlib, from the bench extra), one per section, from the results."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

__all__ = ["plot"]

COLOURS = {"current": "#1f77b4", "baseline": "#aaaaaa"}
PEER_COLOUR = "#ff7f0e"


def _labels(data: Mapping[str, Any]) -> dict[str, str]:
    return {v["key"]: v["label"] for v in data.get("meta", {}).get("versions", [])}


def _caller(data: Mapping[str, Any], ax: Any) -> None:
    names = {
        "null": "NullHandler",
        "simplequeue": "SimpleQueue.put",
        "dictlookup": "data_id lookup only",
        "queuehandler": "QueueHandler + Listener",
        "otel": "OpenTelemetry LoggingHandler",
        "feedback": "FeedbackHandler",
    }
    rows = list(data["rows"])
    labels = [
        names[r["config"]] + (f" ({r['label']})" if r["config"] == "feedback" else "") for r in rows
    ]
    ys = range(len(rows))
    height = 0.38
    tagged = [r.get("tagged_vs_null") or 0 for r in rows]
    untagged = [r.get("untagged_vs_null") or 0 for r in rows]
    ax.barh([y - height / 2 for y in ys], tagged, height, label="tagged call", color="#1f77b4")
    ax.barh([y + height / 2 for y in ys], untagged, height, label="untagged call", color="#9ecae1")
    ax.set_yticks(list(ys), labels)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("cost of one log call on the caller's thread, relative to NullHandler")
    ax.legend(loc="lower right")
    ax.set_title("Caller's thread")


def _e2e(data: Mapping[str, Any], axes: Any) -> None:
    rows = data["rows"]
    labels = []
    for row in rows:
        if row["kind"] == "floor":
            labels.append(f"floor B={row['batch_size']}")
        elif row["kind"] == "feedback":
            labels.append(
                f"FeedbackHandler B={row['batch_size']} ({row['name'].split('[')[1][:-1]})"
            )
        elif row["batch_size"] == 1:
            labels.append("SDK per record")
        else:
            labels.append(f"SDK arrays B={row['batch_size']}")
    colours = [
        COLOURS.get(row.get("version", ""), "#555555")
        if row["kind"] == "feedback"
        else ("#2ca02c" if row["kind"] == "floor" else PEER_COLOUR)
        for row in rows
    ]
    ys = list(range(len(rows)))
    share = [row["share_of_floor_speed"] or 0 for row in rows]
    cpu = [row["cpu_vs_floor"] or 0 for row in rows]
    axes[0].barh(ys, share, color=colours)
    axes[0].axvline(0.9, color="red", linestyle="--", linewidth=1, label="goal ≥ 0.9")
    axes[0].set_xlabel("share of the floor's speed (floor wall / wall)")
    axes[0].set_yticks(ys, labels)
    axes[0].invert_yaxis()
    axes[0].legend(loc="lower right")
    axes[1].barh(ys, cpu, color=colours)
    axes[1].axvline(1.3, color="red", linestyle="--", linewidth=1, label="goal ≤ 1.3")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("CPU time vs the floor's (log scale)")
    axes[1].set_yticks(ys, [""] * len(ys))
    axes[1].invert_yaxis()
    axes[1].legend(loc="lower right")
    axes[0].set_title(f"End to end, {data['n']:,} records")


def _roundtrips(data: Mapping[str, Any], ax: Any) -> None:
    labels = _labels(data)
    delays = sorted({row["delay_ms"] for row in data["rows"]})
    keys = list(labels)
    width = 0.8 / max(1, len(keys))
    for i, key in enumerate(keys):
        rates = {
            r["delay_ms"]: r["records_per_s"] or 0 for r in data["rows"] if r["version"] == key
        }
        xs = [j + (i - (len(keys) - 1) / 2) * width for j in range(len(delays))]
        bars = ax.bar(
            xs, [rates.get(d, 0) for d in delays], width, label=labels[key], color=COLOURS[key]
        )
        ax.bar_label(bars, fmt="{:,.0f}", fontsize="small")
    if 50.0 in delays:
        j = delays.index(50.0)
        ax.hlines(8000, j - 0.45, j + 0.45, colors="red", linestyles="--", label="goal at 50 ms")
    ax.set_xticks(range(len(delays)), [f"{d:g} ms" for d in delays])
    ax.set_xlabel("time the sink takes per request")
    ax.set_ylabel("records/s delivered")
    ax.set_title(f"Round trips: a burst of {data['n']:,}, default settings")
    ax.legend()


def _memory(data: Mapping[str, Any], axes: Any) -> None:
    for run in data["runs"]:
        points = run.get("rss_mib_over_time") or []
        if not points:
            continue
        style = "-" if run["mode"] == "queue" else "--"
        colour = COLOURS.get(run["version"], "#555555")
        label = f"{run['label']}, {'queue only' if run['mode'] == 'queue' else 'spool'}"
        axes[0].plot(
            [t for t, _ in points], [m for _, m in points], style, color=colour, label=label
        )
        if run["mode"] == "queue":
            bound = run["rss_start_mib"] + data["queue_reference_mib"]
            axes[0].axhline(bound, color=colour, linestyle="-.", linewidth=0.8)
        spool = run.get("spool_mib_over_time") or []
        if spool:
            times = [point[0] for point in spool]
            name = run["label"]
            axes[1].plot(times, [p[1] for p in spool], "-", color=colour, label=f"{name}: file")
            axes[1].plot(times, [p[2] for p in spool], ":", color=colour, label=f"{name}: WAL")
    axes[0].set_ylabel("RSS (MiB)")
    axes[0].set_ylim(bottom=0)
    axes[0].set_title(
        f"Service down, {data['rate']:,.0f} records/s; max_queue_size {data['max_queue_size']:,}"
        f"\ndash-dot: RSS at start + {data['queue_reference_mib']:.1f} MiB (a full queue's records)"
    )
    axes[0].legend(loc="lower right")
    axes[1].axhline(
        data["max_spool_bytes"] / 2**20, color="red", linestyle="--", label="max_spool_bytes"
    )
    axes[1].set_ylabel("spool on disk (MiB)")
    axes[1].set_xlabel("seconds into the outage")
    axes[1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize="small")


def _exit(data: Mapping[str, Any], ax: Any) -> None:
    labels = _labels(data)
    styles = {"sink, 0 ms": "o-", "sink, 50 ms": "s-", "service down": "^--"}
    for key, label in labels.items():
        for target, style in styles.items():
            rows = [r for r in data["rows"] if r["version"] == key and r["target"] == target]
            rows = [r for r in rows if r["exit_s"] is not None]
            if rows:
                ax.plot(
                    [r["n"] for r in rows],
                    [r["exit_s"] for r in rows],
                    style,
                    color=COLOURS.get(key, "#555555"),
                    label=f"{label}, {target}",
                )
    ax.axhline(data["exit_timeout_s"], color="red", linestyle=":", label="exit_timeout")
    ax.set_xscale("log")
    ax.set_xlabel("records logged just before the exit")
    ax.set_ylabel("time to exit (s)")
    ax.set_title("Exit with records queued")
    ax.legend(fontsize="small")


def _fleet(data: Mapping[str, Any], ax: Any) -> bool:
    labels = _labels(data)
    results = data.get("results") or {}
    drawn = False
    limit = None
    for key, result in results.items():
        timeline = result.get("timeline") or {}
        accepted, refused = timeline.get("accepted") or [], timeline.get("refused") or []
        colour = COLOURS.get(key, "#555555")
        if accepted:
            ax.plot(
                range(len(accepted)),
                accepted,
                "o-",
                markersize=3,
                color=colour,
                label=f"{labels.get(key, key)}: 200",
            )
            drawn = True
        if refused:
            ax.plot(
                range(len(refused)),
                refused,
                "x:",
                markersize=3,
                color=colour,
                label=f"{labels.get(key, key)}: 429",
            )
        limit = result.get("limit_per_second", limit)
    if limit:
        ax.axhline(limit, color="red", linestyle="--", linewidth=1, label="the limit")
    ax.set_xlabel("seconds from the first request")
    ax.set_ylabel("requests per second")
    ax.set_title("A fleet behind one rate limit")
    ax.legend(fontsize="small")
    return drawn


def plot(name: str, data: Mapping[str, Any], path: Path) -> bool:
    """Draw ``name``'s plot into ``path``; False if the section has none."""
    if name == "caller":
        fig, ax = plt.subplots(figsize=(9, 4.5))
        _caller(data, ax)
    elif name == "e2e":
        fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(data["rows"]) + 1.8))
        _e2e(data, axes)
    elif name == "roundtrips":
        fig, ax = plt.subplots(figsize=(8, 4.5))
        _roundtrips(data, ax)
    elif name == "memory":
        fig, axes = plt.subplots(2, 1, figsize=(9, 7.5), sharex=True)
        _memory(data, axes)
    elif name == "exit":
        fig, ax = plt.subplots(figsize=(8, 4.5))
        _exit(data, ax)
    elif name == "fleet":
        fig, ax = plt.subplots(figsize=(8, 4.5))
        if not _fleet(data, ax):
            plt.close(fig)
            return False
    else:
        return False
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
