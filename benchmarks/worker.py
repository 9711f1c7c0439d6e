"""The measuring side of the suite: one process per measurement, run by ``benchmarks.suite``.

    python -m benchmarks.worker KIND 'JSON-ARGUMENTS'

The suite starts it with ``PYTHONPATH`` naming the version of ``humanloop_logging`` under test, so
that the same code measures the working tree and a baseline revision. It prints one line
``RESULT {json}`` per answer on stdout (the library's own warnings go to stderr), and every answer
names the file the library was imported from, which the suite checks. Nothing here is imported
at module level beyond the standard library: the official SDK's measurement runs in a virtualenv
that has neither this library nor ``requests``.

Kinds:

- ``caller``: long-lived; each ``round`` line on stdin times a log call through every handler
  configuration (in a shuffled order) and answers seconds per call; ``stop`` flushes and answers
  what the handler sent. With the peers, and where loguru and ``FeedbackSink`` can be imported,
  the same calls through loguru too: its no-op sink and a ``FeedbackSink`` sharing the handler's
  shipper.
- ``e2e``: from the first log call to ``flush()`` done, ``n`` records through ``FeedbackHandler``.
- ``validate``: the flush thread's work per record alone: validation and the request body.
- ``floor``: the same ``n`` log calls through a ``NullHandler``, then plain ``requests`` posting
  JSON arrays of ``batch_size`` items, built inside the clock, on one ``Session``, one after the
  other.
- ``sdk``: the official Humanloop SDK's ``feedback()``, once per record or with arrays.
- ``memory``: ``rate`` records a second for ``duration`` seconds while the service is down.
- ``exit``: ``n`` records logged, then a normal exit with whatever is still queued.
- ``reference``: the RSS that holding ``n`` captured records takes (the bound of a full queue).
"""

from __future__ import annotations

import json
import logging
import os
import random
import resource
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

__all__ = ["main"]

#: Settings added after the baseline may not exist in it; the suite passes only what it needs.
Settings = dict[str, Any]

DATA_ID_FORMAT = "data_{:020d}"


def answer(payload: Mapping[str, Any]) -> None:
    print("RESULT " + json.dumps(payload), flush=True)


def library_file() -> str:
    import humanloop_logging

    return str(humanloop_logging.__file__)


def stats_of(handler: Any) -> dict[str, int]:
    """``FeedbackStats`` as a dict, whatever fields this version has."""
    stats = handler.stats()
    fields = getattr(stats, "__dataclass_fields__", None)
    names = list(fields) if fields else list(getattr(stats, "_fields", ()))
    return {name: int(getattr(stats, name)) for name in names}


def bench_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"bench.{name}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger


