"""A sick backend never reaches callers: hung, dead and restarted servers, refused and
unreadable values.

Each test runs servers of its own (the session's must stay up) and pauses
(SIGSTOP), kills or restarts them mid-test. Regions are configured through
``configure`` with its defaults, as a user would.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from dogpile.cache import CacheRegion, make_region
from dogpile.cache.api import NO_VALUE

import dogpile_warm
from dogpile_warm import CacheWarmingEngine, WarmError
from dogpile_warm._backends.memcached import FLAG_ENTRY
from dogpile_warm._core.keys import safe_key
from dogpile_warm._core.tags import tag_key
from dogpile_warm.testing import wait_until
from tests import servers

pytestmark = pytest.mark.slow

SERVERS = [
    pytest.param("memcached", marks=pytest.mark.memcached, id="memcached"),
    pytest.param("redis", marks=pytest.mark.redis, id="redis"),
]

FAULT_SECONDS = 3.0  # how long a server is hung or dead
MIN_CALLS_DURING_FAULT = 100  # 4 threads, 5 ms a computation
MAX_CALL_SECONDS = 1.5  # what any one call may cost, however the backend fails
RESUME_WITHIN = 5.0  # seconds after the server is back until values are cached again
END_LOGGED_WITHIN = 8.0  # the end of an outage is logged 2 s after its last failure
# A server that answers 0.4 s late: see test_a_slow_backend_costs_a_miss_a_bounded_time.
SLOW_SERVER_SECONDS = 5.0
SLOW_SERVER_MAX_CALL_SECONDS = 3.0


@pytest.fixture(params=SERVERS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(kind: str) -> Iterator[servers.Server]:
    """A server of this test's own, which it may pause, kill and start again."""
    server = servers.start_memcached() if kind == "memcached" else servers.start_redis()
    try:
        yield server
    finally:
        server.stop()


def configure(
    engine: CacheWarmingEngine,
    kind: str,
    server: servers.Server | servers.SlowProxy,
    **extra: Any,
) -> CacheRegion:
    """The engine's default region on ``server`` (or a slow proxy in front of one), through
    configure's defaults."""
    if kind == "memcached":
        arguments = {"url": server.url, "distributed_lock": True, **extra}
        return engine.configure_region("default", "dogpile.cache.pymemcache", arguments=arguments)
    arguments = {"host": server.host, "port": server.port, "distributed_lock": True, **extra}
    return engine.configure_region("default", "dogpile.cache.redis", arguments=arguments)


@pytest.fixture
def region(
    engine: CacheWarmingEngine,
    kind: str,
    server: servers.Server,
    client_closer: servers.ClientCloser,
) -> Iterator[Any]:
    yield client_closer.watch(configure(engine, kind, server))
    engine.close()


@pytest.fixture
def health_warnings(caplog: pytest.LogCaptureFixture) -> Callable[[str], list[str]]:
    """The WARNING messages of ``dogpile_warm._core.health`` so far that contain a text."""
    caplog.set_level(logging.WARNING, logger="dogpile_warm")

    def messages(containing: str) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "dogpile_warm._core.health" and containing in r.getMessage()
        ]

    return messages


@dataclass
class Call:
    started: float
    seconds: float
    error: BaseException | None


class Load:
    """``threads`` threads calling ``fn(i)`` over ``keys`` keys until stopped; every call timed."""

    def __init__(self, fn: Callable[[int], int], threads: int = 4, keys: int = 40) -> None:
        self.calls: list[Call] = []
        self.wrong: list[tuple[int, int]] = []
        self._fn = fn
        self._keys = keys
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]

    def under_way(self, calls: int = 20) -> None:
        """Wait until the threads have made ``calls`` calls between them."""
        wait_until(lambda: len(self.calls) >= calls, message=f"{calls} calls under load")

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        assert not any(t.is_alive() for t in self._threads), "a caller hung"

    def _run(self, n: int) -> None:
        i = n
        while not self._stop.is_set():
            x = i % self._keys
            i += 1
            t0 = time.monotonic()
            error = None
            try:
                value = self._fn(x)
                if value != 2 * x:
                    with self._lock:
                        self.wrong.append((x, value))
            except BaseException as exc:
                error = exc
            with self._lock:
                self.calls.append(Call(t0, time.monotonic() - t0, error))

    def between(self, start: float, end: float) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if start <= c.started < end]


