"""The shippers' counters in the application's own metrics: Prometheus and OpenTelemetry.

Both read ``stats()`` when the metrics are collected (a scrape, an export), so nothing is added to
the logging path, and both label each series with the shipper's ``name`` (``shipper``). Neither
library is imported until it is used: ``FeedbackCollector`` and
:func:`~humanloop_logging.register_prometheus` need ``prometheus_client`` (the ``prometheus``
extra), :func:`~humanloop_logging.instrument_opentelemetry` needs
``opentelemetry-api`` (the ``opentelemetry`` extra), and an application with only one of them
uses that one.

What a series counts: by default, every shipper of the process, with the shippers that share a
name summed into one series. A shipper that is garbage collected (dropped without ``close()``,
or replaced by ``dictConfig()``) leaves its last counts behind in its name's counters, so a
counter never goes backwards while the process lives; the ``pending`` and ``spooled`` gauges are
about the shippers alive now. Counters start at zero in a new process and in a forked child, as
``stats()`` does, which Prometheus's ``rate()`` and ``increase()`` read as a counter reset. Given
``shippers=[...]``, only those are read (each shared shipper once), and they are kept alive.
"""

from __future__ import annotations

import importlib
import threading
import weakref
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Union

from . import _census
from ._ledger import FeedbackStats
from ._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from prometheus_client.metrics_core import Metric as PrometheusMetric
    from prometheus_client.registry import CollectorRegistry

    from .handler import FeedbackHandler
    from .processor import FeedbackProcessor
    from .shipper import FeedbackShipper

    #: What ``shippers=`` takes: shippers, or the handlers and processors that feed them.
    Shipped = Union[FeedbackShipper, FeedbackHandler, FeedbackProcessor]

__all__ = [
    "FeedbackCollector",
    "FeedbackInstruments",
    "instrument_opentelemetry",
    "register_prometheus",
]

#: The label (Prometheus) and attribute (OpenTelemetry) that carries the shipper's name.
LABEL = "shipper"


class _Metric(NamedTuple):
    """One field of ``FeedbackStats`` as a metric."""

    field: str
    counter: bool  # a counter since the start, or a gauge of now
    unit: str  # OpenTelemetry's unit: {record} or {request}
    description: str

    @property
    def prometheus_name(self) -> str:
        """Without ``_total``: prometheus_client appends it to a counter's sample."""
        return f"humanloop_feedback_{self.field}"

    @property
    def opentelemetry_name(self) -> str:
        return f"humanloop.feedback.{self.field}"


_RECORD, _REQUEST = "{record}", "{request}"

#: Every metric, in the order of ``FeedbackStats``.
_METRICS = (
    _Metric("enqueued", True, _RECORD, "Feedback records handed to the shipper."),
    _Metric("sent", True, _RECORD, "Feedback records Humanloop accepted."),
    _Metric(
        "retried",
        True,
        _REQUEST,
        "Requests sent again after a transient failure (counts requests, not records).",
    ),
    _Metric(
        "rejected",
        True,
        _RECORD,
        "Feedback records refused for good: invalid, or named by a 422 from Humanloop.",
    ),
    _Metric(
        "dropped",
        True,
        _RECORD,
        "Feedback records dropped: the queue was full, or the spool over max_spool_bytes.",
    ),
    _Metric(
        "failed",
        True,
        _RECORD,
        "Feedback records given up on: retries or a close ran out of time, another error "
        "answer, before_send raised, or spool_max_age passed.",
    ),
    _Metric(
        "pending",
        False,
        _RECORD,
        "Feedback records not settled yet: queued, being sent, or waiting in the spool.",
    ),
    _Metric("spooled", False, _RECORD, "Of the pending feedback records, those in the spool."),
    _Metric(
        "replayed",
        True,
        _RECORD,
        "Feedback records taken over from the spool, left there by an earlier or dead process.",
    ),
    _Metric("filtered", True, _RECORD, "Feedback records before_send dropped."),
    _Metric(
        "withheld",
        True,
        _RECORD,
        "Valid feedback records not sent because the shipper is disabled (enabled=False).",
    ),
)


