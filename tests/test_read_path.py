"""The read path as it runs: the direct call is taken, its inlined copies agree with their
owners, and a miss costs the round trips it should."""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

import pytest
from dogpile.cache.proxy import ProxyBackend

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._cached.cached import CachedFunction
from dogpile_warm.testing import FakeClock, captured_signals, wait_until
from tests.conftest import configure_backend
from tests.servers import ClientCloser, Server


def test_a_plain_function_is_called_straight_into_its_read_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Calling a plain decorated function never goes through wrapt's wrapper call."""
    through_wrapt: list[str] = []
    original = CachedFunction.__call__

    def spy(self: CachedFunction, *args: Any) -> Any:
        through_wrapt.append(self.name)
        return original(self, *args)

    monkeypatch.setattr(CachedFunction, "__call__", spy)

    @warmable(ttl=60)
    def square(x: int) -> int:
        return x * x

    assert square.direct
    assert [square(3), square(3)] == [9, 9]
    assert through_wrapt == []


def test_methods_bind_without_wrapt_unless_looked_up_on_their_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A method on an instance, a classmethod and a staticmethod reach their read path
    through the proxy's own binding (no wrapt wrapper call); a method looked up on its
    class, called with the instance first, goes through wrapt's binding, and both give
    the same key, value and attributes."""
    through_wrapt: list[str] = []
    original = CachedFunction.__call__

    def spy(self: CachedFunction, *args: Any) -> Any:
        through_wrapt.append(self.name.rsplit(".", 1)[-1])
        return original(self, *args)

    monkeypatch.setattr(CachedFunction, "__call__", spy)
    computed: list[str] = []

    class Shop:
        def __init__(self, name: str) -> None:
            self.name = name

        @warmable(ttl=60)
        def price(self, item: str) -> str:
            computed.append(item)
            return f"{self.name}:{item}"

        @warmable(ttl=60)
        @classmethod
        def currency(cls) -> str:
            return f"EUR@{cls.__name__}"

        @warmable(ttl=60)
        @staticmethod
        def vat() -> float:
            return 0.2

    shop = Shop("corner")
    assert (shop.price("tea"), Shop.currency(), shop.currency(), Shop.vat()) == (
        "corner:tea",
        "EUR@Shop",
        "EUR@Shop",
        0.2,
    )
    assert through_wrapt == []
    assert Shop.price(shop, "tea") == "corner:tea"  # the same key: a hit
    assert through_wrapt == ["price"] and computed == ["tea"]
    assert shop.price.key_for("tea") == Shop.price.key_for("tea")
    assert shop.price.warm("jam") and computed == ["tea", "jam"]
    assert shop.price.get("jam") == "corner:jam"
    bound: Any = (
        shop.price
    )  # a bound method's own attributes, which the BoundWarmable protocol leaves out
    assert bound.__name__ == "price" and bound.__self__ is shop
    assert list(inspect.signature(shop.price).parameters) == ["item"]
    assert shop.price == shop.price and hash(shop.price) == hash(shop.price)
    assert shop.price != Shop("other").price
    assert repr(shop.price).startswith("<bound warmable ")
    assert inspect.ismethod(shop.price) and inspect.ismethod(shop.currency)
    assert shop.price.__module__ == __name__
    assert shop.price.__doc__ == Shop.price.__doc__


ARGUMENT_SETS: list[tuple[Any, ...]] = [
    (1,),
    (True,),
    (1.0,),
    ("1",),
    (b"1",),
    (None,),
    ((1, "a"),),
    ([1, 2],),  # unhashable: never memoised
    (frozenset({1}),),
    (1, 2),
]


def test_the_read_paths_memoised_keys_agree_with_key_for() -> None:
    """The reader's inlined copy of KeyBuilder's memo rule gives key_for's key, on first
    and repeated calls, for arguments that compare equal across types."""

    @warmable(ttl=60)
    def echo(*args: Any) -> tuple[Any, ...]:
        return args

    for _ in range(2):  # the second round reads memoised keys
        for args in ARGUMENT_SETS:
            with captured_signals("cache_hit", "cache_miss") as sent:
                echo(*args)
            [signal] = sent
            assert signal.kwargs["key"] == echo.key_for(*args), args


def test_hits_on_the_memory_shortcut_count_like_any_other(engine: CacheWarmingEngine) -> None:
    """The reader's inlined Usage.hit feeds the same counters and tracker as a slow-path hit."""

    @warmable(ttl=60)
    def double(x: int) -> int:
        return 2 * x

    for x in (1, 1, 1, 2, 2):
        double(x)
    stats = engine.get_stats()
    assert (stats["hits"], stats["misses"]) == (3, 2)
    assert dict(engine.usage_tracker.get_hot_keys(2)) == {
        double.key_for(1): 3,
        double.key_for(2): 2,
    }