def wait_until_cached(fn: Any, first_key: int, within: float) -> float:
    """Call ``fn`` on fresh keys until one is stored; the seconds that took."""
    t0 = time.monotonic()
    keys = itertools.count(first_key)

    def one_cached() -> bool:
        key = next(keys)
        fn(key)
        return fn.get(key) is not NO_VALUE

    wait_until(one_cached, within, interval=0.02, message="a value cached after recovery")
    return time.monotonic() - t0


@pytest.mark.parametrize("fault", ["pause", "kill"])
def test_a_hung_or_dead_backend_costs_callers_little_and_caching_resumes(
    region: Any,
    kind: str,
    server: servers.Server,
    fault: str,
    health_warnings: Callable[[str], list[str]],
) -> None:
    """During a 3 s hang (SIGSTOP) or death (SIGKILL), 4 threads calling a 5 ms function
    complete at least 100 calls, none over 1.5 s and none wrong; within 5 s of the server
    coming back values are cached again; the outage logs one warning at each end."""

    @dogpile_warm.warmable(ttl=60, tags={"t"})
    def double(x: int) -> int:
        time.sleep(0.005)  # real time: a computation that costs something
        return 2 * x

    for x in range(40):
        double(x)
    with Load(double) as load:
        load.under_way()
        fault_at = time.monotonic()
        server.pause() if fault == "pause" else server.kill()
        time.sleep(FAULT_SECONDS)  # real time: the outage the callers live through
        back_at = time.monotonic()
        server.resume() if fault == "pause" else server.start()
        resumed_in = wait_until_cached(double, 1000, RESUME_WITHIN)
        wait_until(
            lambda: health_warnings("answers again"),
            END_LOGGED_WITHIN,
            interval=0.05,
            message="the end of the outage logged",
        )
    during = load.between(fault_at, back_at)
    slowest = max(c.seconds for c in load.calls)
    errors = [c.error for c in load.calls if c.error is not None]
    print(
        f"\n[{kind} {fault}] calls during the fault: {len(during)}, slowest call: "
        f"{slowest:.3f} s, cached again {resumed_in:.2f} s after recovery, warnings: "
        f"{len(health_warnings('cache backend'))}"
    )
    assert errors == [] and load.wrong == []
    assert len(during) >= MIN_CALLS_DURING_FAULT
    assert slowest <= MAX_CALL_SECONDS
    assert len(health_warnings("is unavailable")) == 1
    assert len(health_warnings("answers again")) == 1
    stats = dogpile_warm.get_warming_stats()
    assert stats["backend_unavailable"] >= 1 and stats["backend_skipped"] >= 1
    assert stats["backends_down"] == []


