"""A memcached outage never reaches callers, is logged once and counted, and ends by itself.

Each test runs its own real memcached (the session's one must stay up), crashes
(kills) or stops it mid-test, and starts it again on the same port.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE

import dogpile_warm
from dogpile_warm import CacheWarmingEngine
from tests import servers

pytestmark = [pytest.mark.slow, pytest.mark.memcached]

RECOVERY_TIMEOUT = 8.0  # seconds; DESIGN promises "within seconds" (dead-server retry: 1 s)


@pytest.fixture
def memcached() -> Iterator[servers.Server]:
    """A memcached of this test's own, which the test may stop and start."""
    server = servers.start_memcached()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def region(
    engine: CacheWarmingEngine, memcached: servers.Server, client_closer: servers.ClientCloser
) -> Iterator[Any]:
    """The engine's default region, on this test's memcached, configured as a user would."""
    configured = engine.configure_region(
        "default",
        "dogpile.cache.pymemcache",
        arguments={"url": memcached.url, "distributed_lock": True},
    )
    yield client_closer.watch(configured)
    engine.close()


@pytest.fixture
def store_warnings(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """Returns the WARNING records of ``dogpile_warm.store`` logged so far."""
    caplog.set_level(logging.WARNING, logger="dogpile_warm")

    def records() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "dogpile_warm.store" and r.levelno == logging.WARNING
        ]

    return records


class Counted:
    """A function body that counts its runs (thread-safe) and doubles its argument."""

    def __init__(self) -> None:
        self.runs = 0
        self._lock = threading.Lock()

    def __call__(self, x: int) -> int:
        with self._lock:
            self.runs += 1
        return x * 2


def test_callers_get_computed_values_while_memcached_is_down(
    region: Any, memcached: servers.Server
) -> None:
    """With memcached stopped, every call returns the correct value, computed, without raising."""
    body = Counted()

    @dogpile_warm.warmable(ttl=60, tags={"t"})
    def double(x: int) -> int:
        return body(x)

    assert double(1) == 2
    memcached.kill()

    assert [double(i % 3) for i in range(30)] == [(i % 3) * 2 for i in range(30)]
    assert body.runs == 31  # nothing can be cached: every call computed


