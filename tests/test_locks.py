"""Key locks: no waiting on oneself, waits that fit the work, and leases that outlive only
a live holder.

Two engines sharing one real server stand for two processes of a fleet: each has its
own store, breaker and locks, and meets the other only through the backend.
"""

from __future__ import annotations

import operator
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any, cast

import pytest
from dogpile.cache.api import NO_VALUE

import dogpile_warm
from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._core import locks
from dogpile_warm._core.keys import safe_key
from dogpile_warm._core.leases import LeaseKeeper, _Release, lease_keeper
from dogpile_warm._core.store import UNAVAILABLE, CacheStore
from dogpile_warm._core.tags import tag_key
from dogpile_warm.errors import ReentrantCallError
from dogpile_warm.testing import wait_until
from tests import servers
from tests.conftest import configure_backend

DISTRIBUTED = [
    pytest.param("memcached", marks=pytest.mark.memcached, id="memcached"),
    pytest.param("redis", marks=pytest.mark.redis, id="redis"),
]


# -- re-entry ------------------------------------------------------------------------------


def test_a_computation_that_needs_its_own_key_raises_naming_it(backend: str) -> None:
    """``f(1)`` whose computation calls ``f(1)`` raises ReentrantCallError instead of hanging."""

    @warmable(ttl=60, name="locks.recursive")
    def recursive(x: int) -> int:
        # Annotated: mypy cannot type a decorated function inside its own definition.
        inner: int = recursive(x)
        return inner + 1

    with pytest.raises(ReentrantCallError, match=r"locks\.recursive") as raised:
        recursive(1)
    assert repr(recursive.key_for(1)) in str(raised.value)
    assert recursive.get(1) is NO_VALUE  # nothing stored


def test_a_cycle_through_other_cached_functions_raises(backend: str) -> None:
    """``f(1)`` -> ``g(1)`` -> ``f(1)``: the innermost call raises, and the error reaches
    the outer caller; other arguments of the same functions still work."""

    @warmable(ttl=60, name="locks.f")
    def f(x: int) -> int:
        inner: int = g(x) if x == 1 else x  # annotated: g is defined below
        return inner

    @warmable(ttl=60, name="locks.g")
    def g(x: int) -> int:
        inner: int = f(x) + f(x + 1)  # annotated: f and g call each other
        return inner

    with pytest.raises(ReentrantCallError, match=r"locks\.f"):
        f(1)
    assert f(2) == 2 and g(2) == 2 + 3


def test_a_reentrant_warm_is_reported_failed_not_hung(backend: str) -> None:
    """Warming a function that calls itself reports the error in the result row."""

    @warmable(priority=100, ttl=60, name="locks.warm")
    def warmed() -> int:
        inner: int = warmed()  # annotated, as in the test above
        return inner

    report = dogpile_warm.warm_critical_data()
    assert report["failed"] == 1
    assert "ReentrantCallError" in str(report["results"][0]["error"])


def test_a_computation_reading_its_own_cached_value_gets_it(backend: str) -> None:
    """Only a call that would wait for itself raises: recomputing a key whose value is
    cached and usable (``.refresh()``), the computation reads that value."""
    runs: list[int] = []

    @warmable(ttl=60, name="locks.incremental")
    def counter() -> int:
        runs.append(1)
        return 1 if len(runs) == 1 else counter() + 1

    assert counter() == 1
    assert counter.refresh() == 2 and counter() == 2
    assert counter.refresh() == 3


def test_the_same_key_in_another_thread_waits_rather_than_raising(
    backend: str, lock_requests: list[str]
) -> None:
    """Only the computing thread is refused: another thread waits for its value."""
    started, release = threading.Event(), threading.Event()
    computed: list[int] = []

    @warmable(ttl=60, name="locks.shared")
    def shared() -> int:
        computed.append(1)
        started.set()
        assert release.wait(10)
        return 42

    results: list[int] = []
    first = threading.Thread(target=lambda: results.append(shared()))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=lambda: results.append(shared()), name="second")
    second.start()
    wait_until(lambda: "second" in lock_requests, message="the second caller at the key's lock")
    release.set()
    first.join(10)
    second.join(10)
    assert results == [42, 42] and computed == [1]


