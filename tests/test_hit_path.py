"""The memory backend's hit shortcut and the memoised keys give the same answers as the full read."""

from __future__ import annotations

import enum
import threading
import time

import pytest
from dogpile.cache import CacheRegion, make_region

from dogpile_warm import CacheWarmingEngine, WarmableFunction, warmable
from dogpile_warm._core.memory_index import index_for
from dogpile_warm._core.regions import RegionRegistry
from dogpile_warm._core.store import CacheStore, Entry
from dogpile_warm._usage.usage import DRAIN_AT, QUEUE_CAP
from dogpile_warm.testing import FakeClock


def counting() -> tuple[list[object], WarmableFunction[[object], object]]:
    calls: list[object] = []

    @warmable(ttl=3600)
    def echo(x: object) -> object:
        calls.append(x)
        return x

    return calls, echo


def test_equal_arguments_of_different_types_keep_different_values() -> None:
    """1, True, 1.0 and "1" compare equal or alike but are four keys, also on repeat calls."""
    calls, echo = counting()
    for _ in range(2):
        answers = [echo(1), echo(True), echo(1.0), echo("1")]
    assert calls == [1, True, 1.0, "1"]
    assert [type(a) for a in answers] == [int, bool, float, str]


def test_equal_arguments_of_other_types_never_take_a_memoised_key() -> None:
    """1, True, 1.0 and an IntEnum member are equal but print differently: each its own key,
    whichever was called first; unhashable arguments work too."""

    class Level(enum.IntEnum):
        ONE = 1

    class Colour(enum.StrEnum):
        RED = "red"

    @warmable(ttl=60)
    def kind(x: object) -> str:
        return type(x).__name__

    assert [kind(1), kind(True), kind(1.0), kind(Level.ONE)] == ["int", "bool", "float", "Level"]
    assert [kind(True), kind(1)] == ["bool", "int"]
    assert [kind("red"), kind(Colour.RED), kind("red")] == ["str", "Colour", "str"]
    assert kind([1, 2]) == kind([1, 2]) == "list"
    assert len({kind.key_for(x) for x in (1, True, 1.0, Level.ONE)}) == 4


def test_tuples_with_equal_items_of_different_types_keep_different_values() -> None:
    """(1,) and (True,) are equal tuples but different arguments."""
    calls, echo = counting()
    assert echo((1,)) == (1,)
    assert echo((True,)) == (True,)
    assert echo((True,)) is not None
    assert calls == [(1,), (True,)]


def test_set_is_seen_by_the_next_read() -> None:
    """A value stored with .set replaces the one a read just verified."""
    _calls, echo = counting()
    echo(5)
    echo(5)
    echo.set("new", 5)
    assert echo(5) == "new"


def test_invalidate_is_seen_by_the_next_read() -> None:
    """A read after .invalidate computes again."""
    calls, echo = counting()
    echo(5), echo(5)
    echo.invalidate(5)
    echo(5)
    assert calls == [5, 5]


def test_tag_invalidation_is_seen_by_the_next_read(engine: CacheWarmingEngine) -> None:
    """A read after invalidate_by_tags computes again, even of a key read a moment ago."""
    calls: list[int] = []

    @warmable(ttl=3600, tags={"t"})
    def tagged(x: int) -> int:
        calls.append(x)
        return x

    tagged(1), tagged(1)
    engine.invalidate_by_tags({"t"})
    tagged(1)
    assert calls == [1, 1]


def test_two_engines_sharing_a_memory_region_see_each_others_writes() -> None:
    """The shortcut is per backend: a write through one engine reaches the other's reads."""
    region = make_region().configure("dogpile.cache.memory")
    first, second = CacheWarmingEngine(region), CacheWarmingEngine(region)
    computed: list[str] = []

    def make(engine: CacheWarmingEngine, label: str) -> WarmableFunction[[], str]:
        @warmable(ttl=3600, engine=engine, name="shared:value", tags={"s"})
        def value() -> str:
            computed.append(label)
            return label

        return value

    one, two = make(first, "first"), make(second, "second")
    assert one() == "first" and two() == "first"
    two.set("from second")
    assert one() == "from second"
    second.invalidate_by_tags({"s"})
    assert one() == "first"
    assert computed == ["first", "first"]
    first.close()
    second.close()


def test_only_the_plain_memory_backend_gets_the_shortcut() -> None:
    """The pickling memory backend is read through the region every time."""
    plain = make_region().configure("dogpile.cache.memory")
    pickled = make_region().configure("dogpile.cache.memory_pickle")
    assert index_for(plain.backend) is not None
    assert index_for(pickled.backend) is None
    assert index_for(plain.backend) is index_for(plain.backend)