def extras(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``extra=`` of ``n`` tagged calls, built before any clock starts."""
    rng = random.Random(seed)
    return [
        {
            "data_id": DATA_ID_FORMAT.format(i),
            "type": "rating",
            "value": rng.choice(("good", "bad")),
        }
        for i in range(n)
    ]


def feedback_handler(args: Mapping[str, Any]) -> Any:
    """A ``FeedbackHandler`` of the version under test, with only the settings given."""
    from humanloop_logging import FeedbackHandler

    settings: Settings = dict(args.get("settings") or {})
    return FeedbackHandler(args["api_key"], args["base_url"], **settings)


# --- caller ---------------------------------------------------------------------------------------


class _DiscardingExporter:
    """An OpenTelemetry log exporter that drops every batch (duck-typed: no collector here)."""

    def __init__(self) -> None:
        from opentelemetry.sdk._logs.export import LogExportResult

        self.exported = 0
        self._success = LogExportResult.SUCCESS

    def export(self, batch: Any) -> Any:
        self.exported += len(batch)
        return self._success

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _otel_handler() -> tuple[logging.Handler, Callable[[], None]]:
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider: Any = LoggerProvider()
    exporter: Any = _DiscardingExporter()
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    handler: logging.Handler = LoggingHandler(level=logging.NOTSET, logger_provider=provider)
    return handler, provider.shutdown


def _loguru_loggers(shipper: Any) -> dict[str, Any]:
    """loguru's own no-op sink (``loguru_null``) and a ``FeedbackSink`` on ``shipper``
    (``loguru_feedback``), each on an independent logger (loguru's way: a deep copy of the
    logger without sinks) with loguru's default format; nothing if either cannot be imported
    (the bench extra lacks loguru, or the version under test predates the sink)."""
    import copy

    try:
        from loguru import logger

        from humanloop_logging import FeedbackSink
    except ImportError:
        return {}
    logger.remove()
    noop, feedback = copy.deepcopy(logger), copy.deepcopy(logger)
    noop.add(lambda message: None, level="INFO")
    feedback.add(FeedbackSink(shipper=shipper), level="INFO")
    return {"loguru_null": noop, "loguru_feedback": feedback}


def caller(args: Mapping[str, Any]) -> None:
    import logging.handlers
    import queue

    from benchmarks.bench_hot_path import (
        TAGGED_EXTRA,
        DictLookupHandler,
        SimpleQueuePutHandler,
        _per_call,
    )

    number = int(args["number"])
    peers = bool(args.get("peers"))
    live = feedback_handler(args)
    sq = SimpleQueuePutHandler()
    handlers: dict[str, logging.Handler] = {
        "null": logging.NullHandler(),
        "simplequeue": sq,
        "feedback": live,
        "dictlookup": DictLookupHandler(),
    }
    stops: list[Callable[[], None]] = []
    if peers:
        qh_queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(qh_queue, logging.NullHandler())
        listener.start()
        stops.append(listener.stop)
        handlers["queuehandler"] = logging.handlers.QueueHandler(qh_queue)
        try:
            otel, otel_stop = _otel_handler()
        except ImportError:  # opentelemetry-sdk is in the bench extra; without it, no such row
            pass
        else:
            handlers["otel"] = otel
            stops.append(otel_stop)
    loggers = {name: bench_logger(name, handler) for name, handler in handlers.items()}
    tagged_calls_of: dict[str, Callable[[], None]] = {
        name: partial(loggers[name].info, "feedback", extra=TAGGED_EXTRA)
        for name in handlers
        if name != "dictlookup"
    }
    untagged_calls_of: dict[str, Callable[[], None]] = {
        name: partial(loggers[name].info, "handled in %d ms", 12) for name in handlers
    }
    # loguru's tagged calls are timed in a phase of their own, after the stdlib handlers' and an
    # untimed flush: the sink shares the handler's shipper, and its records still being sent
    # would weigh on the handler's calls, which a version without the sink does not pay.
    loguru_tagged: dict[str, Callable[[], None]] = {}
    loguru_loggers = _loguru_loggers(live.shipper) if peers else {}
    for name, loguru_logger in loguru_loggers.items():
        loguru_tagged[name] = partial(loguru_logger.info, "feedback", **TAGGED_EXTRA)
        untagged_calls_of[name] = partial(loguru_logger.info, "handled in {} ms", 12)
    # The handler and the loguru sink (which shares its shipper) send what they are given.
    sending = 2 if "loguru_feedback" in loguru_loggers else 1
    tagged_calls = 0
    answer({"ready": True, "library": library_file()})
    for line in sys.stdin:
        command = line.strip()
        if command == "round":
            tagged: dict[str, float] = {}
            untagged: dict[str, float] = {}
            for phase in (tagged_calls_of, loguru_tagged):
                if phase is loguru_tagged and phase:
                    live.flush(60.0)  # untimed
                for name in random.sample(list(phase), k=len(phase)):
                    tagged[name] = _per_call(phase[name], number)
            tagged_calls += 3 * number * sending
            # Untimed: the untagged calls are measured against an idle shipper, as on a server
            # that logs feedback now and then.
            live.flush(60.0)
            for name in random.sample(list(untagged_calls_of), k=len(untagged_calls_of)):
                untagged[name] = _per_call(untagged_calls_of[name], number)
            while not sq.queue.empty():
                sq.queue.get_nowait()
            answer({"tagged": tagged, "untagged": untagged})
        elif command == "stop":
            break
    flushed = live.flush(120.0)
    stats = stats_of(live)
    live.close()
    for stop in stops:
        stop()
    answer({"flushed": flushed, "logged": tagged_calls, "stats": stats, "library": library_file()})


# --- end to end -----------------------------------------------------------------------------------


def e2e(args: Mapping[str, Any]) -> None:
    n = int(args["n"])
    handler = feedback_handler(args)
    logger = bench_logger("e2e", handler)
    calls = extras(n)
    info = logger.info
    started, cpu_started = time.perf_counter(), time.process_time()
    for extra in calls:
        info("feedback", extra=extra)
    logged = time.perf_counter()
    flushed = handler.flush(float(args.get("flush_timeout", 240.0)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    stats = stats_of(handler)
    handler.close()
    answer(
        {
            "wall": wall,
            "cpu": cpu,
            "log_wall": logged - started,
            "flushed": flushed,
            "stats": stats,
            "library": library_file(),
        }
    )


def validate(args: Mapping[str, Any]) -> None:
    """The flush thread's own work on each record, alone: validating ``n`` captured records in
    batches of ``batch_size`` and encoding each batch's request body, the best of ``repeat``
    passes (on this thread, so this is CPU the application would share its GIL with)."""
    from humanloop_logging import _record

    n, size = int(args["n"]), int(args["batch_size"])
    now = time.time()
    values = ("good", "bad")
    items = [
        (DATA_ID_FORMAT.format(i), "rating", values[i % 2], None, None, None, now + i * 1e-4)
        for i in range(n)
    ]
    batches = [items[k : k + size] for k in range(0, n, size)]
    batch_api = hasattr(_record, "to_payloads")

    def body(batch: list[Any]) -> bytes:
        if batch_api:  # validated as a batch, the array written in one go
            texts, errors = _record.to_payloads(batch, None)
            assert not errors
            return bytes(_record.encode_array(texts))
        # one record at a time, then joined (the engine before the batch API)
        return b"[" + b",".join(_record.to_payload(item, None)[1] for item in batch) + b"]"

    best = float("inf")
    for _ in range(int(args.get("repeat", 5))):
        started = time.process_time()
        for batch in batches:
            body(batch)
        best = min(best, time.process_time() - started)
    answer({"seconds_per_record": best / n, "batch_api": batch_api, "library": library_file()})


def floor(args: Mapping[str, Any]) -> None:
    import requests

    n, batch_size = int(args["n"]), int(args["batch_size"])
    logger = bench_logger("floor", logging.NullHandler())
    calls = extras(n)
    created_at = "2026-11-28T12:00:00.123456+00:00"
    url = args["base_url"].rstrip("/") + "/feedback"
    headers = {"Content-Type": "application/json", "X-API-KEY": args["api_key"]}
    session = requests.Session()
    info = logger.info
    started, cpu_started = time.perf_counter(), time.process_time()
    for extra in calls:
        info("feedback", extra=extra)
    # The request bodies are built inside the clock, as any real client must build them.
    bodies = [
        json.dumps(
            [dict(extra, created_at=created_at) for extra in calls[i : i + batch_size]],
            separators=(",", ":"),
        ).encode()
        for i in range(0, n, batch_size)
    ]
    statuses = [
        session.post(url, data=body, headers=headers, timeout=60).status_code for body in bodies
    ]
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    session.close()
    answer(
        {
            "wall": wall,
            "cpu": cpu,
            "requests": len(bodies),
            "failed_requests": sum(status != 200 for status in statuses),
            "library": "requests " + requests.__version__,
        }
    )


def sdk(args: Mapping[str, Any]) -> None:
    """The official SDK: ``feedback(type=..., value=..., data_id=...)`` per record, or
    ``feedback(body=[...])`` with arrays of ``batch_size`` (``batch_size`` 0: per record)."""
    import humanloop
    from humanloop import Humanloop

    n, batch_size = int(args["n"]), int(args["batch_size"])
    client: Any = Humanloop(api_key=args["api_key"], host=args["base_url"])
    calls = extras(n)
    started, cpu_started = time.perf_counter(), time.process_time()
    statuses = []
    if batch_size <= 0:
        for extra in calls:
            statuses.append(client.feedback(**extra).status)
    else:
        for i in range(0, n, batch_size):
            statuses.append(client.feedback(body=calls[i : i + batch_size]).status)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    answer(
        {
            "wall": wall,
            "cpu": cpu,
            "requests": len(statuses),
            "failed_requests": sum(status != 200 for status in statuses),
            "library": f"humanloop {getattr(humanloop, '__version__', '?')} at {humanloop.__file__}",
        }
    )


# --- memory ---------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def memory(args: Mapping[str, Any]) -> None:
    """Log ``rate`` records a second for ``duration`` seconds; the suite samples RSS meanwhile."""
    rate, duration = float(args["rate"]), float(args["duration"])
    handler = feedback_handler(args)
    logger = bench_logger("memory", handler)
    info = logger.info
    answer({"ready": True, "rss": _rss_bytes(), "library": library_file()})
    started = time.monotonic()
    logged = 0
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= duration:
            break
        due = min(int(elapsed * rate) + 1, int(duration * rate))
        while logged < due:
            info(
                "feedback",
                extra={"data_id": DATA_ID_FORMAT.format(logged), "type": "rating", "value": "good"},
            )
            logged += 1
        time.sleep(0.005)
    answer(
        {
            "logged": logged,
            "seconds": time.monotonic() - started,
            "rss": _rss_bytes(),
            "peak_rss": _peak_rss_bytes(),
            "stats": stats_of(handler),
        }
    )
    sys.stdout.flush()
    # The service is down: leaving now, not after exit_timeout, keeps the suite short.
    os._exit(0)


def reference(args: Mapping[str, Any]) -> None:
    """What holding ``n`` captured records costs in RSS: tuples of a log call's values, as the
    handler captures one (docs/performance.md). The bound a full queue implies, measured apart
    from the processes whose RSS is watched (freed memory would stay in their allocator)."""
    n = int(args["n"])
    before = _rss_bytes()
    held = [
        (DATA_ID_FORMAT.format(i), "rating", "good", None, None, None, time.time())
        for i in range(n)
    ]
    answer({"n": len(held), "bytes": _rss_bytes() - before})


# --- exit -----------------------------------------------------------------------------------------


def exit_time(args: Mapping[str, Any]) -> None:
    """Log ``n`` records, then return: the interpreter's exit drains what is queued."""
    n = int(args["n"])
    handler = feedback_handler(args)
    logger = bench_logger("exit", handler)
    info = logger.info
    for extra in extras(n):
        info("feedback", extra=extra)
    stats = stats_of(handler)
    answer({"exiting_at": time.monotonic(), "stats": stats, "library": library_file()})


KINDS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "caller": caller,
    "e2e": e2e,
    "validate": validate,
    "floor": floor,
    "sdk": sdk,
    "memory": memory,
    "exit": exit_time,
    "reference": reference,
}


def main(argv: list[str] | None = None) -> int:
    kind, raw = (argv if argv is not None else sys.argv[1:])[:2]
    KINDS[kind](json.loads(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
