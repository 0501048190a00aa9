"""Shared fixtures: a fresh default engine per test on a fake clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._core.locks import KeyLock
from dogpile_warm.testing import FakeClock, isolated_engine


@pytest.fixture
def clock() -> FakeClock:
    """The engine's clock; tests move it with ``clock.advance(seconds)``."""
    return FakeClock()


@pytest.fixture(autouse=True)
def engine(clock: FakeClock) -> Iterator[CacheWarmingEngine]:
    """Every test gets its own default engine (memory region), closed afterwards."""
    with isolated_engine(clock=clock) as fresh:
        yield fresh


# -- real servers and the backend-parametrised fixture ---------------------------
# Servers start once per session and only when a test asks for them, so a run
# of memory-only tests starts nothing. ``backend`` points the test's engine at
# one of them (or leaves the memory region) and empties the server first.

from tests import servers  # noqa: E402

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("memcached", id="memcached", marks=pytest.mark.memcached),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[servers.Server]:
    """A real memcached on a free loopback port, for the whole session."""
    server = servers.start_memcached()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[servers.Server]:
    """A real redis-server on a free loopback port, for the whole session."""
    server = servers.start_redis()
    try:
        yield server
    finally:
        server.stop()


def configure_backend(
    engine: CacheWarmingEngine, name: str, server: servers.Server | servers.SlowProxy
) -> None:
    """Point ``engine``'s default region at ``server`` (``name``: memcached or redis), or at
    a :class:`~tests.servers.SlowProxy` in front of one."""
    if name == "memcached":
        engine.configure_region(
            "default",
            "dogpile.cache.pymemcache",
            arguments={"url": server.url, "distributed_lock": True},
        )
    elif name == "redis":
        engine.configure_region(
            "default",
            "dogpile.cache.redis",
            arguments={"host": server.host, "port": server.port, "distributed_lock": True},
        )
    else:
        raise ValueError(f"unknown backend {name!r}")


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, engine: CacheWarmingEngine, client_closer: servers.ClientCloser
) -> Iterator[str]:
    """The name of the backend behind the engine's default region, emptied for this test."""
    name: str = request.param
    if name != "memory":
        server: servers.Server = request.getfixturevalue(f"{name}_server")
        server.flush()
        configure_backend(engine, name, server)
        client_closer.watch(engine.region)
    yield name
    engine.close()  # background refreshes finish before their connections close


@pytest.fixture
def lock_requests(
    backend: str, engine: CacheWarmingEngine, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The names of the threads that asked the default region's store for a key's lock, in
    order (recorded just before they take it): a test waits on this, not on a sleep, to know
    that its callers reached the lock."""
    store = engine.regions.store_for(None)
    lock = store.lock
    asked: list[str] = []

    def lock_and_record(key: str, *args: Any, **kwargs: Any) -> KeyLock:
        mutex = lock(key, *args, **kwargs)
        asked.append(threading.current_thread().name)
        return mutex

    monkeypatch.setattr(store, "lock", lock_and_record)
    return asked


@pytest.fixture
def keys_read(monkeypatch: pytest.MonkeyPatch) -> Callable[[ModuleType], list[str]]:
    """``keys_read(module)``: the keys ``module.get(client, key)`` is called with from
    now on, in order (the calls still run): which reads go through dogpile_warm's own
    command (``memcached_get``, ``redis_get``)."""

    def record(module: ModuleType) -> list[str]:
        keys: list[str] = []
        own_get = module.get

        def recorded(client: Any, key: str) -> Any:
            keys.append(key)
            return own_get(client, key)

        monkeypatch.setattr(module, "get", recorded)
        return keys

    return record


@pytest.fixture
def client_closer() -> Iterator[servers.ClientCloser]:
    """Closes, after the test, the connections of regions passed to its ``watch(region)``."""
    closer = servers.ClientCloser()
    yield closer
    closer.close()


def threads_on_a_cold_key(
    engine: CacheWarmingEngine, name: str, threads: int = 8
) -> tuple[list[int], list[int]]:
    """``threads`` threads released together on one cold key of a 0.2 s computation on
    ``engine``: the values they got and the arguments computed (once, if the key's lock
    holds)."""
    computes: list[int] = []
    go = threading.Barrier(threads)
    values: list[int] = []

    @warmable(ttl=60, engine=engine, name=name)
    def slow(x: int) -> int:
        computes.append(x)
        time.sleep(0.2)  # real time: a computation the others must wait for
        return x * 10

    def call() -> None:
        go.wait()
        values.append(slow(3))

    started = [threading.Thread(target=call) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(10)
    return values, computes