# -- waits that fit the work ---------------------------------------------------------------


@pytest.fixture
def server(request: pytest.FixtureRequest) -> servers.Server:
    name = request.node.callspec.params["kind"]
    server: servers.Server = request.getfixturevalue(f"{name}_server")
    server.flush()
    return server


@pytest.fixture
def two_processes(
    kind: str, server: servers.Server, client_closer: servers.ClientCloser
) -> Iterator[tuple[CacheWarmingEngine, CacheWarmingEngine]]:
    """Two engines configured alike on one server: two processes of a fleet."""
    engines = (CacheWarmingEngine(), CacheWarmingEngine())
    for engine in engines:
        configure_backend(engine, kind, server)
        client_closer.watch(engine.region)
    yield engines
    for engine in engines:
        engine.close()


def shared_function(engine: CacheWarmingEngine, seconds: float, counter: list[int]) -> Any:
    @warmable(ttl=60, name="locks.slow", engine=engine)
    def slow(x: int) -> int:
        counter.append(x)
        time.sleep(seconds)  # real time: a computation others wait for
        return x * 10

    return slow


@pytest.mark.slow
@pytest.mark.parametrize("kind", DISTRIBUTED)
def test_a_wait_for_another_process_fits_its_compute_time(
    kind: str, two_processes: tuple[CacheWarmingEngine, CacheWarmingEngine]
) -> None:
    """Waiting for another process's 30 ms computation costs well under 100 ms (dogpile's
    own lock sleeps 0.4 s, then 0.8 s), and the key is computed once."""
    here, there = two_processes
    counter: list[int] = []
    computing = shared_function(there, 0.030, counter)
    waiting = shared_function(here, 0.030, counter)
    waits = []
    for x in range(15):
        holder = threading.Thread(target=computing, args=(x,))
        holder.start()
        # The holder computes, so it holds the lock.
        wait_until(partial(operator.contains, counter, x), interval=0.001)
        t0 = time.perf_counter()
        assert waiting(x) == x * 10
        waits.append(time.perf_counter() - t0)
        holder.join(10)
    print(
        f"\n[{kind}] waiter took median {statistics.median(waits) * 1000:.1f} ms, "
        f"max {max(waits) * 1000:.1f} ms for a 30 ms computation under way"
    )
    assert counter == list(range(15))  # one computation per key
    assert statistics.median(waits) < 0.100
    assert max(waits) < 0.300


@pytest.mark.slow
@pytest.mark.parametrize("kind", DISTRIBUTED)
def test_a_value_stored_by_anyone_ends_the_wait_before_the_lock_is_free(
    kind: str, two_processes: tuple[CacheWarmingEngine, CacheWarmingEngine]
) -> None:
    """A waiter takes a fresh value as soon as it appears, though the lock stays held."""
    here, there = two_processes
    counter: list[int] = []
    waiting = shared_function(here, 0.0, counter)
    setter = shared_function(there, 0.0, counter)
    lock = there.regions.store_for(None).lock(waiting.key_for(5))
    assert lock.acquire(False)  # held, and never released while the waiter waits
    try:
        timer = threading.Timer(0.3, lambda: setter.set(777, 5))
        timer.start()
        t0 = time.perf_counter()
        assert waiting(5) == 777
        took = time.perf_counter() - t0
        timer.join()
    finally:
        lock.release()
    assert counter == []  # nobody computed
    assert 0.3 <= took < 1.0


