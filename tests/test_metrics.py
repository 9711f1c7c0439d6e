"""Metrics: the shippers' counters scraped by prometheus_client and read by the OpenTelemetry SDK.

Records go through real shippers to the stand-in; the Prometheus side is read as a scraper reads
it (``generate_latest`` parsed back by prometheus_client's own parser), the OpenTelemetry side
through the SDK's ``InMemoryMetricReader``. Every shipper of this process is in the collector's
view, other tests' too, so each test names its shippers with names of its own and looks at those.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Optional

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Sum
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import Rig, Rigs, child_env, hand_over, humanloop_env

from humanloop_logging import (
    FeedbackCollector,
    FeedbackHandler,
    FeedbackProcessor,
    FeedbackShipper,
    FeedbackStats,
    instrument_opentelemetry,
    register_prometheus,
)
from humanloop_logging.testing import FakeHumanloop

pytestmark = pytest.mark.timeout(60)

#: The counters (each ``humanloop_feedback_<name>_total``) and gauges, in the order of stats().
COUNTERS = [
    "enqueued",
    "sent",
    "retried",
    "rejected",
    "dropped",
    "failed",
    "replayed",
    "filtered",
    "withheld",
]
GAUGES = ["pending", "spooled"]

_tags = itertools.count()


def names(*kinds: str) -> list[str]:
    """Shipper names no other test uses."""
    tag = f"{os.getpid()}-{next(_tags)}"
    return [f"{kind}-{tag}" for kind in kinds]


@pytest.fixture
def rigs(fake_humanloop: FakeHumanloop) -> Iterator[Rigs]:
    with Rigs(fake_humanloop) as made:
        yield made


def scrape(registry: CollectorRegistry, shippers: Iterable[str]) -> dict[str, dict[str, float]]:
    """What a scrape of ``registry`` says of ``shippers``: ``{shipper: {field: value}}``, checked
    to be typed, described and named as documented."""
    wanted = set(shippers)
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        if not family.name.startswith("humanloop_feedback_"):
            continue
        field = family.name.removeprefix("humanloop_feedback_")
        assert family.type == ("gauge" if field in GAUGES else "counter"), family
        assert family.documentation, family
        for sample in family.samples:
            assert sample.name == family.name + ("" if field in GAUGES else "_total"), sample
            assert list(sample.labels) == ["shipper"], sample
            if sample.labels["shipper"] in wanted:
                found.setdefault(sample.labels["shipper"], {})[field] = sample.value
    return found


def expect(**given: float) -> dict[str, float]:
    """Every field, 0 unless given."""
    return {field: float(given.get(field, 0)) for field in COUNTERS + GAUGES}


def of(stats: FeedbackStats) -> dict[str, float]:
    return {field: float(getattr(stats, field)) for field in COUNTERS + GAUGES}


# -- Prometheus ----------------------------------------------------------------------------------


def test_a_scrape_counts_every_shipper_under_its_name(rigs: Rigs) -> None:
    """Each shipper's sent, rejected (a 422 and a local refusal) and dropped records, exactly, as
    counters labelled with its name; the key appears nowhere."""
    checkout_name, search_name = names("checkout", "search")
    checkout = rigs(name=checkout_name)
    search = rigs(name=search_name, batch_size=1000, max_queue_size=5)
    rigs.fake.reject_data_ids("dp-unknown")  # answered 422 "Datapoint ... not found"
    for data_id in ("dp-1", "dp-2", "dp-unknown"):
        checkout.send(data_id)
    checkout.send("dp-nan", value=float("nan"))  # refused before sending
    for index in range(8):
        search.send(f"dp-{index}")  # a queue of 5: 3 are dropped
    assert checkout.shipper.flush(15.0)
    assert search.shipper.flush(15.0)

    registry = CollectorRegistry()
    registry.register(FeedbackCollector())
    assert scrape(registry, [checkout_name, search_name]) == {
        checkout_name: expect(enqueued=4, sent=2, rejected=2),
        search_name: expect(enqueued=8, sent=5, dropped=3),
    }
    assert rigs.fake.api_key not in generate_latest(registry).decode()


def test_pending_is_a_gauge_of_what_waits_while_the_service_is_down(rigs: Rigs) -> None:
    """With the stand-in stopped, the records wait and are pending; once it is back and they are
    sent, pending is 0 and sent counts them."""
    [name] = names("outage")
    rig = rigs(name=name)
    registry = CollectorRegistry()
    register_prometheus(registry)
    rigs.fake.stop()
    for index in range(3):
        rig.send(f"dp-{index}")
    assert not rig.shipper.flush(0.5)  # nothing can be delivered: the service is down

    during = scrape(registry, [name])[name]
    assert (during["enqueued"], during["pending"], during["sent"]) == (3, 3, 0)

    rigs.fake.start()
    assert rig.shipper.flush(15.0)
    retried = rig.stats().retried  # however many attempts the outage took
    assert scrape(registry, [name]) == {name: expect(enqueued=3, sent=3, retried=retried)}


def test_shippers_sharing_a_name_are_summed_and_a_collected_one_keeps_its_counts(
    fake_humanloop: FakeHumanloop,
) -> None:
    """Two shippers of one name make one series; when one is garbage collected its counts stay,
    so the counter does not go backwards."""
    [name] = names("shared")
    settings: dict[str, Any] = {"api_key": fake_humanloop.api_key, "name": name}
    staying = FeedbackShipper(base_url=fake_humanloop.base_url, **settings)
    leaving = FeedbackShipper(base_url=fake_humanloop.base_url, **settings)
    registry = CollectorRegistry()
    registry.register(FeedbackCollector())
    try:
        hand_over(staying, "dp-1")
        for index in range(2, 4):
            hand_over(leaving, f"dp-{index}")
        assert staying.flush(15.0)
        assert leaving.flush(15.0)
        assert scrape(registry, [name]) == {name: expect(enqueued=3, sent=3)}

        hand_over(leaving, "dp-4")  # sent by its close, after the last scrape
        assert leaving.close(15.0)
        engine = weakref.ref(leaving._engine)  # what holds the counts: it must go too
        del leaving
        gc.collect()
        assert engine() is None

        assert scrape(registry, [name]) == {name: expect(enqueued=4, sent=4)}
        hand_over(staying, "dp-5")
        assert staying.flush(15.0)
        assert scrape(registry, [name]) == {name: expect(enqueued=5, sent=5)}
    finally:
        staying.close(2.0)


def test_given_shippers_are_the_only_ones_read_and_each_once(fake_humanloop: FakeHumanloop) -> None:
    """shippers=[...] reads those alone; a handler and a processor on one shipper count it once."""
    [name] = names("given")
    shipper = FeedbackShipper(fake_humanloop.api_key, fake_humanloop.base_url, name=name)
    handler = FeedbackHandler(shipper=shipper)
    processor = FeedbackProcessor(shipper=shipper)
    try:
        for index in range(2):
            event = {"event": "x", "data_id": f"dp-{index}", "type": "rating", "value": "good"}
            processor(None, "info", event)
        assert shipper.flush(15.0)
        registry = CollectorRegistry()
        collector = register_prometheus(registry, shippers=[handler, processor, shipper])
        assert scrape(registry, [name, "default"]) == {name: expect(enqueued=2, sent=2)}
        families = list(text_string_to_metric_families(generate_latest(registry).decode()))
        labels = {s.labels["shipper"] for f in families for s in f.samples if "shipper" in s.labels}
        assert labels == {name}
        assert repr(collector) == f"FeedbackCollector(shippers=[{name!r}])"
    finally:
        shipper.close(2.0)


def test_the_name_comes_from_the_environment(
    fake_humanloop: FakeHumanloop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shipper built without name= is labelled with HUMANLOOP_FEEDBACK_NAME."""
    [name] = names("from-env")
    monkeypatch.setenv("HUMANLOOP_FEEDBACK_NAME", name)
    handler = FeedbackHandler(fake_humanloop.api_key, fake_humanloop.base_url)
    try:
        registry = CollectorRegistry()
        register_prometheus(registry, shippers=[handler])
        assert scrape(registry, [name]) == {name: expect()}
    finally:
        handler.close()


