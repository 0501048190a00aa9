"""Usage tracking, hot keys, schedule optimisation and the warming figures."""

from __future__ import annotations

import tracemalloc

import pytest
from dogpile.cache.api import NO_VALUE

from dogpile_warm import CacheWarmingEngine, UsagePatternTracker, WarmingTask, warmable
from dogpile_warm.testing import FakeClock


def test_hot_keys_are_the_most_read_hottest_first(clock: FakeClock) -> None:
    """get_hot_keys returns (key, count) sorted by count."""
    tracker = UsagePatternTracker(clock=clock)
    for key, n in [("a", 3), ("b", 5), ("c", 1)]:
        for _ in range(n):
            tracker.record_access(key)
    assert tracker.get_hot_keys(2) == [("b", 5), ("a", 3)]


def test_access_frequency_is_reads_in_the_window_per_minute(clock: FakeClock) -> None:
    """Reads older than the window do not count; the rate divides by the window length."""
    tracker = UsagePatternTracker(clock=clock)
    tracker.record_access("k", timestamp=clock.now - 2 * 3600)
    for i in range(30):
        tracker.record_access("k", timestamp=clock.now - i * 60)
    assert tracker.get_access_frequency("k", window_minutes=60) == pytest.approx(30 / 60)
    assert tracker.get_access_frequency("unknown") == 0.0


def test_next_access_is_one_mean_interval_after_the_last(clock: FakeClock) -> None:
    """Reads every 10 s predict the next one 10 s after the last; one read predicts nothing."""
    tracker = UsagePatternTracker(clock=clock)
    tracker.record_access("once")
    assert tracker.predict_next_access("once") is None
    for i in range(5):
        tracker.record_access("steady", timestamp=100.0 + 10 * i)
    assert tracker.predict_next_access("steady") == pytest.approx(150.0)


def test_history_per_key_is_bounded(clock: FakeClock) -> None:
    """Only history_size timestamps are kept per key; the count keeps growing."""
    tracker = UsagePatternTracker(history_size=5, clock=clock)
    for _ in range(50):
        tracker.record_access("k")
    assert tracker.get_hot_keys(1) == [("k", 50)]
    assert tracker.get_access_frequency("k", 1) == 5.0


@pytest.mark.slow
def test_a_flood_of_one_off_keys_keeps_memory_flat_and_hot_keys_right(clock: FakeClock) -> None:
    """200,000 distinct keys stay within max_keys and do not push out the hot key."""
    tracker = UsagePatternTracker(history_size=4, max_keys=1000, clock=clock)
    for _ in range(500):
        tracker.record_access("hot")
    tracemalloc.start()
    for i in range(20_000):
        tracker.record_access(f"warmup-{i}")
    baseline, _ = tracemalloc.get_traced_memory()
    for i in range(200_000):
        tracker.record_access(f"one-off-{i}")
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert tracker.known_keys() <= 1000
    assert tracker.get_hot_keys(1)[0][0] == "hot"
    assert current - baseline < 256 * 1024, f"grew by {current - baseline} bytes"


def test_clear_forgets_everything(clock: FakeClock) -> None:
    """clear() empties the tracker."""
    tracker = UsagePatternTracker(clock=clock)
    tracker.record_access("k")
    tracker.clear()
    assert tracker.get_hot_keys() == [] and tracker.known_keys() == 0


def test_hits_and_misses_feed_the_engine_tracker(engine: CacheWarmingEngine) -> None:
    """Every call of a decorated function is recorded under its key."""

    @warmable(ttl=60)
    def page(n: int) -> int:
        return n

    for n in (1, 1, 1, 2):
        page(n)
    assert engine.usage_tracker.get_hot_keys(2) == [(page.key_for(1), 3), (page.key_for(2), 1)]


def test_warm_hot_keys_recomputes_with_remembered_arguments(engine: CacheWarmingEngine) -> None:
    """The hottest keys are recomputed with the arguments of real calls."""
    computed: list[tuple[int, str]] = []

    @warmable(ttl=60)
    def item(n: int, fmt: str = "x") -> str:
        computed.append((n, fmt))
        return f"{fmt}{n}"

    for _ in range(3):
        item(7, fmt="y")
    item(8)
    report = engine.warm_hot_keys(top_n=1)
    assert [r["key"] for r in report["results"]] == [item.key_for(7, "y")]
    assert report["succeeded"] == 1 and report["skipped"] == 0
    assert computed == [(7, "y"), (8, "x"), (7, "y")]


