"""Redis Sentinel as users scale to it: a primary, a replica and a Sentinel, started by
the suite on free loopback ports, configured through ``configure`` with its defaults.

dogpile's Sentinel backend reads from a replica; dogpile_warm reads from the primary,
so an invalidation is never undone by a replica's lag.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._core.regions import CLIENT_TIMEOUT, LOCK_LEASE
from tests import servers
from tests.conftest import threads_on_a_cold_key

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SERVICE = "dogpile_warm-test"


@pytest.fixture(scope="module")
def sentinel_servers() -> Iterator[tuple[servers.Server, servers.Server, servers.Server]]:
    """A primary, its replica and a Sentinel watching the primary, for this module."""
    started: list[servers.Server] = []
    try:
        primary = servers.start_redis()
        started.append(primary)
        started.append(servers.start_redis_replica(primary))
        started.append(servers.start_redis_sentinel(primary, SERVICE))
        yield started[0], started[1], started[2]
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(params=["redis", "valkey"])
def sentinel_engine(
    request: pytest.FixtureRequest,
    sentinel_servers: tuple[servers.Server, servers.Server, servers.Server],
    client_closer: servers.ClientCloser,
) -> Iterator[CacheWarmingEngine]:
    """An engine whose default region is the Sentinel setup (emptied), through configure,
    with dogpile's Redis or Valkey Sentinel backend."""
    primary, _, sentinel = sentinel_servers
    primary.flush()
    engine = CacheWarmingEngine()
    client_closer.watch(
        engine.configure_region(
            "default",
            f"dogpile.cache.{request.param}_sentinel",
            expiration_time=60,
            arguments={
                "sentinels": [(sentinel.host, sentinel.port)],
                "service_name": SERVICE,
                "distributed_lock": True,
            },
        )
    )
    try:
        yield engine
    finally:
        engine.close()


def test_configure_gives_sentinel_regions_the_redis_defaults(
    sentinel_engine: CacheWarmingEngine,
) -> None:
    """Timeouts, a lock leased for LOCK_LEASE seconds that is not thread-local, and the
    backend's own expiry at twice expiration_time, as for dogpile.cache.redis."""
    backend: Any = sentinel_engine.region.actual_backend
    assert backend.socket_timeout == backend.socket_connect_timeout == CLIENT_TIMEOUT
    assert backend.lock_timeout == LOCK_LEASE and backend.thread_local_lock is False
    expiry = getattr(backend, "redis_expiration_time", None) or backend.valkey_expiration_time
    assert expiry == 120
    assert backend.sentinel_kwargs["socket_timeout"] == CLIENT_TIMEOUT
    assert backend.reader_client is not backend.writer_client  # reads would go to a replica


def test_every_invalidation_is_recorded_and_read_back_from_the_primary(
    sentinel_engine: CacheWarmingEngine,
) -> None:
    """20 invalidations in a row all succeed: the new tag versions are read back from the
    primary (from the replica, the write had not arrived yet and each one raised)."""

    @warmable(ttl=60, tags=["t"], engine=sentinel_engine, name="sentinel.tagged")
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    for _ in range(20):
        assert sentinel_engine.invalidate_by_tags("t") == 1


def test_a_read_after_an_invalidation_always_recomputes(
    sentinel_engine: CacheWarmingEngine,
) -> None:
    """Each read that follows an invalidation recomputes the value, 20 times in a row:
    no read finds the tag's old version on a lagging replica."""
    computes: list[int] = []

    @warmable(ttl=60, tags=["t"], engine=sentinel_engine, name="sentinel.strict")
    def f(x: int) -> int:
        computes.append(x)
        return len(computes)

    assert f(1) == 1 and f(1) == 1
    for n in range(2, 22):
        sentinel_engine.invalidate_by_tags("t")
        assert f(1) == n
    assert sentinel_engine.get_stats()["backend_errors"] == 0


def test_threads_stampeding_a_cold_key_compute_it_once(
    sentinel_engine: CacheWarmingEngine,
) -> None:
    """8 threads released together on a cold key: one computation, through the primary's
    distributed lock; every thread gets its value."""
    values, computes = threads_on_a_cold_key(sentinel_engine, "sentinel.stampede")
    assert values == [30] * 8 and computes == [3]
