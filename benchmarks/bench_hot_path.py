"""What a log call costs the caller's thread with FeedbackHandler installed, as ratios.

Every configuration is measured in the same process, round after round, in a shuffled order, and
each ratio is taken within one round before the median is taken across rounds: on a small, noisy
machine that cancels most of the noise that absolute timings would carry.

    python benchmarks/bench_hot_path.py            # the default: 15 rounds
    python benchmarks/bench_hot_path.py --rounds 30 --json

Configurations, each a logger with one handler and ``propagate = False``:

- ``null``: ``logging.NullHandler`` - the floor, what logging itself costs;
- ``dictlookup`` (untagged calls only): a handler whose ``handle`` does nothing but look for
  ``data_id`` in the record - the least any handler that recognises tagged records can cost;
- ``simplequeue``: a handler whose ``emit`` only does ``queue.SimpleQueue.put(record)``;
- ``queuehandler``: the stdlib ``logging.handlers.QueueHandler`` (for context);
- ``feedback``: ``FeedbackHandler`` with its default batching, its flush thread sending to the
  local stand-in while the caller logs, so the caller also pays for sharing the interpreter with
  the sender. The stand-in runs in its own process (``humanloop-logging serve``) so that its work
  is not charged to any configuration;
- ``spool``: the same with a durable spool (``spool_path`` in a temporary directory): its writer
  puts what the caller queues on disk while the caller logs.

The untagged calls (an ordinary ``logger.info("handled in %d ms", 12)``) compare ``null`` with
``feedback`` after the shipper has sent what the tagged calls queued, so they measure what the
handler costs every other log line of an application.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from humanloop_logging import FeedbackHandler

TAGGED_EXTRA = {"data_id": "data_abc", "type": "rating", "value": "good"}


class SimpleQueuePutHandler(logging.Handler):
    """The least a queueing handler can do: put the record on a SimpleQueue."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()

    def emit(self, record: logging.LogRecord) -> None:
        self.queue.put(record)


class DictLookupHandler(logging.Handler):
    """The least any handler that recognises tagged records must do: one dict lookup."""

    def handle(self, record: logging.LogRecord) -> bool:
        return "data_id" in record.__dict__

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"bench.{name}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger


def _tagged_call(logger: logging.Logger) -> Callable[[], None]:
    return lambda: logger.info("feedback", extra=TAGGED_EXTRA)


def _untagged_call(logger: logging.Logger) -> Callable[[], None]:
    return lambda: logger.info("handled in %d ms", 12)


def _per_call(fn: Callable[[], None], number: int) -> float:
    """Best of three runs of ``number`` calls, in seconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=3)) / number


@contextmanager
def stand_in(api_key: str) -> Iterator[str]:
    """The local Humanloop stand-in in a child process; yields its base URL."""
    command = [
        sys.executable,
        "-m",
        "humanloop_logging",
        "serve",
        "--port",
        "0",
        "--api-key",
        api_key,
        "--quiet",  # a line per request would fill the pipe nobody reads after start-up
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if "listening on " in line:
                yield line.rsplit(" ", 1)[-1].strip()
                return
        raise RuntimeError("the stand-in did not start")
    finally:
        server.terminate()
        server.wait(10)


def run(rounds: int, number: int) -> dict[str, object]:
    api_key = "bench-key"
    with stand_in(api_key) as base_url:
        live = FeedbackHandler(api_key, base_url, max_queue_size=20 * number)
        spool_dir = tempfile.mkdtemp(prefix="hl-bench-")
        spooled = FeedbackHandler(
            api_key,
            base_url,
            max_queue_size=20 * number,
            spool_path=os.path.join(spool_dir, "spool.db"),
        )
        sq = SimpleQueuePutHandler()
        qh_queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        handlers: dict[str, logging.Handler] = {
            "null": logging.NullHandler(),
            "simplequeue": sq,
            "queuehandler": logging.handlers.QueueHandler(qh_queue),
            "feedback": live,
            "spool": spooled,
            "dictlookup": DictLookupHandler(),
        }
        loggers = {name: _logger(name, handler) for name, handler in handlers.items()}
        tagged: dict[str, list[float]] = {name: [] for name in handlers if name != "dictlookup"}
        untagged: dict[str, list[float]] = {
            "null": [],
            "feedback": [],
            "spool": [],
            "dictlookup": [],
        }
        order = list(tagged)
        for _ in range(rounds):
            random.shuffle(order)
            for name in order:
                tagged[name].append(_per_call(_tagged_call(loggers[name]), number))
            # Untimed: send what the tagged calls queued, so that the untagged calls below are
            # measured against an idle shipper, as on a server that logs feedback now and then.
            live.flush(60.0)
            spooled.flush(60.0)
            for name in random.sample(list(untagged), k=len(untagged)):
                untagged[name].append(_per_call(_untagged_call(loggers[name]), number))
            # Empty the other queues outside the timed loops so every round starts alike.
            while not sq.queue.empty():
                sq.queue.get_nowait()
            while not qh_queue.empty():
                qh_queue.get_nowait()
        live.flush(60.0)
        spooled.flush(60.0)
        stats = live.stats()
        spool_stats = spooled.stats()
        live.close()
        spooled.close()
        shutil.rmtree(spool_dir, ignore_errors=True)

    def ratio(series: dict[str, list[float]], name: str) -> float:
        return statistics.median(a / b for a, b in zip(series[name], series["null"]))

    result: dict[str, object] = {
        "rounds": rounds,
        "calls_per_measure": number,
        "python": sys.version.split()[0],
        "null_ns": round(statistics.median(tagged["null"]) * 1e9),
        "tagged_ratio_vs_null": {name: round(ratio(tagged, name), 3) for name in tagged},
        "untagged_ratio_vs_null": {name: round(ratio(untagged, name), 3) for name in untagged},
        "sent": stats.sent + spool_stats.sent,
        "lost": sum(s.dropped + s.failed + s.rejected + s.pending for s in (stats, spool_stats)),
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=5000, help="calls per timed run")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = run(args.rounds, args.number)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    ratios = result["tagged_ratio_vs_null"]
    assert isinstance(ratios, dict)
    print(f"Python {result['python']}, {args.rounds} interleaved rounds of {args.number} calls")
    print(f"NullHandler, tagged call: {result['null_ns']} ns (median)")
    print("tagged call  logger.info('feedback', extra={...}), cost relative to NullHandler:")
    for name, value in ratios.items():
        print(f"  {name:<14} {value:.3f}x")
    print("untagged call  logger.info('handled in %d ms', 12), cost relative to NullHandler:")
    untagged = result["untagged_ratio_vs_null"]
    assert isinstance(untagged, dict)
    for name, value in untagged.items():
        print(f"  {name:<14} {value:.3f}x")
    print(f"feedback sent to the local stand-in: {result['sent']}, lost: {result['lost']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