def test_a_registry_refuses_a_second_collector() -> None:
    """describe() gives the names, so a registry refuses a clash as prometheus_client does."""
    registry = CollectorRegistry()
    assert repr(register_prometheus(registry)) == "FeedbackCollector()"
    with pytest.raises(ValueError, match="humanloop_feedback_sent"):
        registry.register(FeedbackCollector())


@pytest.mark.parametrize("given", ["checkout", 3, [object()], ["checkout"]])
def test_shippers_must_be_a_list_of_shippers_handlers_or_processors(given: Any) -> None:
    """Anything else is refused at once, saying what to pass."""
    with pytest.raises(TypeError, match="FeedbackShipper, FeedbackHandler or FeedbackProcessor"):
        FeedbackCollector(shippers=given)
    with pytest.raises(TypeError, match="FeedbackShipper, FeedbackHandler or FeedbackProcessor"):
        instrument_opentelemetry(MeterProvider(), shippers=given)


def test_a_single_shipper_is_refused_with_the_fix(fake_humanloop: FakeHumanloop) -> None:
    """shippers=handler instead of [handler] says to wrap it in a list."""
    handler = FeedbackHandler(fake_humanloop.api_key, fake_humanloop.base_url)
    try:
        with pytest.raises(TypeError, match=r"pass \[<FeedbackHandler"):
            FeedbackCollector(shippers=handler)  # type: ignore[arg-type]
    finally:
        handler.close()