class CountingProxy(ProxyBackend):
    """Counts the backend calls that read or write values (locks are not counted)."""

    calls: Counter[str]

    def get(self, key: Any) -> Any:
        self.calls["get"] += 1
        return self.proxied.get(key)

    def get_multi(self, keys: Any) -> Any:
        self.calls["get"] += 1
        return self.proxied.get_multi(keys)

    def set(self, key: Any, value: Any) -> None:
        self.calls["set"] += 1
        self.proxied.set(key, value)

    def set_multi(self, mapping: Any) -> None:
        self.calls["set"] += 1
        self.proxied.set_multi(mapping)

    def get_serialized(self, key: Any) -> Any:
        self.calls["get"] += 1
        return self.proxied.get_serialized(key)

    def get_serialized_multi(self, keys: Any) -> Any:
        self.calls["get"] += 1
        return self.proxied.get_serialized_multi(keys)

    def set_serialized(self, key: Any, value: Any) -> None:
        self.calls["set"] += 1
        self.proxied.set_serialized(key, value)

    def set_serialized_multi(self, mapping: Any) -> None:
        self.calls["set"] += 1
        self.proxied.set_serialized_multi(mapping)


@pytest.fixture(params=["memcached", "redis"])
def round_trips(
    request: pytest.FixtureRequest, engine: CacheWarmingEngine, client_closer: ClientCloser
) -> Counter[str]:
    """The reads and writes of values the engine's default region makes from now on, on
    an emptied real server."""
    name: str = request.param
    server: Server = request.getfixturevalue(f"{name}_server")
    server.flush()
    configure_backend(engine, name, server)
    client_closer.watch(engine.region)
    proxy = CountingProxy()
    proxy.calls = Counter()
    engine.region.wrap(proxy)
    return proxy.calls


def test_an_untagged_miss_costs_two_gets_and_one_set(round_trips: Counter[str]) -> None:
    """A miss reads the key once before dogpile's Lock and once under it, then stores."""

    @warmable(ttl=60)
    def product(product_id: int) -> dict[str, int]:
        return {"id": product_id}

    assert product(7) == {"id": 7}
    assert round_trips == Counter(get=2, set=1)
    round_trips.clear()
    assert product(7) == {"id": 7}
    assert round_trips == Counter(get=1)  # a hit: one read


def test_hits_past_the_memory_shortcut_count_and_signal_like_any_other(
    round_trips: Counter[str], engine: CacheWarmingEngine
) -> None:
    """The reader's written-out hit (a backend without a memory index) counts, tracks,
    remembers and signals as report() does, and answers what was stored, one read per
    hit."""

    @warmable(ttl=60)
    def triple(x: int) -> int:
        return 3 * x

    with captured_signals("cache_hit", "cache_miss") as sent:
        answers = [triple(x) for x in (1, 1, 1, 2)]
    assert answers == [3, 3, 3, 6]
    assert triple._self_cached.direct_store is not None  # the hits came the written-out way
    assert [s.signal for s in sent] == ["cache_miss", "cache_hit", "cache_hit", "cache_miss"]
    for hit in sent[1:3]:
        assert hit.sender is triple
        assert hit.kwargs["key"] == triple.key_for(1)
        assert 0.0 <= hit.kwargs["age"] < 60
    assert round_trips == Counter(get=2 * 2 + 2, set=2)
    stats = engine.get_stats()
    assert (stats["hits"], stats["misses"]) == (2, 2)
    assert dict(engine.usage_tracker.get_hot_keys(2)) == {
        triple.key_for(1): 3,
        triple.key_for(2): 1,
    }
    triple.set(12, 4)  # as another process would have stored it: the next call is a hit
    assert triple(4) == 12
    remembered = engine.usage.remembered_calls()
    assert remembered[triple.key_for(4)][1:] == ((4,), {})  # for warming it later