@pytest.mark.parametrize("fault", ["pause", "kill"])
def test_awaiters_on_a_hung_or_dead_backend_wait_little_and_the_loop_never_stalls(
    region: Any, kind: str, server: servers.Server, fault: str
) -> None:
    """An async def read by 20 tasks at once over 40 keys through a 3 s hang (SIGSTOP) or
    death (SIGKILL): every await returns the right value within 1.5 s, at least 100
    complete during the fault, and a ticker on the same loop is never held 0.25 s;
    values are cached again once the server is back."""

    @dogpile_warm.warmable(ttl=60, tags={"t"})
    async def double(x: int) -> int:
        await asyncio.sleep(0.005)  # a computation that costs something
        return 2 * x

    async def outage() -> tuple[list[tuple[float, float]], list[Any], float, float]:
        for x in range(40):
            await double(x)
        calls: list[tuple[float, float]] = []
        wrong: list[Any] = []
        gaps = [0.0]
        stop = asyncio.Event()

        async def caller(n: int) -> None:
            for i in itertools.count(n):
                if stop.is_set():
                    return
                x = i % 40
                t0 = time.monotonic()
                value: int | Exception
                try:
                    value = await double(x)
                except Exception as exc:  # counted: no await may fail
                    value = exc
                calls.append((t0, time.monotonic() - t0))
                if value != 2 * x:
                    wrong.append(value)

        async def ticker() -> None:
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tasks = [asyncio.create_task(caller(n)) for n in range(20)]
        tasks.append(asyncio.create_task(ticker()))
        await asyncio.sleep(0.2)
        fault_at = time.monotonic()
        await asyncio.to_thread(server.pause if fault == "pause" else server.kill)
        await asyncio.sleep(FAULT_SECONDS)
        back_at = time.monotonic()
        await asyncio.to_thread(server.resume if fault == "pause" else server.start)
        stop.set()
        await asyncio.gather(*tasks)
        during = [c for c in calls if fault_at <= c[0] < back_at]
        return during, wrong, max(gaps), max(seconds for _, seconds in calls)

    during, wrong, largest_gap, slowest = asyncio.run(outage())
    print(
        f"\n[{kind} {fault}, awaited] calls during the fault: {len(during)}, slowest "
        f"{slowest:.3f} s, largest loop gap {largest_gap:.3f} s"
    )
    assert wrong == []
    assert len(during) >= MIN_CALLS_DURING_FAULT
    assert slowest <= MAX_CALL_SECONDS
    assert largest_gap < 0.25
    keys = itertools.count(1000)

    def one_cached() -> bool:
        key = next(keys)
        asyncio.run(double(key))
        return double.get(key) is not NO_VALUE

    wait_until(one_cached, RESUME_WITHIN, interval=0.02, message="a value cached after recovery")


def test_a_slow_backend_costs_a_miss_a_bounded_time(
    engine: CacheWarmingEngine,
    kind: str,
    server: servers.Server,
    client_closer: servers.ClientCloser,
    health_warnings: Callable[[str], list[str]],
) -> None:
    """A server answering every request 0.4 s late (under the client timeout) never
    times out, but a miss that spends 0.75 s on round trips counts it unavailable:
    no call costs the whole 5 s. A call usually takes 1.2 s (three round trips:
    the first read, then its budget's two); the slowest seen took 2.4 s (six: a
    new connection's handshake, or a wait for another thread's lock, on top).
    Caching resumes when the server is fast again."""
    proxy = servers.SlowProxy(server)
    try:
        client_closer.watch(configure(engine, kind, proxy))

        @dogpile_warm.warmable(ttl=60, tags={"t"})
        def double(x: int) -> int:
            time.sleep(0.005)  # real time: a computation that costs something
            return 2 * x

        with Load(double, keys=5000) as load:  # mostly misses
            load.under_way()
            slow_at = time.monotonic()
            proxy.delay = 0.4
            time.sleep(SLOW_SERVER_SECONDS)  # real time: the slow spell the callers live through
            fast_at = time.monotonic()
            proxy.delay = 0.0
            resumed_in = wait_until_cached(double, 100_000, RESUME_WITHIN)
        during = load.between(slow_at, fast_at)
        slowest = max(c.seconds for c in load.calls)
        print(
            f"\n[{kind} slow] calls during: {len(during)}, slowest {slowest:.3f} s, "
            f"cached again {resumed_in:.2f} s after"
        )
        assert [c.error for c in load.calls if c.error is not None] == [] and load.wrong == []
        assert slowest <= SLOW_SERVER_MAX_CALL_SECONDS
        assert (
            len(during) >= 4 * SLOW_SERVER_SECONDS / SLOW_SERVER_MAX_CALL_SECONDS
        )  # all kept going
        assert "spent over" in health_warnings("is unavailable")[0]
        engine.close()
    finally:
        proxy.stop()


