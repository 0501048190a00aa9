"""Fleet claims in one process, against the suite's real memcached and Redis: where they
are made (only for values the fleet shares), when they are given back (a warming that
stored nothing), and how long they last (memcached's 30-day limit)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from dogpile.cache.api import NO_VALUE

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._backends import traits
from dogpile_warm._warming import fleet
from tests import servers
from tests.conftest import configure_backend

SHARED = [
    pytest.param("memcached", marks=pytest.mark.memcached, id="memcached"),
    pytest.param("redis", marks=pytest.mark.redis, id="redis"),
]


@pytest.fixture(params=SHARED)
def shared(
    request: pytest.FixtureRequest, engine: CacheWarmingEngine, client_closer: servers.ClientCloser
) -> Iterator[str]:
    """A region "shared" on a real server, beside the engine's default memory region."""
    kind: str = request.param
    server: servers.Server = request.getfixturevalue(f"{kind}_server")
    server.flush()
    configure_backend(engine, kind, server)  # the default region, on the server
    region = engine.region
    engine.add_region("shared", region)
    engine.configure_region("default", "dogpile.cache.memory")
    client_closer.watch(region)
    yield kind
    engine.close()


def holder(engine: CacheWarmingEngine, name: str) -> Any:
    store = engine.regions.store_for("shared")
    backend = store.region.actual_backend
    return traits.claim_holder(backend, store.backend_key(name))


def test_a_task_whose_values_live_in_this_process_is_not_claimed(
    shared: str, engine: CacheWarmingEngine
) -> None:
    """A critical task on the memory region is warmed without a claim, though another
    region is shared: every process must warm its own memory."""

    @warmable(priority=100, ttl=60, engine=engine, name="local.menu")
    def menu() -> str:
        return "menu"

    report = engine.warm_critical_data()
    assert report["succeeded"] == 1 and report["skipped_tasks"] == []
    assert holder(engine, fleet.task_claim("local.menu")) is None


def test_a_shared_task_is_claimed_and_its_claim_given_back_when_nothing_was_stored(
    shared: str, engine: CacheWarmingEngine
) -> None:
    """A critical task on the shared region holds its claim after storing; one whose
    every key failed gives it back, so another process may warm it at once."""

    @warmable(priority=100, ttl=60, engine=engine, region="shared", name="shared.ok")
    def ok() -> str:
        return "ok"

    @warmable(priority=100, ttl=60, engine=engine, region="shared", name="shared.broken")
    def broken() -> str:
        raise RuntimeError("upstream down")

    report = engine.warm_critical_data()
    assert (report["succeeded"], report["failed"]) == (1, 1)
    assert holder(engine, fleet.task_claim("shared.ok")) == fleet.process_token()
    assert holder(engine, fleet.task_claim("shared.broken")) is None


def test_a_unit_warmed_again_by_its_claims_holder_is_claimed_for_its_whole_time_again(
    shared: str, engine: CacheWarmingEngine
) -> None:
    """A process warming a unit whose claim it still holds (its own earlier warming) makes
    the claim last ``seconds`` from now: left to lapse on the first warming's clock, it
    let another process warm the unit again right after (seen under gunicorn)."""
    store = engine.regions.store_for("shared")
    name = fleet.task_claim("shared.unit")
    assert fleet.claim_unit(store, name, 4.0) is None  # won
    # Real time: the server's own expiry is what is tested (memcached: 4 to 5 s).
    time.sleep(3.0)
    assert fleet.claim_unit(store, name, 4.0) is None  # its own: warmed again
    time.sleep(2.5)  # the first claim is gone by now (at most 5 s); the second holds
    assert holder(engine, name) == fleet.process_token()


@pytest.mark.memcached
def test_memcached_expiries_over_thirty_days_do_not_vanish(
    engine: CacheWarmingEngine,
    memcached_server: servers.Server,
    client_closer: servers.ClientCloser,
) -> None:
    """A region with expiration_time of 20 days keeps its values (memcached would read a
    40-day expiry as a date in 1970), and a 40-day claim holds."""
    memcached_server.flush()
    region = engine.configure_region(
        "default",
        "dogpile.cache.pymemcache",
        expiration_time=20 * 24 * 3600,
        arguments={"url": memcached_server.url, "distributed_lock": True},
    )
    client_closer.watch(region)
    assert engine.warm_cache("long", lambda: 42, ttl=60) is True
    assert engine.get_cached("long") == 42
    store = engine.regions.store_for(None)
    forty_days = 40 * 24 * 3600
    assert fleet.claim(store, "long-claim", forty_days) is True
    assert fleet.claim(store, "long-claim", forty_days) is False
    assert engine.get_cached("missing") is NO_VALUE