def test_concurrent_callers_get_values_while_memcached_is_down(
    region: Any, memcached: servers.Server
) -> None:
    """With memcached stopped, 8 threads calling at once all get the correct value."""
    body = Counted()

    @dogpile_warm.warmable(ttl=60)
    def double(x: int) -> int:
        return body(x)

    double(5)
    memcached.kill()
    results: list[Any] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(double(5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert errors == []
    assert results == [10] * 8


def test_an_outage_is_logged_once_with_its_key(
    region: Any, memcached: servers.Server, store_warnings: Callable[[], list[logging.LogRecord]]
) -> None:
    """Many calls, gets and sets during one outage log exactly one WARNING from ``dogpile_warm.store``."""

    @dogpile_warm.warmable(ttl=60, tags={"t"})
    def double(x: int) -> int:
        return x * 2

    double(1)
    memcached.kill()
    for i in range(25):
        double(i)
        double.get(i)
        double.set(0, i)

    warnings = store_warnings()
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert double.key_for(0) in warnings[0].getMessage()


def test_backend_errors_are_counted(region: Any, memcached: servers.Server) -> None:
    """``get_stats()["backend_errors"]`` grows with failed backend operations."""

    @dogpile_warm.warmable(ttl=60)
    def double(x: int) -> int:
        return x * 2

    double(1)
    before = dogpile_warm.get_warming_stats()["backend_errors"]
    memcached.kill()
    for i in range(5):
        double(i)

    assert dogpile_warm.get_warming_stats()["backend_errors"] > before


def test_warm_critical_data_reports_failure_while_down(
    region: Any, memcached: servers.Server
) -> None:
    """Warming a critical task while memcached is down reports it failed, not succeeded."""

    @dogpile_warm.warmable(priority=100, ttl=60)
    def settings() -> str:
        return "on"

    memcached.kill()
    report = dogpile_warm.warm_critical_data()

    assert (report["succeeded"], report["failed"]) == (0, 1)
    [row] = report["results"]
    assert row["success"] is False
    assert row["error"]
    assert row["key"] == settings.key_for()


def test_warm_cache_reports_failure_while_down(region: Any, memcached: servers.Server) -> None:
    """``warm_cache`` while memcached is down returns False instead of raising."""
    memcached.kill()

    assert dogpile_warm.warm_cache("report", lambda: 1, ttl=60) is False
    assert dogpile_warm.get_cached("report") is NO_VALUE


def test_caching_resumes_after_memcached_comes_back(region: Any, memcached: servers.Server) -> None:
    """Within seconds of memcached starting again, values are stored and later calls hit."""
    body = Counted()

    @dogpile_warm.warmable(ttl=60)
    def double(x: int) -> int:
        return body(x)

    double(1)
    memcached.stop()  # a clean stop this time; the other tests crash it
    for _ in range(5):
        assert double(2) == 4
    memcached.start()  # same port, empty

    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while double.get(2) is NO_VALUE:
        if time.monotonic() > deadline:
            pytest.fail(f"nothing was cached {RECOVERY_TIMEOUT}s after memcached came back")
        assert double(2) == 4
        time.sleep(0.05)
    runs = body.runs

    assert double(2) == 4
    assert body.runs == runs  # a hit
    assert double.warm(3) is True
    assert dogpile_warm.warm_critical_data()["failed"] == 0


def test_each_outage_is_logged_once(
    region: Any, memcached: servers.Server, store_warnings: Callable[[], list[logging.LogRecord]]
) -> None:
    """Two outages separated by a recovery log two outage warnings, one each."""

    @dogpile_warm.warmable(ttl=60)
    def double(x: int) -> int:
        return x * 2

    for _ in range(2):
        double(1)
        memcached.kill()
        for i in range(10):
            double(i)
        memcached.start()
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while double.get(1) is NO_VALUE:
            assert time.monotonic() < deadline, "caching did not resume"
            double(1)
            time.sleep(0.05)

    outages = [r for r in store_warnings() if "failed" in r.getMessage()]
    assert len(outages) == 2, [r.getMessage() for r in outages]


def test_invalidate_on_a_user_region_is_not_silently_lost_after_a_connection_error(
    memcached: servers.Server, client_closer: servers.ClientCloser
) -> None:
    """After a connection error on a passed-in region, ``invalidate_by_tags`` reaches memcached or raises."""
    this, other = CacheWarmingEngine(), CacheWarmingEngine()  # two processes of a fleet
    # The user's own region, with dogpile's default retry settings except a longer
    # retry window (default 1 s) so that the test does not race it.
    users_region = client_closer.watch(
        make_region().configure(
            "dogpile.cache.pymemcache",
            arguments={"url": memcached.url, "hashclient_retry_timeout": 30},
        )
    )
    client_closer.watch(
        other.configure_region(
            "default",
            "dogpile.cache.pymemcache",
            arguments={"url": memcached.url, "distributed_lock": True},
        )
    )
    source = {"value": "v1"}

    def shared_function(engine: CacheWarmingEngine, region: Any) -> Any:
        @dogpile_warm.warmable(
            ttl=60, tags={"t"}, name="outage:shared", engine=engine, region=region
        )
        def read() -> str:
            return source["value"]

        return read

    read_here = shared_function(this, users_region)
    read_there = shared_function(other, None)
    try:
        read_here()
        memcached.kill()
        read_here(), read_here()  # the second meets "connection refused": server marked failed
        memcached.start()
        assert read_there() == "v1"  # the other process caches v1 on the healthy server
        source["value"] = "v2"

        try:
            this.invalidate_by_tags("t")
        except dogpile_warm.WarmError:
            return  # reported: the caller knows the invalidation did not happen

        assert read_there() == "v2"
    finally:
        this.close()
        other.close()
