"""What the inspector page is shown: the last requests and records, kept in bounded memory, and
the server-sent event stream that brings each change to every open page.

One event log, numbered, that every stream reads from at its own pace: no queue per page, and a
page that fell further behind than the log keeps is sent a fresh snapshot instead of what it lost.
Nothing here touches the stand-in's own state; :class:`FakeHumanloop` hands each answered request
in, with the faults in force after it.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any, Callable, Optional

from humanloop_logging._details import body_errors, item_errors

from ._recorded import RecordedRequest, _lenient_json

#: What the page keeps at most (the download of accepted items is not capped by these).
RECORDS_KEPT = 5000
REQUESTS_KEPT = 2000
#: Events kept for streams that are behind; one further behind gets a snapshot.
_EVENTS_KEPT = 1000
#: A comment line this often keeps proxies from closing an idle stream and finds vanished pages.
_HEARTBEAT = 15.0
_RECORD_FIELDS = ("data_id", "type", "value", "user", "created_at")

Faults = Callable[[], dict[str, Any]]


def _text(payload: bytes) -> Optional[str]:
    detail = _lenient_json(payload)
    if isinstance(detail, dict) and isinstance(detail.get("detail"), str):
        return str(detail["detail"])
    return payload.decode("utf-8", "replace")[:200] or None


def _rejection(request: RecordedRequest) -> dict[str, Any]:
    """A 422's errors by the item each names, with that item as it was sent."""
    detail = _lenient_json(request.response)
    detail = detail.get("detail") if isinstance(detail, dict) else None
    single = not request.batch
    body = _lenient_json(request.body)
    items = body if isinstance(body, list) else [body]
    named = item_errors(detail, request.item_count, single=single)
    return {
        "items": [
            {
                "index": index,
                "errors": [{"field": field, "message": message} for field, message in fields],
                "item": items[index] if index < len(items) else None,
            }
            for index, fields in named.items()
        ],
        "body": body_errors(detail, request.item_count, single=single),
        "detail": detail,
    }


class InspectorFeed:
    """The page's bounded memory of requests and records, and its event log."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._changed = threading.Condition(threading.Lock())
        self._records: deque[dict[str, Any]] = deque(maxlen=RECORDS_KEPT)
        self._requests: deque[dict[str, Any]] = deque(maxlen=REQUESTS_KEPT)
        self._events: deque[tuple[int, bytes]] = deque(maxlen=_EVENTS_KEPT)
        self._event_ids = itertools.count(1)
        self._last_event = 0
        self._request_ids = itertools.count(1)
        self._record_ids = itertools.count(1)
        self._totals = {"requests": 0, "records": 0}

    def observe(self, request: RecordedRequest, items: Optional[list[Any]]) -> None:
        """Keep one answered (or dropped) request and the items it had accepted."""
        faults = self._faults()
        with self._changed:
            entry: dict[str, Any] = {
                "id": next(self._request_ids),
                "time": request.time,
                "method": request.method,
                "path": request.path,
                "status": request.status,
                "items": request.item_count,
                "latency": request.latency,
                "reason": None,
                "rejection": None,
            }
            if request.status == 422:
                entry["rejection"] = _rejection(request)
            elif request.status not in (0, 200) and request.response:
                entry["reason"] = _text(request.response)
            records = [
                {
                    "id": next(self._record_ids),
                    "request": entry["id"],
                    "time": request.time,
                    **{name: item.get(name) for name in _RECORD_FIELDS},
                }
                for item in items or ()
                if isinstance(item, dict)
            ]
            self._requests.append(entry)
            self._records.extend(records)
            self._totals["requests"] += 1
            self._totals["records"] += len(records)
            data = {"request": entry, "records": records, "faults": faults, **self._counts()}
            self._publish_locked("request", data)

    def faults_changed(self) -> None:
        """Tell every page the faults in force now."""
        faults = self._faults()
        with self._changed:
            self._publish_locked("faults", {"faults": faults})

    def clear(self) -> None:
        """Forget every request and record (the stand-in's clear()); pages get a new snapshot."""
        faults = self._faults()
        with self._changed:
            self._requests.clear()
            self._records.clear()
            self._totals = {"requests": 0, "records": 0}
            self._publish_locked("snapshot", self._snapshot_locked(faults))

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, newest last: what ``GET /_inspector/api/state`` answers."""
        faults = self._faults()
        with self._changed:
            return self._snapshot_locked(faults)

    def wake(self) -> None:
        """Let every stream look at its stop event (the stand-in is stopping)."""
        with self._changed:
            self._changed.notify_all()

    def stream(self, stop: threading.Event) -> Iterator[bytes]:
        """The event stream of one page: a snapshot, then each event, until ``stop`` is set."""
        faults = self._faults()
        with self._changed:
            last = self._last_event
            first = _event("snapshot", self._snapshot_locked(faults))
        yield b"retry: 2000\n\n" + first
        while True:
            with self._changed:

                def ready(seen: int = last) -> bool:
                    return stop.is_set() or self._last_event > seen

                fresh = self._changed.wait_for(ready, _HEARTBEAT)
                if stop.is_set():
                    return
                if not fresh:
                    pending = [b": still here\n\n"]
                elif self._events and self._events[0][0] <= last + 1:
                    pending = [event for number, event in self._events if number > last]
                else:  # fell behind what the log keeps
                    # Locks are taken in one order, ours then the stand-in's (for its faults).
                    pending = [_event("snapshot", self._snapshot_locked(self._faults()))]
                last = self._last_event
            yield b"".join(pending)

    def _counts(self) -> dict[str, Any]:
        return {
            "totals": dict(self._totals),
            "kept": {"requests": REQUESTS_KEPT, "records": RECORDS_KEPT},
        }

    def _snapshot_locked(self, faults: dict[str, Any]) -> dict[str, Any]:
        return {
            "requests": list(self._requests),
            "records": list(self._records),
            "faults": faults,
            **self._counts(),
        }

    def _publish_locked(self, name: str, data: dict[str, Any]) -> None:
        number = next(self._event_ids)
        self._events.append((number, _event(name, data, number)))
        self._last_event = number
        self._changed.notify_all()


def _event(name: str, data: dict[str, Any], number: Optional[int] = None) -> bytes:
    """One server-sent event: its name, its id, its data as one line of JSON."""
    head = f"event: {name}\n" + (f"id: {number}\n" if number is not None else "")
    try:
        payload = json.dumps(data, ensure_ascii=False, allow_nan=False)
    except ValueError:  # a NaN or infinity in a rejected body: JSON.parse would refuse it
        payload = json.dumps(_finite(data), ensure_ascii=False)
    return (head + f"data: {payload}\n\n").encode("utf-8")


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity written as its name, a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
