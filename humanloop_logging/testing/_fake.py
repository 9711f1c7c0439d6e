"""The stand-in itself: :class:`FakeHumanloop`, its lifecycle, what it received, its faults.

It decides each answer on the connection thread that read the request: first the faults in force
(:mod:`._faults`), then the service's own answer (:mod:`._service`), and records both.
"""

from __future__ import annotations

import copy
import itertools
import math
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Callable, Optional, Union

from ._faults import Faults, _check_count, _make_bucket, _make_failure
from ._inspector import Inspector
from ._recorded import RecordedRequest, _insort_by_sequence, _lenient_json
from ._server import _Answer, _Server
from ._service import answer_request
from ._validators import body_validator


class FakeHumanloop:
    """A local, in-process stand-in for ``https://api.humanloop.com/v4`` ``POST /feedback``.

    Thread-safe: tests may inject faults and read what was received while clients are posting.
    Faults apply in this order: reset, hang, latency, rate limit, fail, then the service's own
    checks (route, API key, body validation, unknown datapoints). The rate limit stands where a
    gateway's would: a request it refuses never reaches the outage of fail_next() nor the service,
    and a request it lets through has used its token whatever the service then answers.

    ``clock`` is the monotonic clock the rate limit's bucket refills on; a test can pass one that
    it advances itself, to see a token come back without waiting for it.

    ``inspector=True`` also serves the live inspector page at ``/`` and its API under
    ``/_inspector/`` (what ``humanloop-logging serve`` does); off by default, so a test's stand-in
    answers every other path exactly as the service does.
    """

    def __init__(
        self,
        *,
        api_key: str = "hl-test-key",
        host: str = "127.0.0.1",
        port: int = 0,
        flavour: str = "v1",
        validator: str = "auto",
        on_request: Optional[Callable[[RecordedRequest], None]] = None,
        clock: Callable[[], float] = time.monotonic,
        inspector: bool = False,
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {port!r}")
        self._validator_name, self._validate = body_validator(flavour, validator)
        self._flavour = flavour
        self._on_request = on_request
        self._clock = clock
        self.api_key = api_key
        self.host = host
        self._port = port
        self._lifecycle = threading.Lock()
        self._server: Optional[_Server] = None
        self._serve_thread: Optional[threading.Thread] = None
        self._stop_event: Optional[threading.Event] = None
        self._changed = threading.Condition(threading.Lock())
        self._sequence = itertools.count()
        self._connection_ids = itertools.count(1)
        self._requests: list[tuple[int, RecordedRequest]] = []
        self._received: list[tuple[int, int, dict[str, Any]]] = []
        self._arrivals = 0
        self._faults = Faults()
        self._clear_generation = 0
        self._inspector: Optional[Inspector] = Inspector(self) if inspector else None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeHumanloop:
        """Listen and serve on a daemon thread; returns self so ``fake = FakeHumanloop().start()``."""
        with self._lifecycle:
            if self._server is not None:
                return self
            stop_event = threading.Event()
            server = _Server((self.host, self._port), self, stop_event)
            self._port = int(server.server_address[1])
            thread = threading.Thread(
                target=server.serve_until_stopped,
                name=f"humanloop-stand-in-{self._port}",
                daemon=True,
            )
            thread.start()
            self._server, self._serve_thread, self._stop_event = server, thread, stop_event
        return self

    def stop(self) -> None:
        """Stop listening, cut every open connection and join all threads; safe to call twice."""
        with self._lifecycle:
            server, thread, stop_event = self._server, self._serve_thread, self._stop_event
            if server is None or thread is None or stop_event is None:
                return
            self._server = self._serve_thread = self._stop_event = None
            stop_event.set()
            with self._changed:
                self._changed.notify_all()  # wake answers held by hang_next
            if self._inspector is not None:
                self._inspector.wake()  # end the inspector's event streams
            server.wake()
            thread.join()
            server.server_close()
            server.close_connections()

    def restart(self) -> None:
        """Simulate a service restart: clients lose their connections, the port stays the same."""
        self.stop()
        self.start()

    def __enter__(self) -> FakeHumanloop:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<FakeHumanloop {self.host}:{self._port} {state}>"

    @property
    def flavour(self) -> str:
        """Which service this stand-in answers like: ``"v1"`` (FastAPI 0.99 on pydantic 1.10, the
        v4 era) or ``"v2"`` (current FastAPI on pydantic 2)."""
        return self._flavour

    @property
    def validator(self) -> str:
        """What validates bodies: ``"pydantic"`` (exact) or ``"stdlib"`` (the built-in emulation)."""
        return self._validator_name

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (the requested one before the first start); kept across restart()."""
        return self._port

    @property
    def base_url(self) -> str:
        """What a client takes as its Humanloop base URL, e.g. ``http://127.0.0.1:54321/v4``."""
        if self._port == 0:
            raise RuntimeError("FakeHumanloop has no port until start() is called")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}/v4"

    @property
    def url(self) -> str:
        """The feedback endpoint itself."""
        return self.base_url + "/feedback"

    @property
    def inspector_url(self) -> Optional[str]:
        """The live inspector's page, e.g. ``http://127.0.0.1:54321/``; None when it is off."""
        if self._inspector is None:
            return None
        return self.base_url[: -len("v4")]

    # -- what was received ---------------------------------------------------------------------

    @property
    def received(self) -> list[dict[str, Any]]:
        """A copy of every accepted feedback item, as sent, in the order the requests arrived."""
        with self._changed:
            return [copy.deepcopy(item) for _, _, item in self._received]

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request seen, whatever its answer, in the order they arrived."""
        with self._changed:
            return [recorded for _, recorded in self._requests]

    def wait_for_items(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` items were accepted; False if ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._received) >= count, timeout)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` requests were recorded, up to ``timeout``.

        A request is recorded once answered or dropped; one held by hang_next() as it is held.
        """
        with self._changed:
            return self._changed.wait_for(lambda: len(self._requests) >= count, timeout)

    def wait_for_arrivals(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` requests were read, answered or not.

        Lets a test act while an answer is still held back by set_latency() or hang_next().
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._arrivals >= count, timeout)

    @property
    def arrivals(self) -> int:
        """How many requests were read so far, answered or not (what wait_for_arrivals() counts).

        Read it right after set_latency() or hang_next() to wait for requests that the fault
        holds: ``requests`` does not yet list the ones still in flight.
        """
        with self._changed:
            return self._arrivals

    @property
    def rate_limit(self) -> Optional[tuple[float, int]]:
        """``(requests per second, burst)`` of the rate limit in force; None when there is none."""
        with self._changed:
            bucket = self._faults.bucket
        return None if bucket is None else (bucket.rate, bucket.burst)

    @property
    def rate_limited(self) -> int:
        """How many POSTs the rate limit answered 429 (they are in ``requests``, not ``received``)."""
        with self._changed:
            return self._faults.rate_limited

    def clear(self) -> None:
        """Forget everything received and every fault, latency, rate limit and rejected id; release
        hangs."""
        with self._changed:
            self._requests.clear()
            self._received.clear()
            self._arrivals = 0
            self._faults = Faults()
            self._clear_generation += 1
            self._changed.notify_all()
        if self._inspector is not None:
            self._inspector.cleared()

    # -- fault injection -----------------------------------------------------------------------

    def fail_next(
        self,
        n: int,
        status: int = 503,
        *,
        retry_after: Union[str, float, None] = None,
        body: Any = None,
    ) -> None:
        """Answer the next ``n`` POST requests with ``status`` instead of handling them.

        The body is ``{"detail": <reason phrase>}`` unless ``body`` is given (bytes are sent as they
        are, anything else as JSON); ``retry_after`` becomes a ``Retry-After`` header.
        """
        _check_count(n)
        failure = _make_failure(status, retry_after, body)
        with self._changed:
            self._faults.failures.extend([failure] * n)
        self._faults_changed()

    def reset_next(self, n: int) -> None:
        """Read the next ``n`` requests, then reset their connections without answering."""
        _check_count(n)
        with self._changed:
            self._faults.resets += n
        self._faults_changed()

    def hang_next(self, n: int) -> None:
        """Read the next ``n`` requests and hold them unanswered until stop() or clear()."""
        _check_count(n)
        with self._changed:
            self._faults.hangs += n
        self._faults_changed()

    def set_latency(self, seconds: float) -> None:
        """Delay every answer by ``seconds`` (0 turns it off); stop() cuts a delay short."""
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"latency must be a finite number of seconds >= 0, not {seconds!r}")
        with self._changed:
            self._faults.latency = float(seconds)
        self._faults_changed()

    def set_rate_limit(
        self,
        requests_per_second: Optional[float],
        *,
        burst: Optional[int] = None,
        retry_after: Optional[str] = "integer",
    ) -> None:
        """Answer POSTs beyond ``requests_per_second`` with 429, as a token bucket; None or 0 turns
        it off.

        The bucket holds ``burst`` tokens (default: one second's worth, at least 1), starts full,
        and refills continuously; each POST that reaches the limit takes one. A POST that finds no
        token is answered ``429 {"detail": "Rate limit exceeded"}`` with a ``Retry-After`` saying
        when the next token will be there: ``retry_after="integer"`` (the default) rounds that up
        to whole seconds, at least 1, as services send it (delta-seconds are an integer in
        RFC 9110); ``"fractional"`` gives the exact wait rounded up to the millisecond (``0.05``);
        None sends no header. A refused request is recorded in ``requests`` with its 429, counted
        in ``rate_limited``, and accepts nothing. Calling this again starts a new, full bucket.
        """
        bucket = _make_bucket(requests_per_second, burst, retry_after, self._clock)
        with self._changed:
            self._faults.bucket = bucket
        self._faults_changed()

    def reject_data_ids(self, *data_ids: str) -> None:
        """Answer 422 "Datapoint ... not found" to any request with feedback for these data ids."""
        with self._changed:
            self._faults.rejected_data_ids = self._faults.rejected_data_ids.union(data_ids)
        self._faults_changed()

    def refuse_key(self, refuse: bool = True) -> None:
        """Answer every request 401 "Invalid API key", as if the key had been revoked, until
        ``refuse_key(False)`` or clear(); what is checked before the key (route, body parsing)
        answers as before."""
        if not isinstance(refuse, bool):
            raise ValueError(f"refuse must be True or False, not {refuse!r}")
        with self._changed:
            self._faults.refusing_key = refuse
        self._faults_changed()

    @property
    def refusing_key(self) -> bool:
        """True while refuse_key() has every request answered 401."""
        with self._changed:
            return self._faults.refusing_key

    # -- the inspector's view of the faults ----------------------------------------------------

    def _faults_state(self) -> dict[str, Any]:
        """The faults in force, as plain JSON data (what the inspector page shows)."""
        with self._changed:
            return self._faults.state()

    def _drop_failures(self) -> None:
        """Forget the answers fail_next() queued (the inspector's "cancel" of a burst)."""
        with self._changed:
            self._faults.failures.clear()
        self._faults_changed()

    def _faults_changed(self) -> None:
        if self._inspector is not None:
            self._inspector.faults_changed()

    # -- answering (called on connection threads) ----------------------------------------------

    def _next_connection_id(self) -> int:
        with self._changed:
            return next(self._connection_ids)

    def _record(
        self, sequence: int, request: RecordedRequest, items: Optional[list[dict[str, Any]]] = None
    ) -> None:
        with self._changed:
            _insort_by_sequence(self._requests, sequence, [(sequence, request)])
            if items:
                block = [(sequence, index, item) for index, item in enumerate(items)]
                _insort_by_sequence(self._received, sequence, block)
            self._changed.notify_all()

    def _answer(
        self,
        *,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        connection: int,
        stop_event: threading.Event,
    ) -> Optional[_Answer]:
        """Decide the answer to one request (None: drop the connection) and record it."""
        arrived = time.time()
        started = time.monotonic()
        parsed = _lenient_json(body)
        batch = isinstance(parsed, list)
        item_count = len(parsed) if batch else 1 if isinstance(parsed, dict) else 0

        def record(status: int, items: Optional[list[Any]] = None, response: bytes = b"") -> None:
            recorded = RecordedRequest(
                method=method,
                path=path,
                status=status,
                item_count=item_count,
                headers=headers,
                body=body,
                time=arrived,
                batch=batch,
                connection=connection,
                response=response,
                latency=time.monotonic() - started,
            )
            self._record(sequence, recorded, items)
            if self._on_request is not None:
                self._on_request(recorded)
            if self._inspector is not None:
                self._inspector.observe(recorded, items)

        with self._changed:
            sequence = next(self._sequence)
            self._arrivals += 1
            generation = self._clear_generation
            reset, hang, latency = self._faults.take_early()
            self._changed.notify_all()

        if reset:
            record(0)
            return None
        if hang:
            record(0)
            with self._changed:
                self._changed.wait_for(
                    lambda: stop_event.is_set() or self._clear_generation != generation
                )
            return None
        if latency > 0 and stop_event.wait(latency):
            record(0)
            return None

        with self._changed:
            injected = self._faults.take_injected(self._clock) if method == "POST" else None
            rejected_ids = self._faults.rejected_data_ids
            refusing_key = self._faults.refusing_key
        if injected is not None:
            record(injected.status, None, injected.payload)
            return injected
        answer, accepted = self._service_answer(
            method=method,
            path=path,
            headers=headers,
            body=body,
            rejected_ids=rejected_ids,
            refusing_key=refusing_key,
        )
        record(answer.status, accepted, answer.payload)
        return answer

    def _service_answer(
        self,
        *,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        rejected_ids: frozenset[str],
        refusing_key: bool,
    ) -> tuple[_Answer, Optional[list[Any]]]:
        answer = answer_request(
            flavour=self._flavour,
            validator=self._validate,
            method=method,
            target=path,
            headers=headers,
            body=body,
            api_key=self.api_key,
            unknown_data_ids=rejected_ids,
            refuse_every_key=refusing_key,
        )
        return (
            _Answer(answer.status, answer.payload, answer.headers, answer.content_type),
            answer.accepted,
        )