def _require(module: str, distribution: str, extra: str, user: str) -> ModuleType:
    """Import ``module`` for ``user``, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{user} needs {distribution}: pip install 'humanloop-logging[{extra}]'",
            name=exc.name,
        ) from exc


class _Source:
    """The counts by name: of every shipper of the process, or of the shippers given."""

    def __init__(self, shippers: Optional[Iterable[Shipped]]) -> None:
        self.shippers: Optional[tuple[FeedbackShipper, ...]] = None
        if shippers is not None:
            self.shippers = _shippers_of(shippers)

    def read(self) -> dict[str, FeedbackStats]:
        if self.shippers is None:
            return _census.totals()
        result: dict[str, FeedbackStats] = {}
        for shipper in self.shippers:
            result[shipper.name] = _census.add(result.get(shipper.name), shipper.stats())
        return result

    def __repr__(self) -> str:
        """Empty for every shipper, else the names given (for the reprs of what reads it)."""
        if self.shippers is None:
            return ""
        return f"shippers={sorted({shipper.name for shipper in self.shippers})!r}"


def _shippers_of(given: object) -> tuple[FeedbackShipper, ...]:
    """The distinct shippers behind ``given`` (handler and processor may share one)."""
    from .shipper import FeedbackShipper  # noqa: PLC0415 (the engine, only when asked for)

    what = "shippers= takes a list of FeedbackShipper, FeedbackHandler or FeedbackProcessor"
    if isinstance(given, (str, bytes)) or not isinstance(given, Iterable):
        one = isinstance(getattr(given, "shipper", given), FeedbackShipper)
        raise TypeError(f"{what}: " + (f"pass [{given!r}]" if one else f"got {given!r}"))
    found: dict[int, FeedbackShipper] = {}
    for item in given:
        shipper = item if isinstance(item, FeedbackShipper) else getattr(item, "shipper", None)
        if not isinstance(shipper, FeedbackShipper):
            raise TypeError(f"{what}, got {item!r}")
        found.setdefault(id(shipper), shipper)
    return tuple(found.values())


# -- Prometheus ------------------------------------------------------------------------------------


class FeedbackCollector:
    """A ``prometheus_client`` collector: ``REGISTRY.register(FeedbackCollector())``.

    At each scrape it reads ``stats()`` of every shipper of the process (or of ``shippers``) and
    yields ``humanloop_feedback_<counter>_total`` counters and the ``humanloop_feedback_pending``
    and ``humanloop_feedback_spooled`` gauges, labelled ``shipper`` by name.
    """

    def __init__(self, shippers: Optional[Iterable[Shipped]] = None) -> None:
        _require("prometheus_client", "prometheus_client", "prometheus", "FeedbackCollector")
        self._source = _Source(shippers)

    def __repr__(self) -> str:
        return f"FeedbackCollector({self._source!r})"

    def describe(self) -> Iterator[PrometheusMetric]:
        """The metrics without samples: what a registry checks for clashing names."""
        return self._families({})

    def collect(self) -> Iterator[PrometheusMetric]:
        """The metrics now: called by the registry at every scrape."""
        return self._families(self._source.read())

    def _families(self, totals: dict[str, FeedbackStats]) -> Iterator[PrometheusMetric]:
        from prometheus_client.metrics_core import (  # noqa: PLC0415 (imported when used)
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        names = sorted(totals)
        for metric in _METRICS:
            kind = CounterMetricFamily if metric.counter else GaugeMetricFamily
            family = kind(metric.prometheus_name, metric.description, labels=[LABEL])
            for name in names:
                family.add_metric([name], getattr(totals[name], metric.field))
            yield family


def register_prometheus(
    registry: Optional[CollectorRegistry] = None, *, shippers: Optional[Iterable[Shipped]] = None
) -> FeedbackCollector:
    """Register a :class:`FeedbackCollector` with ``registry`` (``prometheus_client.REGISTRY``
    by default) and return it, for ``registry.unregister()``."""
    collector = FeedbackCollector(shippers)  # (says so if prometheus_client is missing)
    if registry is None:
        from prometheus_client import REGISTRY  # noqa: PLC0415 (imported when used)

        registry = REGISTRY
    registry.register(collector)
    return collector


# -- OpenTelemetry ---------------------------------------------------------------------------------


class _Feed:
    """What the instruments of one meter provider read: the source of the instrumentation
    running there, or None once it is stopped. Instruments cannot be removed from a meter, and
    an SDK meter hands back the instrument it already has for a name, callbacks and all, so each
    provider gets them once and they read through this."""

    def __init__(self) -> None:
        self.source: Optional[_Source] = None

    def observe(self, field: str) -> list[Observation]:
        from opentelemetry.metrics import Observation  # noqa: PLC0415 (loaded by now)

        source = self.source
        if source is None:
            return []
        totals = source.read()
        return [Observation(getattr(totals[name], field), {LABEL: name}) for name in sorted(totals)]


_feeds: weakref.WeakKeyDictionary[Any, _Feed] = weakref.WeakKeyDictionary()
_feeds_lock = threading.Lock()


class FeedbackInstruments:
    """The instruments :func:`instrument_opentelemetry` made; ``stop()`` ends their reports."""

    def __init__(self, feed: _Feed, source: _Source, meter_provider: MeterProvider) -> None:
        self._feed = feed
        self._source = source
        self.meter_provider = meter_provider

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        given = repr(self._source)
        return f"<FeedbackInstruments {state}{', ' if given else ''}{given}>"

    @property
    def running(self) -> bool:
        return self._feed.source is self._source

    def stop(self) -> None:
        """Observe nothing more: the instruments stay on the meter (OpenTelemetry cannot remove
        one) but report no data point. Safe twice; ``instrument_opentelemetry()`` may then run
        on the same provider again."""
        with _feeds_lock:
            if self._feed.source is self._source:
                self._feed.source = None


def instrument_opentelemetry(
    meter_provider: Optional[MeterProvider] = None,
    *,
    shippers: Optional[Iterable[Shipped]] = None,
) -> FeedbackInstruments:
    """Observe the shippers' counters on ``meter_provider`` (the global one by default).

    Makes an ``ObservableCounter`` per counter (``humanloop.feedback.sent``, ...) and an
    ``ObservableUpDownCounter`` for ``humanloop.feedback.pending`` and ``.spooled``, on the meter
    ``humanloop_logging``; each data point has the attribute ``shipper``, the shipper's name.
    """
    otel = _require(
        "opentelemetry.metrics", "opentelemetry-api", "opentelemetry", "instrument_opentelemetry"
    )
    provider: MeterProvider = (
        otel.get_meter_provider() if meter_provider is None else meter_provider
    )
    source = _Source(shippers)
    with _feeds_lock:
        feed = _feeds.get(provider)
        if feed is not None and feed.source is not None:
            raise ValueError(
                f"{provider!r} already observes the feedback shippers: call stop() on the "
                "FeedbackInstruments instrument_opentelemetry() returned before instrumenting "
                "it again"
            )
        if feed is None:
            feed = _Feed()
            _instrument(provider, feed)
            _feeds[provider] = feed
        feed.source = source
    return FeedbackInstruments(feed, source, provider)


def _instrument(provider: MeterProvider, feed: _Feed) -> None:
    meter = provider.get_meter("humanloop_logging", __version__)
    for metric in _METRICS:
        make = (
            meter.create_observable_counter
            if metric.counter
            else meter.create_observable_up_down_counter
        )
        make(
            metric.opentelemetry_name,
            callbacks=[_callback(feed, metric.field)],
            unit=metric.unit,
            description=metric.description,
        )


def _callback(feed: _Feed, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> list[Observation]:
        return feed.observe(field)

    return observe