# -- OpenTelemetry -------------------------------------------------------------------------------


def points(reader: InMemoryMetricReader, shippers: Iterable[str]) -> dict[str, dict[str, float]]:
    """What ``reader`` collects of ``shippers``: ``{shipper: {field: value}}``, each instrument
    checked to be of the documented kind, unit and scope."""
    wanted = set(shippers)
    found: dict[str, dict[str, float]] = {}
    data = reader.get_metrics_data()
    if data is None:  # no data point at all
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            if scope.scope.name != "humanloop_logging":
                continue
            for metric in scope.metrics:
                field = metric.name.removeprefix("humanloop.feedback.")
                assert isinstance(metric.data, Sum), metric
                assert metric.data.is_monotonic is (field not in GAUGES), metric
                assert metric.unit == ("{request}" if field == "retried" else "{record}"), metric
                assert metric.description, metric
                for point in metric.data.data_points:
                    attributes = dict(point.attributes or {})
                    assert list(attributes) == ["shipper"], point
                    if attributes["shipper"] in wanted:
                        found.setdefault(str(attributes["shipper"]), {})[field] = point.value
    return found


def test_opentelemetry_observes_every_shipper_under_its_name(rigs: Rigs) -> None:
    """Observable counters and up-down counters, one data point per shipper name, with the same
    values as stats(); the key appears nowhere."""
    checkout_name, search_name = names("checkout", "search")
    checkout = rigs(name=checkout_name)
    search = rigs(name=search_name, batch_size=1000, max_queue_size=2)
    rigs.fake.reject_data_ids("dp-unknown")
    for data_id in ("dp-1", "dp-unknown"):
        checkout.send(data_id)
    checkout.send("dp-nan", value=float("nan"))
    for index in range(5):
        search.send(f"dp-{index}")
    assert checkout.shipper.flush(15.0)
    assert search.shipper.flush(15.0)

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = instrument_opentelemetry(provider)
    assert repr(instruments) == "<FeedbackInstruments running>"
    assert points(reader, [checkout_name, search_name]) == {
        checkout_name: expect(enqueued=3, sent=1, rejected=2),
        search_name: expect(enqueued=5, sent=2, dropped=3),
    }
    data = reader.get_metrics_data()
    assert data is not None
    assert rigs.fake.api_key not in data.to_json()

    checkout.send("dp-3")
    assert checkout.shipper.flush(15.0)
    assert points(reader, [checkout_name])[checkout_name] == expect(enqueued=4, sent=2, rejected=2)
    instruments.stop()
    provider.shutdown()


def test_stopped_instruments_report_nothing_and_a_provider_is_instrumented_once(
    rigs: Rigs,
) -> None:
    """stop() ends the data points; instrumenting a provider again is refused while running and
    works after stop(), with the shippers given then."""
    first, second = names("first", "second")
    one, two = rigs(name=first), rigs(name=second)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = instrument_opentelemetry(provider, shippers=[one.shipper])
    assert set(points(reader, [first, second])) == {first}
    with pytest.raises(ValueError, match="call stop"):
        instrument_opentelemetry(provider)

    instruments.stop()
    instruments.stop()
    assert not instruments.running
    assert points(reader, [first, second]) == {}

    again = instrument_opentelemetry(provider, shippers=[two.shipper])
    assert again.running
    assert repr(again) == f"<FeedbackInstruments running, shippers=[{second!r}]>"
    assert set(points(reader, [first, second])) == {second}
    again.stop()
    provider.shutdown()


# -- imports, and one library without the other ----------------------------------------------------


def run_child(script: str, *, blocked: Optional[str] = None, **env: str) -> Any:
    """Run ``script`` in a fresh interpreter (with ``blocked`` unimportable) and return the JSON
    it prints last."""
    prelude = f"import sys\nsys.modules[{blocked!r}] = None\n" if blocked else ""
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_loads_neither_library() -> None:
    """import humanloop_logging and its metrics names load neither prometheus_client nor
    opentelemetry."""
    result = run_child(
        """
        import json, sys
        import humanloop_logging
        from humanloop_logging import FeedbackCollector, FeedbackInstruments
        from humanloop_logging import instrument_opentelemetry, register_prometheus
        import humanloop_logging.metrics
        loaded = [m for m in sys.modules if m.split(".")[0] in ("prometheus_client", "opentelemetry")]
        print(json.dumps(loaded))
        """
    )
    assert result == []


