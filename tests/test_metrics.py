"""The Prometheus extra: counters from the signals, gauges from the engine, bounded labels."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import dogpile_warm
from dogpile_warm import CacheWarmingEngine, WarmingTask, signals, warmable
from dogpile_warm.contrib.prometheus import PrometheusMetrics
from dogpile_warm.testing import FakeClock
from tests.conftest import BACKENDS, configure_backend
from tests.servers import ClientCloser, Server
from tests.test_examples import run_example


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Iterator[PrometheusMetrics]:
    """Metrics of the test's (default) engine on a fresh registry, removed afterwards."""
    with PrometheusMetrics(registry=registry) as installed:
        yield installed


def scrape(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def samples(registry: CollectorRegistry) -> list[str]:
    """The sample lines of a scrape (no HELP/TYPE comments)."""
    return [line for line in scrape(registry).splitlines() if not line.startswith("#")]


def series(registry: CollectorRegistry) -> set[str]:
    """The label sets of a scrape: each sample line without its value."""
    return {line.rsplit(" ", 1)[0] for line in samples(registry)}


@pytest.mark.slow
def test_importing_dogpile_warm_does_not_import_prometheus_client() -> None:
    """prometheus_client is imported by dogpile_warm.contrib.prometheus only, never by the package."""
    code = (
        "import sys, dogpile_warm, dogpile_warm.testing, dogpile_warm.signals; "
        "assert 'prometheus_client' not in sys.modules, 'imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_hits_and_misses_are_counted_per_task(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    """Each call counts one hit or one miss under its function's task id."""

    @warmable(name="catalog")
    def catalog() -> list[str]:
        return ["espresso"]

    @warmable(name="prices")
    def prices(currency: str) -> float:
        return 2.5

    catalog()
    catalog()
    catalog()
    prices("EUR")
    prices("USD")
    prices("EUR")
    text = scrape(registry)
    assert 'dogpile_warm_misses_total{task="catalog"} 1.0' in text
    assert 'dogpile_warm_hits_total{task="catalog"} 2.0' in text
    assert 'dogpile_warm_misses_total{task="prices"} 2.0' in text
    assert 'dogpile_warm_hits_total{task="prices"} 1.0' in text


def test_each_miss_is_observed_in_the_duration_histogram_in_seconds(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    """A miss lands in miss_duration_seconds with the compute time in seconds, not ms."""

    @warmable(name="slow")
    def slow() -> int:
        time.sleep(0.03)  # real time: the compute time the histogram measures
        return 1

    slow()
    slow()
    text = scrape(registry)
    assert 'dogpile_warm_miss_duration_seconds_count{task="slow"} 1.0' in text
    assert 'dogpile_warm_miss_duration_seconds_bucket{le="0.025",task="slow"} 0.0' in text
    assert 'dogpile_warm_miss_duration_seconds_bucket{le="10.0",task="slow"} 1.0' in text


def test_warm_critical_data_counts_successes_and_failures_per_task(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    """warm_critical_data with one failing task: one warming and one failure, each under its task."""

    @warmable(priority=100, name="catalog")
    def catalog() -> list[str]:
        return ["espresso"]

    @warmable(priority=100, name="rates")
    def rates() -> dict[str, float]:
        raise ConnectionError("rates service down")

    report = dogpile_warm.warm_critical_data()
    assert (report["succeeded"], report["failed"]) == (1, 1)
    text = scrape(registry)
    assert 'dogpile_warm_warmings_total{task="catalog"} 1.0' in text
    assert 'dogpile_warm_warm_duration_seconds_count{task="catalog"} 1.0' in text
    assert 'dogpile_warm_warm_failures_total{task="rates"} 1.0' in text
    assert 'dogpile_warm_warmings_total{task="rates"}' not in text
    assert 'dogpile_warm_task_runs_total{task="rates"} 1.0' in text
    assert 'dogpile_warm_task_failures_total{task="rates"} 1.0' in text


def test_registered_tasks_and_warm_cache_values_are_labelled(
    registry: CollectorRegistry, metrics: PrometheusMetrics, engine: CacheWarmingEngine
) -> None:
    """A plain WarmingTask counts under its task_id; warm_cache values under "warm_cache"."""
    engine.register_task(WarmingTask("banner", "Banner", "banner", lambda: "hi"), True)
    engine.warm_critical_data()
    assert engine.warm_cache("motd", lambda: "hello")
    assert not engine.warm_cache("broken", lambda: 1 / 0)
    text = scrape(registry)
    assert 'dogpile_warm_warmings_total{task="banner"} 1.0' in text
    assert 'dogpile_warm_warmings_total{task="warm_cache"} 1.0' in text
    assert 'dogpile_warm_warm_failures_total{task="warm_cache"} 1.0' in text


def test_background_refreshes_are_counted(
    registry: CollectorRegistry,
    metrics: PrometheusMetrics,
    engine: CacheWarmingEngine,
    clock: FakeClock,
) -> None:
    """A refresh-ahead run counts in refreshes_total and refresh_duration_seconds."""

    @warmable(ttl=10, refresh_ahead=0.5, name="quote")
    def quote() -> float:
        return clock()

    first = quote()
    clock.advance(6)  # past refresh_ahead * ttl, within ttl
    assert quote() == first
    engine.close()  # waits for the background refresh
    text = scrape(registry)
    assert 'dogpile_warm_refreshes_total{task="quote"} 1.0' in text
    assert 'dogpile_warm_refresh_duration_seconds_count{task="quote"} 1.0' in text
    assert 'dogpile_warm_hits_total{task="quote"} 1.0' in text


def test_invalidations_are_counted_per_call_and_per_tag(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    """invalidate_by_tags counts one call, and one per tag invalidated."""
    dogpile_warm.invalidate_by_tags({"catalog", "prices"})
    dogpile_warm.invalidate_by_tags("catalog")
    text = scrape(registry)
    assert "dogpile_warm_invalidations_total 2.0" in text
    assert 'dogpile_warm_invalidated_tags_total{tag="catalog"} 2.0' in text
    assert 'dogpile_warm_invalidated_tags_total{tag="prices"} 1.0' in text


def test_efficiency_score_appears_once_a_warmed_value_is_read(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    """The efficiency gauge is absent while unknown, then 100 once the warmed value served a read."""

    @warmable(priority=100, name="catalog")
    def catalog() -> list[str]:
        return ["espresso"]

    dogpile_warm.warm_critical_data()
    assert not any(line.startswith("dogpile_warm_efficiency_score") for line in samples(registry))
    catalog()
    assert "dogpile_warm_efficiency_score 100.0" in scrape(registry)


def test_engine_figures_are_read_at_scrape_time(
    registry: CollectorRegistry, metrics: PrometheusMetrics, engine: CacheWarmingEngine
) -> None:
    """Gauges follow get_stats(): hit ratio, task counts, running, backend errors, per-task interval."""

    @warmable(priority=100, name="catalog")
    def catalog() -> list[str]:
        return ["espresso"]

    @warmable(priority=10, name="search")
    def search(prefix: str) -> list[str]:
        return []

    catalog()
    catalog()
    catalog()
    search("e")
    record = engine.registry.get("catalog")
    assert record is not None
    record.interval_minutes = 15
    text = scrape(registry)
    assert "dogpile_warm_hit_ratio 0.5" in text
    assert "dogpile_warm_tasks 2.0" in text
    assert "dogpile_warm_critical_tasks 1.0" in text
    assert "dogpile_warm_running 0.0" in text
    assert "dogpile_warm_backend_errors_total 0.0" in text
    assert 'dogpile_warm_backend_failures_total{kind="unavailable"} 0.0' in text
    assert "dogpile_warm_backends_down 0.0" in text
    assert 'dogpile_warm_task_interval_seconds{task="catalog"} 900.0' in text
    assert 'dogpile_warm_task_interval_seconds{task="search"} 3600.0' in text


@pytest.mark.memcached
def test_backend_failures_are_exported_by_kind(
    registry: CollectorRegistry,
    metrics: PrometheusMetrics,
    engine: CacheWarmingEngine,
    memcached_server: Server,
    client_closer: ClientCloser,
) -> None:
    """Values memcached refuses count as refused, apart from outages (none here)."""
    memcached_server.flush()
    configure_backend(engine, "memcached", memcached_server)
    client_closer.watch(engine.region)

    @warmable(ttl=60, name="big")
    def big() -> bytes:
        return b"x" * 2_000_000  # over memcached's 1 MB item limit

    for _ in range(3):
        big()
    text = scrape(registry)
    assert 'dogpile_warm_backend_failures_total{kind="refused"} 3.0' in text
    assert 'dogpile_warm_backend_failures_total{kind="unavailable"} 0.0' in text
    assert "dogpile_warm_backend_errors_total 3.0" in text
    assert "dogpile_warm_backends_down 0.0" in text


def test_task_labels_are_capped_with_an_other_overflow(registry: CollectorRegistry) -> None:
    """Beyond max_tasks distinct task ids, events and per-task gauges share task="other"."""
    functions = []
    for n in range(5):

        @warmable(priority=100, name=f"task{n}")
        def fn() -> int:
            return 1

        functions.append(fn)
    with PrometheusMetrics(registry=registry, max_tasks=3):
        for fn in functions:
            fn()
        dogpile_warm.warm_critical_data()
        lines = samples(registry)
        labels = {line.split('task="')[1].split('"')[0] for line in lines if 'task="' in line}
        assert labels == {"task0", "task1", "task2", "other"}
        assert 'dogpile_warm_misses_total{task="other"} 2.0' in lines
        assert 'dogpile_warm_warmings_total{task="other"} 2.0' in lines
        assert 'dogpile_warm_task_runs_total{task="other"} 2.0' in lines
        assert not any(
            line.startswith('dogpile_warm_task_interval_seconds{task="other"}') for line in lines
        )


def test_tag_labels_are_capped_with_an_other_overflow(registry: CollectorRegistry) -> None:
    """Beyond max_tags distinct tags, invalidations count under tag="other"."""
    with PrometheusMetrics(registry=registry, max_tags=2):
        for tag in ("a", "b", "c", "d"):
            dogpile_warm.invalidate_by_tags(tag)
        text = scrape(registry)
    assert 'dogpile_warm_invalidated_tags_total{tag="a"} 1.0' in text
    assert 'dogpile_warm_invalidated_tags_total{tag="b"} 1.0' in text
    assert 'dogpile_warm_invalidated_tags_total{tag="other"} 2.0' in text
    assert "dogpile_warm_invalidations_total 4.0" in text


@pytest.mark.slow
def test_distinct_keys_add_no_label_sets(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    """100k distinct keys of one function leave the scrape's label sets as they were."""

    @warmable(name="lookup")
    def lookup(n: int) -> int:
        return n

    lookup(0)
    lookup(0)
    before = series(registry)
    for n in range(1, 1000):  # real calls: distinct keys through the whole read path
        lookup(n)
        lookup(n)
    # The other 99k keys are sent as the function itself sends them (a real
    # miss runs the whole read path and stores a value: too slow for a unit
    # test at this count).
    for n in range(1000, 100_000):
        signals.cache_miss.send(lookup, key=lookup.key_for(n), duration_ms=0.1)
        signals.cache_hit.send(lookup, key=lookup.key_for(n), age=0.0)
    assert series(registry) == before
    text = scrape(registry)
    assert 'dogpile_warm_misses_total{task="lookup"} 100000.0' in text
    assert 'dogpile_warm_hits_total{task="lookup"} 100000.0' in text


def test_events_of_another_engine_are_not_counted(
    registry: CollectorRegistry, metrics: PrometheusMetrics, clock: FakeClock
) -> None:
    """Functions, tasks and invalidations of an engine other than the metrics' are ignored."""
    other = CacheWarmingEngine(clock=clock)
    try:

        @warmable(priority=100, name="elsewhere", engine=other)
        def elsewhere() -> int:
            return 1

        elsewhere()
        elsewhere()
        other.warm_critical_data()
        other.warm_cache("motd", lambda: "hi")
        other.invalidate_by_tags("x")
    finally:
        other.close()
    text = scrape(registry)
    assert "elsewhere" not in text
    assert 'task="warm_cache"' not in text
    assert "dogpile_warm_invalidations_total 0.0" in text


def test_a_warmable_method_counts_under_its_task(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    """A method's calls, through any instance, count under the method's task id."""

    class Shop:
        @warmable(name="Shop.menu")
        def menu(self) -> list[str]:
            return ["espresso"]

    Shop().menu()
    Shop().menu()
    text = scrape(registry)
    assert 'dogpile_warm_misses_total{task="Shop.menu"} 1.0' in text
    assert 'dogpile_warm_hits_total{task="Shop.menu"} 1.0' in text


def test_disconnect_stops_counting_and_reconnect_carries_on(registry: CollectorRegistry) -> None:
    """After disconnect nothing counts and nothing is exposed; connect again resumes the counts."""

    @warmable(name="catalog")
    def catalog() -> list[str]:
        return ["espresso"]

    installed = PrometheusMetrics(registry=registry).connect()
    catalog()
    catalog()
    installed.disconnect()
    assert not signals.cache_hit.receivers and not signals.warmed.receivers
    assert scrape(registry) == ""
    catalog()
    catalog()
    installed.connect()
    try:
        assert 'dogpile_warm_hits_total{task="catalog"} 1.0' in scrape(registry)
    finally:
        installed.disconnect()


def test_a_clashing_second_install_fails_and_leaves_nothing_behind(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    """Same names on one registry raise ValueError and connect nothing; another namespace works."""
    before = len(signals.cache_hit.receivers)
    second = PrometheusMetrics(registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        second.connect()
    assert not second.connected and len(signals.cache_hit.receivers) == before
    with PrometheusMetrics(registry=registry, namespace="shop_cache"):
        assert "shop_cache_tasks 0.0" in scrape(registry)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_hits_and_misses_are_counted_on_every_backend(
    backend: str, registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    """Counting is the same on memory, a real memcached and a real Redis."""

    @warmable(name="catalog")
    def catalog(n: int) -> int:
        return n

    catalog(1)
    catalog(1)
    catalog(2)
    text = scrape(registry)
    assert 'dogpile_warm_misses_total{task="catalog"} 2.0' in text
    assert 'dogpile_warm_hits_total{task="catalog"} 1.0' in text
    assert "dogpile_warm_backend_errors_total 0.0" in text


@pytest.mark.slow
def test_metrics_example_prints_a_scrape_excerpt() -> None:
    """examples/metrics.py prints per-task counters and the efficiency score from a scrape."""
    done = run_example("metrics.py")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert 'dogpile_warm_warm_failures_total{task="exchange_rates"} 1.0' in lines
    assert 'dogpile_warm_misses_total{task="search"} 3.0' in lines
    assert "dogpile_warm_efficiency_score 100.0" in lines
    assert lines[-1] == "metrics OK"


def test_running_follows_the_background_scheduler(
    registry: CollectorRegistry, metrics: PrometheusMetrics, engine: CacheWarmingEngine
) -> None:
    """The running gauge is 1 while the scheduler runs and 0 once it is stopped."""
    engine.start(check_every=0.05)
    try:
        assert "dogpile_warm_running 1.0" in scrape(registry)
    finally:
        engine.stop()
    assert "dogpile_warm_running 0.0" in scrape(registry)