# -- leases ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", DISTRIBUTED)
def test_a_live_holder_keeps_its_lock_past_the_lock_timeout(
    kind: str,
    server: servers.Server,
    client_closer: servers.ClientCloser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A computation three times longer than ``lock_timeout`` keeps its lock (renewed), so
    a second process waits for it rather than computing the key again, however long
    that is past its patience (0.5 s here): a renewed lock is not one that never expires."""
    monkeypatch.setattr(locks, "_PATIENCE_MIN", 0.5)
    engines = []
    for _ in range(2):
        engine = CacheWarmingEngine()
        arguments: dict[str, Any] = {"distributed_lock": True, "lock_timeout": 1}
        if kind == "memcached":
            engine.configure_region(
                "default", "dogpile.cache.pymemcache", arguments={"url": server.url, **arguments}
            )
        else:
            engine.configure_region(
                "default",
                "dogpile.cache.redis",
                arguments={"host": server.host, "port": server.port, **arguments},
            )
        client_closer.watch(engine.region)
        engines.append(engine)
    counter: list[int] = []
    holder_fn = shared_function(engines[0], 3.0, counter)
    waiter_fn = shared_function(engines[1], 3.0, counter)
    try:
        holder = threading.Thread(target=holder_fn, args=(1,))
        holder.start()
        wait_until(lambda: counter == [1], message="the holder's computation")
        assert lease_keeper().held() >= 1
        assert waiter_fn(1) == 10
        holder.join(10)
    finally:
        for engine in engines:
            engine.close()
    assert counter == [1]  # the waiter never computed: the lock was not lost


@pytest.mark.parametrize("kind", DISTRIBUTED)
def test_tag_versions_carry_no_backend_expiry(
    kind: str,
    server: servers.Server,
    engine: CacheWarmingEngine,
    client_closer: servers.ClientCloser,
) -> None:
    """With ``expiration_time`` the backend expires values after 2x that, but never tag
    versions: an unchanged tag must not invalidate its values on a timer."""
    if kind == "memcached":
        region = engine.configure_region(
            "default",
            "dogpile.cache.pymemcache",
            expiration_time=10,
            arguments={"url": server.url},
        )
    else:
        region = engine.configure_region(
            "default",
            "dogpile.cache.redis",
            expiration_time=10,
            arguments={"host": server.host, "port": server.port},
        )
    client_closer.watch(region)

    @warmable(ttl=10, tags={"catalog"})
    def catalog() -> list[str]:
        return ["espresso"]

    catalog()
    value_ttl = remaining_seconds(kind, server, safe_key(catalog.key_for()))
    tag_ttl = remaining_seconds(kind, server, tag_key("catalog"))
    dogpile_warm.invalidate_by_tags("catalog")  # a new version: also without expiry
    new_tag_ttl = remaining_seconds(kind, server, tag_key("catalog"))
    assert isinstance(value_ttl, float) and 15 <= value_ttl <= 20
    assert tag_ttl is None and new_tag_ttl is None


def remaining_seconds(
    kind: str, server: servers.Server, key: str, missing_ok: bool = False
) -> float | bool | None:
    """Seconds until the server expires ``key`` (None: never), asked with a client of our
    own; False if it is not there and ``missing_ok``."""
    if kind == "redis":
        import redis

        client = redis.Redis(host=server.host, port=server.port)
        try:
            seconds = client.ttl(key)
        finally:
            client.close()
        if seconds == -2 and missing_ok:
            return False
        assert seconds != -2, f"{key!r} is not in Redis"
        return None if seconds == -1 else float(seconds)
    # memcached's meta get: "t" asks for the remaining time, -1 meaning never.
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(f"mg {key} t\r\n".encode())
        reply = sock.recv(1024).decode()
    if reply.startswith("EN") and missing_ok:
        return False
    assert reply.startswith("HD"), f"{key!r}: {reply!r}"
    seconds = int(reply.split()[1][1:])
    return None if seconds == -1 else float(seconds)


def test_a_lease_released_while_being_renewed_is_not_reported_lost(
    engine: CacheWarmingEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """The holder releasing its lock while the keeper renews it is no lost lease: the
    renewal's failure is silent (it warned on a healthy server)."""
    keeper = LeaseKeeper(idle=1.0)
    store = engine.regions.store_for(None)
    renewing, released = threading.Event(), threading.Event()

    def renew() -> bool:
        renewing.set()
        assert released.wait(5)
        return False  # the lock is gone: its holder released it

    lease = keeper.keep(renew, 0.15, store, "k")
    assert renewing.wait(5)
    keeper.drop(lease)
    released.set()
    after = threading.Event()  # runs once the keeper has dealt with that renewal
    keeper.release_later(after.set, store, "k")
    assert after.wait(5)
    assert not [r for r in caplog.records if r.name == "dogpile_warm._core.leases"]


def test_a_lease_lost_while_held_is_reported(
    engine: CacheWarmingEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal that finds the lock someone else's while its holder still computes warns."""
    keeper = LeaseKeeper(idle=1.0)
    store = engine.regions.store_for(None)
    renewed = threading.Event()

    def renew() -> bool:
        renewed.set()
        return False

    lease = keeper.keep(renew, 0.15, store, "k")
    assert renewed.wait(5)
    after = threading.Event()  # runs once the keeper has dealt with that renewal
    keeper.release_later(after.set, store, "k")
    assert after.wait(5)
    keeper.drop(lease)
    assert [r for r in caplog.records if "expired while its value" in r.getMessage()]


@pytest.mark.slow
@pytest.mark.parametrize("kind", DISTRIBUTED)
def test_a_lock_that_never_expires_is_waited_for_only_so_long(
    kind: str,
    server: servers.Server,
    two_processes: tuple[CacheWarmingEngine, CacheWarmingEngine],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lock held forever (written without expiry, as a peer without lock_timeout
    would) makes a caller wait its patience (15 s; 1 s here), then compute without it."""
    monkeypatch.setattr(locks, "_PATIENCE_MIN", 1.0)
    here, _ = two_processes
    counter: list[int] = []
    waiting = shared_function(here, 0.0, counter)
    lock_key = "_lock" + safe_key(waiting.key_for(3))  # dogpile's lock key, on both servers
    write_forever(kind, server, lock_key)
    t0 = time.monotonic()
    assert waiting(3) == 30
    took = time.monotonic() - t0
    assert 1.0 <= took < 3.0
    assert counter == [3]
    assert [r for r in caplog.records if "has no expiry" in r.getMessage()]


def write_forever(kind: str, server: servers.Server, key: str) -> None:
    """Store ``key`` without expiry with a client of our own."""
    if kind == "memcached":
        from pymemcache.client.base import Client

        client = Client((server.host, server.port), default_noreply=False)
        try:
            assert client.set(key, b"someone else's", expire=0)
        finally:
            client.close()
    else:
        import redis

        client = redis.Redis(host=server.host, port=server.port)
        try:
            client.set(key, b"someone else's")
        finally:
            client.close()


@pytest.mark.parametrize("kind", DISTRIBUTED)
def test_a_lock_released_while_the_backend_is_skipped_is_released_by_the_keeper(
    kind: str, two_processes: tuple[CacheWarmingEngine, CacheWarmingEngine]
) -> None:
    """A holder whose breaker opened while it computed (a pause of its own, say) hands the
    release to the keeper thread: the other process gets the lock at once, not when its
    lease runs out seconds later."""
    here, there = two_processes
    store = here.regions.store_for(None)
    held = store.lock("locks.released")
    assert held.acquire(False)
    store.health.failed_unavailable(ConnectionRefusedError(), "locks.released", "read")
    t0 = time.monotonic()
    held.release()
    assert time.monotonic() - t0 < 0.1  # not in the caller's time
    waiting = there.regions.store_for(None).lock("locks.released")
    wait_until(lambda: waiting.acquire(False), 1.0, message="the lock (left to expire?)")
    waiting.release()


@pytest.mark.slow
@pytest.mark.parametrize("kind", DISTRIBUTED)
def test_waiting_for_a_long_computation_spends_no_round_trip_budget(
    kind: str, server: servers.Server, client_closer: servers.ClientCloser
) -> None:
    """Behind a server answering 50 ms late, a waiter polls a 3 s computation for longer
    than its round-trip budget allows: waits are not its round trips, so it gets the
    holder's value, and nothing counts as an outage."""
    proxy = servers.SlowProxy(server)
    engines = []
    try:
        for _ in range(2):
            engine = CacheWarmingEngine()
            configure_backend(engine, kind, proxy)
            client_closer.watch(engine.region)
            engines.append(engine)
        counter: list[int] = []
        holder_fn = shared_function(engines[0], 3.0, counter)
        waiter_fn = shared_function(engines[1], 3.0, counter)
        proxy.delay = 0.05
        holder = threading.Thread(target=holder_fn, args=(1,))
        holder.start()
        wait_until(lambda: counter == [1], message="the holder's computation")
        assert waiter_fn(1) == 10
        holder.join(10)
        stats = engines[1].get_stats()
    finally:
        for engine in engines:
            engine.close()
        proxy.stop()
    assert counter == [1]
    assert stats["backend_unavailable"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", DISTRIBUTED)
def test_a_live_holder_keeps_its_lease_while_its_breaker_is_open(
    kind: str, two_processes: tuple[CacheWarmingEngine, CacheWarmingEngine]
) -> None:
    """Other threads' failures keep this process's breaker open for longer than the lease:
    its renewals still go to the server, so the lock stays its holder's."""
    here, there = two_processes
    store = here.regions.store_for(None)
    held = store.lock("locks.renewed")
    assert held.acquire(False)
    try:
        deadline = time.monotonic() + 6.0  # past the 4 s lease (5 s on memcached)
        while time.monotonic() < deadline:
            store.health.failed_unavailable(TimeoutError(), "other", "read")
            time.sleep(0.2)
        assert store.health.open
        assert not there.regions.store_for(None).lock("locks.renewed").acquire(False)
    finally:
        held.release()


@pytest.mark.slow
@pytest.mark.memcached
def test_a_release_the_backend_missed_is_retried_until_it_answers(
    engine: CacheWarmingEngine, client_closer: servers.ClientCloser
) -> None:
    """A lock without expiry, released while the server is paused, is released by the
    keeper once the server answers again (it would stay held for good otherwise)."""
    server = servers.start_memcached()
    try:
        with pytest.warns(UserWarning, match="never expires"):
            engine.configure_region(
                "default",
                "dogpile.cache.pymemcache",
                arguments={"url": server.url, "distributed_lock": True, "lock_timeout": 0},
            )
        client_closer.watch(engine.region)
        store = engine.regions.store_for(None)
        held = store.lock("locks.forever")
        assert held.acquire(False)
        server.pause()
        assert store.read("other") is UNAVAILABLE  # a timeout: the breaker opens
        held.release()  # handed to the keeper, which cannot reach the server yet
        time.sleep(1.5)  # real time: the keeper's retries (every 0.5 s) fail meanwhile
        server.resume()
        lock_key = "_lock" + safe_key("locks.forever")
        wait_until(
            lambda: remaining_seconds("memcached", server, lock_key, missing_ok=True) is False,
            interval=0.1,
            message="the lock's release",
        )
    finally:
        server.stop()


def test_settle_releases_what_the_keeper_still_owes_a_closing_engine() -> None:
    """engine.close() relies on it: releases waiting for a store's backend are tried at
    once in the caller's thread; another store's are left to the keeper."""

    class Store:
        def attempt(self, operation: str, key: str, call: Any, *, always: bool) -> Any:
            return call()

    # Stand-ins with only what settle uses.
    mine, other = cast(CacheStore, Store()), cast(CacheStore, Store())
    released: list[str] = []
    keeper = LeaseKeeper(idle=0.1)
    with keeper._wake:  # queued as if the keeper's thread were busy elsewhere
        keeper._releases.append(
            _Release(lambda: released.append("mine"), mine, "k1", time.monotonic() + 60, 0.0)
        )
        keeper._releases.append(
            _Release(lambda: released.append("other"), other, "k2", time.monotonic() + 60, 0.0)
        )
    keeper.settle([mine])
    assert released == ["mine"]
    assert [r.key for r in keeper._releases] == ["k2"]
