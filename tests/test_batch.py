"""Warm runs store their values in batches, and report each key once its batch is stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dogpile.cache import make_region
from dogpile.cache.proxy import ProxyBackend

from dogpile_warm import CacheWarmingEngine, WarmingTask, warmable
from dogpile_warm._core.batch import BATCH_SIZE
from dogpile_warm.testing import captured_signals


class CountingProxy(ProxyBackend):
    """Counts the region's single and multiple writes; can fail the multiple ones."""

    def __init__(self) -> None:
        super().__init__()
        self.sets = 0
        self.set_multis: list[int] = []
        self.fail = False

    def set(self, key: Any, value: Any) -> None:
        self.sets += 1
        self.proxied.set(key, value)

    def set_multi(self, mapping: Any) -> None:
        if self.fail:
            raise ConnectionError("backend gone")
        self.set_multis.append(len(mapping))
        self.proxied.set_multi(mapping)


@pytest.fixture
def counted() -> Iterator[tuple[CacheWarmingEngine, CountingProxy]]:
    proxy = CountingProxy()
    region = make_region().configure("dogpile.cache.memory", wrap=[proxy])
    engine = CacheWarmingEngine(region, max_workers=4)
    yield engine, proxy
    engine.close()


def test_a_warm_run_stores_its_keys_with_set_multi(
    counted: tuple[CacheWarmingEngine, CountingProxy],
) -> None:
    """110 keys of one task cost one set_multi per BATCH_SIZE keys and one for the rest,
    no single sets."""
    engine, proxy = counted

    @warmable(priority=100, engine=engine, warm_args=[(i,) for i in range(110)])
    def square(x: int) -> int:
        return x * x

    report = engine.warm_critical_data()
    assert report["succeeded"] == 110 and report["failed"] == 0
    full, rest = divmod(110, BATCH_SIZE)
    assert sorted(proxy.set_multis) == sorted([BATCH_SIZE] * full + [rest]) and proxy.sets == 0
    assert square.get(7) == 49


def test_each_key_is_reported_once_its_batch_is_stored(
    counted: tuple[CacheWarmingEngine, CountingProxy],
) -> None:
    """on_result and the warmed signal come once per key, after the write, as successes."""
    engine, _proxy = counted
    seen: list[tuple[str, bool]] = []

    @warmable(priority=100, engine=engine, warm_args=[(i,) for i in range(10)])
    def double(x: int) -> int:
        return 2 * x

    with captured_signals() as log:
        engine.warm_tasks(on_result=lambda row: seen.append((row["key"], row["success"])))
    keys = {double.key_for(i) for i in range(10)}
    assert sorted(seen) == sorted((k, True) for k in keys)
    assert {c.kwargs["key"] for c in log.named("warmed")} == keys


def test_a_failed_batch_write_fails_its_keys_and_keeps_old_values(
    counted: tuple[CacheWarmingEngine, CountingProxy],
) -> None:
    """When set_multi raises, every key of the batch is reported failed, with the error."""
    engine, proxy = counted
    version = "old"
    engine.register_task(
        WarmingTask("plain", "plain", "k:plain", lambda: version, priority=100), is_critical=True
    )
    engine.warm_critical_data()
    version, proxy.fail = "new", True
    with captured_signals() as log:
        report = engine.warm_critical_data()
    assert report["failed"] == 1
    assert "backend gone" in str(report["results"][0]["error"])
    assert [c.kwargs["key"] for c in log.named("warm_failed")] == ["k:plain"]
    # Read as another process would: this engine now skips its backend for a while.
    reader = CacheWarmingEngine(engine.region)
    assert reader.get_cached("k:plain") == "old"
    reader.close()


def test_warming_one_key_alone_still_takes_the_lock_and_sets_it(
    counted: tuple[CacheWarmingEngine, CountingProxy],
) -> None:
    """.warm() outside a run is stored at once with a single set."""
    engine, proxy = counted

    @warmable(engine=engine)
    def single(x: int) -> int:
        return x

    assert single.warm(3) is True
    assert proxy.sets == 1 and proxy.set_multis == []