def test_optimize_schedules_sets_intervals_from_access_frequency(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """> 1/min: 15, > 0.5: 30, > 0.1: 60, else 120 minutes."""
    made = {}
    for name, reads in [("busy", 90), ("steady", 45), ("calm", 10), ("idle", 0)]:

        @warmable(ttl=60, name=name)
        def fn() -> int:
            return 1

        made[name] = fn
        for _ in range(reads):
            fn()
            clock.advance(0.1)
    report = engine.optimize_schedules()
    intervals = {s["task_id"]: s["interval_minutes"] for s in report["schedules_adjusted"]}
    assert report["tasks_optimized"] == 4
    assert intervals == {"busy": 15, "steady": 30, "idle": 120}  # "calm" stays at 60
    busy = engine.registry.get("busy")
    assert busy is not None and busy.interval_minutes == 15
    assert made["busy"].task.interval_minutes == 60  # the user's task is left as it was made


def test_efficiency_counts_warmed_values_that_were_read(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """Read warmed values are useful; expired or invalidated unread ones are not."""
    assert engine.get_performance()["efficiency_score"] is None

    @warmable(ttl=60, priority=100, tags={"a"})
    def read_one() -> int:
        return 1

    @warmable(ttl=60, priority=100, tags={"b"})
    def expires_unread() -> int:
        return 2

    @warmable(ttl=600, priority=100, tags={"c"})
    def invalidated_unread() -> int:
        return 3

    engine.warm_critical_data()
    read_one()
    engine.invalidate_by_tags({"c"})
    clock.advance(61)
    perf = engine.get_performance()
    assert perf["efficiency_score"] == pytest.approx(100 / 3)
    assert (perf["total_warmings"], perf["successful"], perf["failed"]) == (3, 3, 0)
    assert perf["fastest_ms"] <= perf["p95_ms"] <= perf["slowest_ms"]


def test_failed_warmings_count_in_the_figures(engine: CacheWarmingEngine) -> None:
    """A failing task shows in failed and total, not in the efficiency score."""

    def broken() -> int:
        raise RuntimeError("no")

    engine.register_task(
        WarmingTask("b", "b", "key:b", compute_fn=broken, priority=100), is_critical=True
    )
    engine.warm_critical_data()
    perf = engine.get_performance()
    assert (perf["total_warmings"], perf["failed"], perf["efficiency_score"]) == (1, 1, None)
    assert engine.get_cached("key:b") is NO_VALUE


def test_module_functions_reach_the_default_engine_figures(engine: CacheWarmingEngine) -> None:
    """get_warming_performance and optimize_warming_schedules use the default engine."""
    import dogpile_warm

    engine.warm_cache("k", lambda: 1)
    assert dogpile_warm.get_warming_performance()["total_warmings"] == 1
    assert dogpile_warm.optimize_warming_schedules() == {
        "tasks_optimized": 0,
        "schedules_adjusted": [],
    }


def test_accesses_recorded_out_of_order_are_counted_in_their_window(clock: FakeClock) -> None:
    """A timestamp older than the last one is kept in order, so windows count it right."""
    tracker = UsagePatternTracker(history_size=3, clock=clock)
    now = clock()
    for offset in (0, -120, -30):  # the last two are older than the first
        tracker.record_access("k", timestamp=now + offset)
    assert tracker.get_access_frequency("k", window_minutes=1) == 2.0
    assert tracker.get_access_frequency("k", window_minutes=3) == 1.0
    tracker.record_access("k", timestamp=now - 600)  # older than all three kept: dropped
    tracker.record_access("k", timestamp=now - 10)  # replaces the oldest kept
    assert tracker.get_access_frequency("k", window_minutes=1) == 3.0
    assert tracker.predict_next_access("k") == pytest.approx(now + 15)