def test_prometheus_alone(fake_humanloop: FakeHumanloop) -> None:
    """Without OpenTelemetry installed, the Prometheus collector works on the default registry
    and instrument_opentelemetry() says which extra to install."""
    result = run_child(
        """
        import json
        import prometheus_client
        from humanloop_logging import FeedbackHandler, instrument_opentelemetry, register_prometheus

        handler = FeedbackHandler(name="alone")
        register_prometheus()
        try:
            instrument_opentelemetry()
        except ImportError as exc:
            error = str(exc)
        scrape = prometheus_client.generate_latest().decode()
        line = 'humanloop_feedback_enqueued_total{shipper="alone"} 0.0'
        print(json.dumps({"error": error, "scraped": line in scrape.splitlines()}))
        """,
        blocked="opentelemetry",
        **humanloop_env(fake_humanloop.api_key, fake_humanloop.base_url),
    )
    assert result == {
        "error": "instrument_opentelemetry needs opentelemetry-api: "
        "pip install 'humanloop-logging[opentelemetry]'",
        "scraped": True,
    }


def test_opentelemetry_alone(fake_humanloop: FakeHumanloop) -> None:
    """Without prometheus_client installed, the instruments work on the global meter provider
    and FeedbackCollector() says which extra to install."""
    result = run_child(
        """
        import json
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from humanloop_logging import FeedbackCollector, FeedbackHandler, instrument_opentelemetry

        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        handler = FeedbackHandler(name="alone")
        instrument_opentelemetry()
        try:
            FeedbackCollector()
        except ImportError as exc:
            error = str(exc)
        seen = {
            (metric.name, point.attributes["shipper"], point.value)
            for resource in reader.get_metrics_data().resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            for point in metric.data.data_points
        }
        print(json.dumps({"error": error, "observed": ("humanloop.feedback.sent", "alone", 0) in seen}))
        """,
        blocked="prometheus_client",
        **humanloop_env(fake_humanloop.api_key, fake_humanloop.base_url),
    )
    assert result == {
        "error": "FeedbackCollector needs prometheus_client: "
        "pip install 'humanloop-logging[prometheus]'",
        "observed": True,
    }


# -- fork ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_counts_from_zero(fake_humanloop: FakeHumanloop) -> None:
    """In a forked child every series starts at zero, the counts kept of the parent's collected
    shippers included, and counts the child's own records; the parent's are untouched."""
    result = run_child(
        """
        import gc, json, os
        from prometheus_client import CollectorRegistry
        from prometheus_client.parser import text_string_to_metric_families
        from prometheus_client import generate_latest
        from humanloop_logging import FeedbackProcessor, FeedbackShipper, register_prometheus

        registry = CollectorRegistry()
        register_prometheus(registry)

        def sent():
            text = generate_latest(registry).decode()
            return {
                sample.labels["shipper"]: sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "humanloop_feedback_sent_total"
            }

        def send(shipper, data_id):
            event = {"event": "x", "data_id": data_id, "type": "rating", "value": "good"}
            FeedbackProcessor(shipper=shipper)(None, "info", event)

        shipper = FeedbackShipper()
        gone = FeedbackShipper(name="gone")
        send(shipper, "parent-1")
        send(gone, "parent-2")
        assert shipper.flush(15.0) and gone.close(15.0)
        del gone
        gc.collect()
        before = sent()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            at_fork = sent()
            send(shipper, "child-1")
            shipper.flush(15.0)
            os.write(write, json.dumps({"at_fork": at_fork, "later": sent()}).encode())
            os._exit(0)
        os.close(write)
        child = json.loads(os.read(read, 65536))
        os.waitpid(pid, 0)
        print(json.dumps({"before": before, "child": child, "parent": sent()}))
        """,
        **humanloop_env(fake_humanloop.api_key, fake_humanloop.base_url),
    )
    assert result == {
        "before": {"default": 1.0, "gone": 1.0},
        "child": {"at_fork": {"default": 0.0}, "later": {"default": 1.0}},
        "parent": {"default": 1.0, "gone": 1.0},
    }
    assert sorted(item["data_id"] for item in fake_humanloop.received) == [
        "child-1",
        "parent-1",
        "parent-2",
    ]


def test_rig_stats_match_the_scrape(rigs: Rigs) -> None:
    """A scrape of one shipper says what its stats() says, field for field."""
    [name] = names("same")
    rig: Rig = rigs(name=name)
    for index in range(4):
        rig.send(f"dp-{index}")
    assert rig.shipper.flush(15.0)
    registry = CollectorRegistry()
    register_prometheus(registry, shippers=[rig.shipper])
    assert scrape(registry, [name]) == {name: of(rig.stats())}