def test_two_processes_invalidating_one_tag_at_once_both_succeed(
    region: Any, kind: str, server: servers.Server, client_closer: servers.ClientCloser
) -> None:
    """An invalidation that reads back another process's newer version was recorded all
    the same: only a version that did not change means a lost write."""
    other = CacheWarmingEngine()
    client_closer.watch(configure(other, kind, server))
    errors: list[BaseException] = []

    def invalidate(engine: Any) -> None:
        for _ in range(100):
            try:
                engine.invalidate_by_tags({"catalog"})
            except WarmError as exc:
                errors.append(exc)

    engines = [dogpile_warm.get_warming_engine(), other] * 2
    threads = [threading.Thread(target=invalidate, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    other.close()
    assert errors == []


def test_callers_get_computed_values_while_the_backend_is_down(
    region: Any, server: servers.Server
) -> None:
    """With the server killed, every call returns the correct value, computed, without raising."""
    runs: list[int] = []

    @dogpile_warm.warmable(ttl=60, tags={"t"})
    def double(x: int) -> int:
        runs.append(x)
        return x * 2

    assert double(1) == 2
    server.kill()

    assert [double(i % 3) for i in range(30)] == [(i % 3) * 2 for i in range(30)]
    assert len(runs) == 31  # nothing can be cached: every call computed


def test_warming_while_down_reports_failure_and_logs_no_line_per_key(
    region: Any, server: servers.Server, caplog: pytest.LogCaptureFixture
) -> None:
    """While the server is dead, critical warming skips its task (the fleet's claim on it
    cannot be made) and says why, warm_tasks and warm_cache report each key failed, and
    the outage's one warning is all that is logged (not one line per key)."""
    caplog.set_level(logging.WARNING, logger="dogpile_warm")

    @dogpile_warm.warmable(priority=100, ttl=60, warm_args=[(i,) for i in range(20)])
    def settings(i: int) -> str:
        return "on"

    server.kill()
    report = dogpile_warm.warm_critical_data()
    assert (report["succeeded"], report["failed"], report["skipped"]) == (0, 0, 1)
    [skipped] = report["skipped_tasks"]
    assert "could not say" in skipped["reason"]

    report = dogpile_warm.get_warming_engine().warm_tasks(critical_only=True)
    assert (report["succeeded"], report["failed"]) == (0, 20)
    assert all("BackendUnavailable" in str(row["error"]) for row in report["results"])
    assert dogpile_warm.warm_cache("report", lambda: 1, ttl=60) is False
    assert dogpile_warm.get_cached("report") is NO_VALUE
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "is unavailable" in warnings[0], warnings


def test_an_invalidation_while_down_raises_at_once(region: Any, server: servers.Server) -> None:
    """``invalidate_by_tags`` cannot be recorded: it raises WarmError within the client timeout."""

    @dogpile_warm.warmable(ttl=60, tags={"t"})
    def value() -> int:
        return 1

    value()
    server.pause()
    t0 = time.monotonic()
    with pytest.raises(WarmError, match="could not invalidate"):
        dogpile_warm.invalidate_by_tags("t")
    assert time.monotonic() - t0 < MAX_CALL_SECONDS


def test_each_outage_is_logged_once_at_each_end(
    region: Any, server: servers.Server, health_warnings: Callable[[str], list[str]]
) -> None:
    """Two outages separated by a recovery log two warnings each: start and end."""

    @dogpile_warm.warmable(ttl=60)
    def double(x: int) -> int:
        return x * 2

    for outage in range(2):
        double(1)
        server.kill()
        for i in range(10):
            double(i)
        server.start()
        wait_until_cached(double, 100 * (outage + 1), RESUME_WITHIN)

        def end_logged(outage: int = outage) -> bool:
            if len(health_warnings("answers again")) > outage:
                return True
            double(1)  # calls go on meanwhile
            return False

        wait_until(end_logged, END_LOGGED_WITHIN, interval=0.05, message="the end logged")

    assert len(health_warnings("is unavailable")) == 2
    assert len(health_warnings("answers again")) == 2


@pytest.mark.memcached
def test_one_of_three_memcached_servers_down_logs_one_outage(
    engine: CacheWarmingEngine,
    client_closer: servers.ClientCloser,
    health_warnings: Callable[[str], list[str]],
) -> None:
    """8 threads over 3 servers, one killed for 2 s: every call answers correctly, and the
    outage is one warning when it starts and one when it ends."""
    fleet = [servers.start_memcached() for _ in range(3)]
    try:
        client_closer.watch(
            engine.configure_region(
                "default",
                "dogpile.cache.pymemcache",
                arguments={"url": [s.url for s in fleet], "distributed_lock": True},
            )
        )

        @dogpile_warm.warmable(ttl=60, tags={"t"})
        def double(x: int) -> int:
            return 2 * x

        with Load(double, threads=8, keys=200) as load:
            load.under_way()
            fleet[1].kill()
            time.sleep(2.0)  # real time: the outage the callers live through
            fleet[1].start()
            wait_until_cached(double, 10_000, RESUME_WITHIN)
            wait_until(
                lambda: health_warnings("answers again"),
                END_LOGGED_WITHIN,
                interval=0.05,
                message="the end of the outage logged",
            )
        errors = [c.error for c in load.calls if c.error is not None]
        assert errors == [] and load.wrong == []
        assert len(health_warnings("is unavailable")) == 1
        assert len(health_warnings("answers again")) == 1
    finally:
        for s in fleet:
            s.stop()


# -- values the backend refuses or cannot give back ------------------------------------------


def test_a_value_the_backend_refuses_is_returned_counted_and_logged_once(
    region: Any, kind: str, health_warnings: Callable[[str], list[str]]
) -> None:
    """An unpicklable value (and, on memcached, one over its 1 MB item limit) reaches every
    caller; each refusal is counted, logged once per function, and is no outage."""
    lock = threading.Lock()

    @dogpile_warm.warmable(ttl=60)
    def unpicklable() -> threading.Lock:
        return lock

    @dogpile_warm.warmable(ttl=60)
    def big() -> bytes:
        return b"x" * (2_000_000 if kind == "memcached" else 10)

    @dogpile_warm.warmable(ttl=60)
    def small(x: int) -> int:
        return x

    for _ in range(50):
        assert unpicklable() is lock
        assert len(big()) in (2_000_000, 10)
    small(1)

    stats = dogpile_warm.get_warming_stats()
    refused = 100 if kind == "memcached" else 50
    assert stats["values_refused"] == refused
    assert stats["backend_unavailable"] == 0 and stats["backends_down"] == []
    assert len(health_warnings("refused")) == (2 if kind == "memcached" else 1)
    assert small.get(1) == 1  # the backend still caches everything else


def crafted_entry(key_opcodes: bytes) -> bytes:
    """A pickled entry of dogpile_warm's format whose key is made by ``key_opcodes``
    (pickle opcodes no pickler writes), and whose other fields are well formed."""
    fields = pickle.dumps((7, time.time(), 600.0, (), 0.0), 4)
    assert fields.startswith(b"\x80\x04\x95") and fields.endswith(b"t\x94.")
    marker = pickle.dumps("dogpile_warm/2", 4)[11:-2]  # the string's opcode, unframed
    return b"\x80\x04(" + marker + key_opcodes + fields[12:-3] + b"t."


# (bytes, memcached flags): pymemcache's 0 bytes, 1 pickle, 2 int, 4 long, 16 text;
# FLAG_ENTRY dogpile_warm's entry.
CRAFTED = [
    pytest.param(b"\x80\x05garbage", 1, id="not-a-pickle"),
    pytest.param(pickle.dumps(12345), 1, id="a-pickled-int"),
    pytest.param(b'{"ct": 1}|' + pickle.dumps(("dogpile_warm/2", 1)), 1, id="a-short-tuple"),
    pytest.param(b"\x80\x05garbage", FLAG_ENTRY, id="an-entry-not-a-pickle"),
    pytest.param(pickle.dumps(12345), FLAG_ENTRY, id="an-entry-a-pickled-int"),
    pytest.param(pickle.dumps(("dogpile_warm/2", 1)), FLAG_ENTRY, id="an-entry-a-short-tuple"),
    # An entry whose key is lists nested 5,000 deep (deeper than str() recurses), then
    # tuples each holding the last one twice: their str() raised RecursionError, and
    # took time and memory doubling per level with the GIL held. Not deeper: each of a
    # call's reads unpickles it, and 100,000 deep spent the call's 0.75 s round-trip
    # budget on a loaded machine.
    pytest.param(crafted_entry(b"]" * 5_000 + b"a" * 4_999), 1, id="a-deeply-nested-key"),
    pytest.param(crafted_entry(b"]" * 5_000 + b"a" * 4_999), FLAG_ENTRY, id="an-entry-deep-key"),
    pytest.param(crafted_entry(b"]" + b"2\x86" * 40), FLAG_ENTRY, id="an-entry-shared-tuples-key"),
    pytest.param(b"raw bytes", 0, id="plain-bytes"),
    pytest.param(b"not an int", 2, id="a-bad-int"),
    pytest.param(b"not a long", 4, id="a-bad-long"),
]


@pytest.mark.parametrize(("raw", "flags"), CRAFTED)
@pytest.mark.parametrize("where", ["value", "tag version"])
def test_crafted_bytes_under_a_key_read_as_a_counted_miss(
    region: Any,
    kind: str,
    server: servers.Server,
    raw: bytes,
    flags: int,
    where: str,
    health_warnings: Callable[[str], list[str]],
) -> None:
    """Bytes written straight into the backend under a function's key or its tag's version
    key are recomputed over, counted as unreadable, logged once, and open no breaker."""
    runs: list[int] = []

    @dogpile_warm.warmable(ttl=60, tags={"t"})
    def double(x: int) -> int:
        runs.append(x)
        return 2 * x

    key = safe_key(double.key_for(4)) if where == "value" else tag_key("t")
    double(4)
    runs.clear()
    for _ in range(3):
        server.write_raw(key, raw, flags)
        assert double(4) == 8
    assert double(4) == 8  # the recomputed value (and tag version) stored over the bytes: a hit

    stats = dogpile_warm.get_warming_stats()
    assert runs == [4, 4, 4]
    assert (
        stats["values_unreadable"] >= 3
    )  # each read of the bytes counts (dogpile's Lock reads twice)
    assert stats["backend_unavailable"] == 0 and stats["backends_down"] == []
    assert len(health_warnings("unreadable")) == 1


# A stored entry's fields after the format marker and the key: (value, created, ttl, tags,
# cost), each with one field that no Entry has.
MALFORMED_FIELDS = [
    pytest.param(("stale", "yesterday", 60.0, (), 0.0), id="created-a-string"),
    pytest.param(("stale", None, 60.0, (), 0.0), id="created-none"),
    pytest.param(("stale", float("nan"), 60.0, (), 0.0), id="created-nan"),
    pytest.param(("stale", float("inf"), 60.0, (), 0.0), id="created-infinite"),
    pytest.param(("stale", "now", 60.0, ("t",), 0.0), id="tags-not-pairs"),
    pytest.param(("stale", "now", 60.0, [("t", "1")], 0.0), id="tags-a-list"),
    pytest.param(("stale", "now", 60.0, (("t", 1),), 0.0), id="tag-version-an-int"),
    pytest.param(("stale", "now", None, (), 0.0), id="ttl-none"),
    pytest.param(("stale", "now", 60.0, (), "cheap"), id="cost-a-string"),
]


@pytest.mark.parametrize("fields", MALFORMED_FIELDS)
@pytest.mark.parametrize("tagged", [False, True], ids=["untagged", "tagged"])
def test_an_entry_with_malformed_fields_reads_as_a_counted_miss(
    region: Any, kind: str, server: servers.Server, fields: tuple[Any, ...], tagged: bool
) -> None:
    """A value in the entry's own format, under its own key, whose fields are not an
    entry's (as a corrupted or crafted value may be): recomputed over and counted as
    unreadable, never served and never raised to the caller."""
    from dogpile.cache.api import CachedValue

    from dogpile_warm._core.entry import FORMAT

    @dogpile_warm.warmable(ttl=60, tags={"t"} if tagged else set())
    def double(x: int) -> int:
        return 2 * x

    key = double.key_for(4)
    double(4)
    fields = tuple(time.time() if field == "now" else field for field in fields)
    payload = (FORMAT, key, *fields)
    meta = {"ct": time.time(), "v": 2}
    if kind == "memcached":  # as dogpile_warm stores entries, and as dogpile stores values
        written = [
            (pickle.dumps(payload), FLAG_ENTRY),
            (pickle.dumps(CachedValue(payload, meta)), 1),
        ]
    else:
        written = [(b'{"ct": %f, "v": 2}|' % meta["ct"] + pickle.dumps(payload), 0)]
    for raw, flags in written:
        server.write_raw(safe_key(key), raw, flags)
        before = dogpile_warm.get_warming_stats()["values_unreadable"]
        assert double(4) == 8
        assert dogpile_warm.get_warming_stats()["values_unreadable"] > before
        assert double(4) == 8  # the recomputed value, stored over the crafted one


# -- the ttl promise when a write hangs ------------------------------------------------------


@pytest.mark.memcached
def test_a_value_whose_write_hung_past_its_ttl_is_not_returned(
    engine: CacheWarmingEngine, client_closer: servers.ClientCloser
) -> None:
    """On a passed-in region without client timeouts, a write that hangs longer than the
    ttl makes the caller get a newly computed value, never the one that aged while stored."""
    server = servers.start_memcached()
    try:
        region = client_closer.watch(
            make_region().configure("dogpile.cache.pymemcache", arguments={"url": server.url})
        )

        real = CacheWarmingEngine()  # on the real clock: the write really hangs past the ttl

        @dogpile_warm.warmable(ttl=1.0, refresh_ahead=None, region=region, engine=real)
        def stamp() -> float:
            started = time.time()
            time.sleep(0.2)  # real time: the server is paused meanwhile, so the write will hang
            return started

        timer = threading.Timer(0.1, server.pause)
        resumer = threading.Timer(1.6, server.resume)
        timer.start()
        resumer.start()
        value = stamp()
        age = time.time() - value
        timer.join()
        resumer.join()
        real.close()
        assert age <= 1.0
    finally:
        server.stop()


@pytest.mark.memcached
def test_invalidate_on_a_user_region_is_not_silently_lost_after_a_connection_error(
    client_closer: servers.ClientCloser,
) -> None:
    """After a connection error on a passed-in pymemcache region (which then drops writes
    for its retry window), ``invalidate_by_tags`` reaches the server or raises."""
    server = servers.start_memcached()
    this, other = CacheWarmingEngine(), CacheWarmingEngine()  # two processes of a fleet
    # The user's own region, with dogpile's default retry settings except a longer
    # retry window (default 1 s) so that the test does not race it.
    users_region = client_closer.watch(
        make_region().configure(
            "dogpile.cache.pymemcache",
            arguments={"url": server.url, "hashclient_retry_timeout": 30},
        )
    )
    client_closer.watch(configure(other, "memcached", server))
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
        server.kill()
        read_here(), read_here()  # meets "connection refused": the server is marked failed
        server.start()
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
        server.stop()


def test_a_computation_reading_many_cached_values_spends_no_budget_of_its_callers(
    engine: CacheWarmingEngine,
    kind: str,
    server: servers.Server,
    client_closer: servers.ClientCloser,
) -> None:
    """A miss whose computation reads 200 cached values, 5 ms a round trip (a second in
    all), charges them to those reads, not to the miss: nothing counts as an outage."""
    proxy = servers.SlowProxy(server)
    try:
        client_closer.watch(configure(engine, kind, proxy))

        @dogpile_warm.warmable(ttl=60)
        def part(i: int) -> int:
            return i

        @dogpile_warm.warmable(ttl=60)
        def page() -> int:
            return sum(part(i) for i in range(200))

        for i in range(200):
            part(i)
        proxy.delay = 0.005
        assert page() == sum(range(200))
        stats = engine.get_stats()
        assert stats["hits"] >= 200
        assert stats["backend_unavailable"] == 0 and stats["backends_down"] == []
        engine.close()
    finally:
        proxy.stop()