def test_hits_through_the_shortcut_are_counted_and_tracked(engine: CacheWarmingEngine) -> None:
    """Every call counts once in get_stats and in the tracker, however it was answered."""
    _calls, echo = counting()
    for _ in range(1000):
        echo(7)
    stats = engine.get_stats()
    assert (stats["hits"], stats["misses"]) == (999, 1)
    assert engine.usage_tracker.get_hot_keys(1) == [(echo.key_for(7), 1000)]


def test_a_verification_begun_before_a_write_is_not_remembered() -> None:
    """A read that started before a write and ends after it must not leave its stale entry."""
    region = make_region().configure("dogpile.cache.memory")
    index = index_for(region.backend)
    assert index is not None
    stale = Entry("old", 0.0, 60.0, ())
    stamp = index.stamp("k")
    index.written("k")  # a write lands while the read is in flight
    index.verified("k", stale, stamp)
    assert index.entries.get("k") is None
    index.verified("k", Entry("new", 0.0, 60.0, ()), index.stamp("k"))
    assert index.entries["k"].value == "new"
    index.invalidated()
    assert index.entries.get("k") is None


def test_reconfiguring_the_region_sends_reads_to_the_new_one(engine: CacheWarmingEngine) -> None:
    """A value verified in the old memory region is not answered once another is configured."""
    calls, echo = counting()
    echo(1), echo(1)
    engine.configure_region("default", "dogpile.cache.memory")
    echo(1), echo(1)
    assert calls == [1, 1]


def test_hits_and_misses_from_many_threads_are_counted_exactly(engine: CacheWarmingEngine) -> None:
    """Eight threads reading while the figures are read: no access lost or counted twice."""
    _calls, echo = counting()
    keys = range(50)
    start = threading.Barrier(9)

    def reader() -> None:
        start.wait()
        for n in range(5000):
            echo(n % len(keys))

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    while any(thread.is_alive() for thread in threads):
        engine.get_stats()  # drains while the readers append
    stats = engine.get_stats()
    assert stats["hits"] + stats["misses"] == 8 * 5000
    assert stats["misses"] >= len(keys)
    counts = dict(engine.usage_tracker.get_hot_keys(len(keys)))
    assert sum(counts.values()) == 8 * 5000


def test_a_region_rebound_while_a_read_resolves_it_is_not_read_from_after(
    engine: CacheWarmingEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the memory shortcut must survive: configure() lands between a read
    resolving the old region and publishing its index; later reads use the new region."""
    calls, echo = counting()
    registry = type(engine.regions)
    resolve = registry.store_for
    rebound: list[bool] = []

    def store_for_then_rebind(self: RegionRegistry, region: CacheRegion | str | None) -> CacheStore:
        store = resolve(self, region)
        if not rebound:
            rebound.append(True)
            engine.configure_region("default", "dogpile.cache.memory")
        return store

    echo(1), echo(1)  # verified in the old region's index
    engine.configure_region("other", "dogpile.cache.memory")  # the next read resolves again
    monkeypatch.setattr(registry, "store_for", store_for_then_rebind)
    echo(1)  # resolves the old region; "default" is rebound meanwhile
    monkeypatch.setattr(registry, "store_for", resolve)
    echo(1), echo(1)
    assert calls == [1, 1]  # computed again in the new region, then a hit there


def test_applying_queued_hits_never_delays_a_checked_value(
    engine: CacheWarmingEngine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read applies the queued hits before it checks freshness, so however long that
    takes, the value it returns is within its ttl (here: applying them takes 0.3 s)."""
    usage = engine.usage
    drain = usage.drain

    @warmable(ttl=0.2, refresh_ahead=None)
    def stamp() -> float:
        return clock()

    stamp()
    while len(usage.queued_hits) < DRAIN_AT:
        stamp()  # hits, queued

    def slow_drain(wait: bool = True) -> None:
        clock.advance(0.3)
        drain(wait)

    monkeypatch.setattr(usage, "drain", slow_drain)
    value = stamp()
    assert clock() - value <= 0.2


@pytest.mark.slow
def test_readers_on_many_threads_cannot_outpace_the_applying_of_their_hits(
    engine: CacheWarmingEngine,
) -> None:
    """Eight threads hitting one key never queue more than QUEUE_CAP hits (and a few in
    flight): past it, a read waits for its turn to apply them."""
    _calls, echo = counting()
    echo(1)
    stop = threading.Event()
    longest = 0

    def reader() -> None:
        while not stop.is_set():
            echo(1)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 1.5  # real time: the queue is watched under load for a while
    while time.monotonic() < deadline:
        longest = max(longest, len(engine.usage.queued_hits))
        time.sleep(0.0005)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert longest <= QUEUE_CAP + 8
