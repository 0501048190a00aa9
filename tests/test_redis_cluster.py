"""Redis Cluster as users scale to it: three masters started by the suite on free
loopback ports (the hash slots split among them), configured through ``configure``.

A tagged read, an invalidation of several tags and a warm run's batch write each span
hash slots: dogpile_warm reads them slot by slot (redis-py's ``mget_nonatomic``) and
writes them in one pipeline routed by slot, where dogpile's backend would send one
``MGET`` or ``MSET`` that the cluster refuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._core.regions import CLIENT_TIMEOUT, LOCK_LEASE
from dogpile_warm.testing import wait_until
from tests import servers
from tests.conftest import threads_on_a_cold_key

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster_nodes() -> Iterator[list[servers.Server]]:
    """Three running cluster masters, for this module."""
    nodes = servers.start_redis_cluster(3)
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def cluster_engine(
    cluster_nodes: list[servers.Server], client_closer: servers.ClientCloser
) -> Iterator[CacheWarmingEngine]:
    """An engine whose default region is the cluster (emptied), through configure."""
    from redis.cluster import ClusterNode

    for node in cluster_nodes:
        node.flush()
    engine = CacheWarmingEngine()
    client_closer.watch(
        engine.configure_region(
            "default",
            "dogpile.cache.redis_cluster",
            expiration_time=60,
            arguments={
                "startup_nodes": [ClusterNode(n.host, n.port) for n in cluster_nodes],
                "distributed_lock": True,
            },
        )
    )
    try:
        yield engine
    finally:
        engine.close()


def keys_per_node(cluster_nodes: list[servers.Server]) -> list[int]:
    import redis

    counts = []
    for node in cluster_nodes:
        client = redis.Redis(host=node.host, port=node.port, socket_timeout=5)
        try:
            counts.append(int(client.dbsize()))
        finally:
            client.close()
    return counts


def test_configure_gives_cluster_regions_timeouts_a_leased_lock_and_the_expiry(
    cluster_engine: CacheWarmingEngine,
) -> None:
    """The cluster client's connections time out after CLIENT_TIMEOUT; the lock is leased
    for LOCK_LEASE seconds and not thread-local; the backend expires values at twice
    expiration_time."""
    backend: Any = cluster_engine.region.actual_backend
    assert backend.connection_kwargs["socket_timeout"] == CLIENT_TIMEOUT
    assert backend.lock_timeout == LOCK_LEASE and backend.thread_local_lock is False
    assert backend.redis_expiration_time == 120


def test_a_tagged_value_is_cached_and_invalidated_by_two_tags(
    cluster_engine: CacheWarmingEngine,
) -> None:
    """A function tagged with two tags (their versions on other slots than its values)
    computes once for 5 reads, recomputes after invalidate_by_tags of both, and the
    backend reports no error (before: every read recomputed, the invalidation raised)."""
    computes: list[int] = []

    @warmable(ttl=60, tags=["catalog", "prices"], engine=cluster_engine, name="cluster.tagged")
    def price(x: int) -> int:
        computes.append(x)
        return len(computes)

    assert [price(1) for _ in range(5)] == [1] * 5
    assert cluster_engine.invalidate_by_tags(["catalog", "prices"]) == 2
    assert price(1) == 2 and price(1) == 2
    assert cluster_engine.get_stats()["backend_errors"] == 0


def test_a_warm_run_stores_every_key_spread_over_the_masters(
    cluster_engine: CacheWarmingEngine, cluster_nodes: list[servers.Server]
) -> None:
    """warm_critical_data stores 100 keys in batches (before: 0 of them), each master
    holding some, and every one is then read without a computation."""
    computes: list[int] = []

    @warmable(
        ttl=60,
        priority=100,
        tags=["t"],
        engine=cluster_engine,
        name="cluster.critical",
        warm_args=[(i,) for i in range(100)],
    )
    def value(i: int) -> int:
        computes.append(i)
        return i

    report = cluster_engine.warm_critical_data()
    assert (report["succeeded"], report["failed"]) == (100, 0)
    assert all(count > 10 for count in keys_per_node(cluster_nodes))
    assert [value(i) for i in range(100)] == list(range(100))
    assert len(computes) == 100


def test_threads_stampeding_a_cold_key_compute_it_once(
    cluster_engine: CacheWarmingEngine,
) -> None:
    """8 threads released together on a cold key: one computation, through the cluster's
    distributed lock."""
    values, computes = threads_on_a_cold_key(cluster_engine, "cluster.stampede")
    assert values == [30] * 8 and computes == [3]


def test_the_scheduler_claims_its_cycles_in_the_cluster(
    cluster_engine: CacheWarmingEngine,
) -> None:
    """A running scheduler claims cycles in the cluster (it runs them: none unclaimed)."""
    cluster_engine.start(check_every=0.05)
    try:

        def cycles() -> int:
            figures = cluster_engine.get_stats()["scheduler"]
            return figures["cycles"] if figures is not None else 0

        wait_until(lambda: cycles() >= 3, 10, message="3 claimed cycles")
        figures = cluster_engine.get_stats()["scheduler"]
        assert figures is not None and figures["cycles_skipped"] == 0
    finally:
        cluster_engine.stop()