def test_an_untagged_value_due_for_refresh_is_served_and_refreshed_once(
    clock: FakeClock, round_trips: Counter[str]
) -> None:
    """Past the reader's written-out hit (a value due for refresh, on a backend without
    a memory index), the read it made decides: the value is answered at once, from that
    one read, and one background refresh reads under the lock and stores."""
    computed: list[int] = []

    @warmable(ttl=10, refresh_ahead=0.5)
    def price(product_id: int) -> int:
        computed.append(product_id)
        return product_id * 10 + len(computed)

    assert price(1) == 11
    assert price._self_cached.direct_store is not None
    clock.advance(6)  # due for refresh
    round_trips.clear()
    with captured_signals("refreshed", "cache_hit") as sent:
        assert price(1) == 11
        wait_until(lambda: sent.named("refreshed"), message="the background refresh")
    assert [s.signal for s in sent] == ["cache_hit", "refreshed"]
    assert round_trips == Counter(get=2, set=1)
    assert price(1) == 12 and computed == [1, 1]


def test_a_tagged_miss_reads_value_and_tag_versions_twice(
    engine: CacheWarmingEngine, round_trips: Counter[str]
) -> None:
    """With its tags' versions stored, a tagged miss costs two reads of value and versions
    (before dogpile's Lock, and under it) and one write: the computation starts from the
    versions read under the lock."""

    @warmable(ttl=60, tags={"catalog", "prices"})
    def price(product_id: int) -> int:
        return product_id * 10

    assert price(1) == 10  # creates the tags' versions
    round_trips.clear()
    assert price(2) == 20
    assert round_trips == Counter(get=2, set=1)
    engine.invalidate_by_tags("prices")  # the next read is a miss by tag
    round_trips.clear()
    assert price(2) == 20
    assert round_trips == Counter(get=2, set=1)
    round_trips.clear()
    assert price(2) == 20
    assert round_trips == Counter(get=1)


def test_a_refresh_ahead_starts_from_the_tag_versions_it_read(
    clock: FakeClock, round_trips: Counter[str]
) -> None:
    """A read that finds a tagged value due (one read) and its background refresh (one
    read of value and tag versions, one write) cost three round trips: the refresh
    computes from the versions read with the value, not from a read of its own."""

    @warmable(ttl=10, refresh_ahead=0.5, tags={"prices"})
    def price(product_id: int) -> int:
        return product_id * 10

    assert price(1) == 10
    clock.advance(6)  # due for refresh
    round_trips.clear()
    with captured_signals("refreshed") as sent:
        assert price(1) == 10
        wait_until(lambda: sent.named("refreshed"), message="the background refresh")
    assert round_trips == Counter(get=2, set=1)


def test_a_proxy_wrapped_around_a_redis_region_in_use_sees_its_reads(
    engine: CacheWarmingEngine, redis_server: Server, client_closer: ClientCloser
) -> None:
    """The store reads a plain Redis region with the client's GET directly (see
    region_io.one_reader); a proxy the region is wrapped in after that still sees every
    read, and the hits still answer."""
    redis_server.flush()
    configure_backend(engine, "redis", redis_server)
    client_closer.watch(engine.region)

    @warmable(ttl=60)
    def quadruple(x: int) -> int:
        return 4 * x

    assert [quadruple(2), quadruple(2)] == [8, 8]  # the store is made, the value stored
    proxy = CountingProxy()
    proxy.calls = Counter()
    engine.region.wrap(proxy)
    assert [quadruple(2), quadruple(2)] == [8, 8]
    assert proxy.calls == Counter(get=2)


def test_a_call_between_a_rebind_and_its_notice_leaves_the_direct_read_on(
    engine: CacheWarmingEngine, redis_server: Server, client_closer: ClientCloser
) -> None:
    """configure_region binds the name and bumps the generation, then tells each function.
    A call that resolves the store in between (at the new generation) must not leave the
    function off its direct read once told: the next call resolves the store again."""
    configure_backend(engine, "redis", redis_server)
    client_closer.watch(engine.region)

    @warmable(ttl=60)
    def echo(x: int) -> int:
        return x

    cached = echo._self_cached
    assert echo(1) == 1 and cached.direct_store is not None
    other = CacheWarmingEngine()
    try:
        rebound = other.configure_region(
            "default", "dogpile.cache.redis", arguments={"url": redis_server.url}
        )
        client_closer.watch(rebound)
        regions = engine.regions
        with regions._lock:  # RegionRegistry.add's first half, replayed
            regions._regions["default"] = rebound
            regions.generation += 1
        assert echo.get(1) == 1  # another thread resolves the store in between
        cached.regions_changed()  # add() reaches this function
        assert cached.direct_store is None
        assert [echo(1), echo(1)] == [1, 1]
        assert cached.direct_store is not None
        assert cached.store().region is rebound
    finally:
        other.close()
