"""``@warmable`` on an ``async def``: awaited values, one computation per key, refresh ahead
on the loop, the awaitable companions and the engine's ``awarm_*`` methods.

Each test runs its own event loop with :func:`asyncio.run`; the engine is the suite's
(fake clock) unless a test needs real time.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from dogpile.cache.api import NO_VALUE

from dogpile_warm import (
    AsyncWarmableFunction,
    CacheWarmingEngine,
    ReentrantCallError,
    WarmableFunction,
    WarmingTask,
    warmable,
)
from dogpile_warm._core.locks import KeyLock
from dogpile_warm.testing import FakeClock, captured_signals, wait_until
from tests import servers
from tests.conftest import configure_backend

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


class Computes:
    """Counts computations and remembers the loop and thread each ran on."""

    def __init__(self) -> None:
        self.args: list[Any] = []
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.threads: list[str] = []

    def note(self, arg: Any) -> None:
        self.args.append(arg)
        self.loops.append(asyncio.get_running_loop())
        self.threads.append(threading.current_thread().name)


def async_function(
    engine: CacheWarmingEngine, computes: Computes, delay: float = 0.0, **settings: Any
) -> AsyncWarmableFunction[[int], str]:
    @warmable(engine=engine, ttl=60, name="load", **settings)
    async def load(x: int) -> str:
        computes.note(x)
        if delay:
            await asyncio.sleep(delay)
        return f"value-{x}-{len(computes.args)}"

    return load


# -- what frameworks and users see ------------------------------------------------------
def test_an_async_function_stays_a_coroutine_function() -> None:
    """Frameworks detect it: inspect and asyncio both see a coroutine function, also as a
    method, and the result is an AsyncWarmableFunction (a WarmableFunction too)."""

    @warmable(ttl=60)
    async def load(x: int) -> int:
        return x

    class Shop:
        @warmable(ttl=60)
        async def price(self, item: str) -> int:
            return len(item)

    assert inspect.iscoroutinefunction(load)
    assert asyncio.iscoroutinefunction(load)
    assert inspect.iscoroutinefunction(Shop().price)
    assert isinstance(load, AsyncWarmableFunction) and isinstance(load, WarmableFunction)


def test_awaiting_returns_the_value_and_a_second_await_is_a_hit(
    engine: CacheWarmingEngine,
) -> None:
    """await f(x) computes once; the next await returns the cached value."""
    computes = Computes()
    load = async_function(engine, computes)

    async def main() -> list[str]:
        return [await load(1), await load(1), await load(2)]

    assert run(main()) == ["value-1-1", "value-1-1", "value-2-2"]
    assert computes.args == [1, 2]
    stats = engine.get_stats()
    assert (stats["hits"], stats["misses"]) == (1, 2)


def test_a_memory_hit_returns_without_suspending(engine: CacheWarmingEngine) -> None:
    """On the memory backend a cached value comes back at the coroutine's first step:
    nothing yields to the loop (the coroutine finishes on its first send)."""
    load = async_function(engine, Computes())
    run(load(1))
    coroutine = load(1)
    with pytest.raises(StopIteration) as finished:
        coroutine.send(None)
    assert finished.value.value == "value-1-1"


def test_the_async_and_sync_read_paths_agree_on_keys_and_counts(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """The async reader's written-out key memo and hit counting give what key_for and the
    sync path give: same keys, same computations, same hit and miss counts."""
    calls: list[tuple[str, Any]] = []
    other = CacheWarmingEngine(clock=clock)

    @warmable(engine=other, ttl=60, name="sync")
    def sync(x: Any, y: int = 0) -> Any:
        calls.append(("sync", x))
        return x

    @warmable(engine=engine, ttl=60, name="async")
    async def asynchronous(x: Any, y: int = 0) -> Any:
        calls.append(("async", x))
        return x

    arguments: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1,), {}),
        (("a",), {}),
        ((1.5,), {"y": 2}),
        ((1,), {}),
        (([1, 2],), {}),
        ((True,), {}),
    ]

    async def main() -> None:
        for args, kwargs in arguments:
            assert await asynchronous(*args, **kwargs) == sync(*args, **kwargs)

    run(main())
    assert [x for kind, x in calls if kind == "sync"] == [x for kind, x in calls if kind == "async"]
    for args, kwargs in arguments:
        assert sync.key_for(*args, **kwargs).replace("sync", "async", 1) == (
            asynchronous.key_for(*args, **kwargs)
        )
        assert asynchronous.get(*args, **kwargs) == args[0]
    counts = [(e.get_stats()["hits"], e.get_stats()["misses"]) for e in (engine, other)]
    other.close()
    assert counts[0] == counts[1] and counts[0][0] > 0


def test_an_async_generator_function_is_refused() -> None:
    """An async generator, cached, would be iterated once: refused at decoration."""

    async def rows(n: int) -> Any:
        yield n

    with pytest.raises(TypeError, match=r"async generator.*rows"):
        warmable(ttl=60)(rows)


# -- one computation per key -------------------------------------------------------------
def test_concurrent_awaiters_of_a_cold_key_share_one_computation(
    backend: str, engine: CacheWarmingEngine
) -> None:
    """200 awaiters of one cold key, on memory, memcached and Redis: one computation, one
    value for all, one miss and 199 hits."""
    computes = Computes()
    load = async_function(engine, computes, delay=0.02)

    async def main() -> list[str]:
        return await asyncio.gather(*(load(7) for _ in range(200)))

    with captured_signals("cache_hit", "cache_miss") as seen:
        values = run(main())
    assert set(values) == {"value-7-1"} and computes.args == [7]
    assert len(seen.named("cache_miss")) == 1
    assert len(seen.named("cache_hit")) == 199


def test_an_exception_reaches_every_awaiter_and_is_not_cached(engine: CacheWarmingEngine) -> None:
    """A computation that raises fails all its awaiters with that exception; nothing is
    stored, and the next await computes again."""
    attempts: list[int] = []

    @warmable(engine=engine, ttl=60)
    async def flaky(x: int) -> int:
        attempts.append(x)
        await asyncio.sleep(0.01)
        if len(attempts) == 1:
            raise ValueError("upstream down")
        return x * 10

    async def main() -> tuple[list[Any], int]:
        first = await asyncio.gather(*(flaky(1) for _ in range(5)), return_exceptions=True)
        return first, await flaky(1)

    first, second = run(main())
    assert all(isinstance(e, ValueError) and str(e) == "upstream down" for e in first)
    assert second == 10 and attempts == [1, 1]


def test_cancelling_one_awaiter_leaves_the_computation_to_the_others(
    engine: CacheWarmingEngine,
) -> None:
    """The first awaiter is cancelled mid-computation: the others still get the value,
    it is computed once, and it is stored."""
    computes = Computes()
    load = async_function(engine, computes, delay=0.05)

    async def main() -> list[str]:
        first = asyncio.create_task(load(3))
        await asyncio.sleep(0.01)  # the computation is under way
        others = [asyncio.create_task(load(3)) for _ in range(3)]
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await asyncio.gather(*others)

    assert run(main()) == ["value-3-1"] * 3
    assert computes.args == [3]
    assert load.get(3) == "value-3-1"


def test_a_computation_awaiting_its_own_key_raises_rather_than_waits_forever(
    engine: CacheWarmingEngine,
) -> None:
    """An async computation that awaits its own key gets ReentrantCallError at once."""

    @warmable(engine=engine, ttl=60)
    async def loop_forever(x: int) -> int:
        return await loop_forever(x)

    with pytest.raises(ReentrantCallError, match="loop_forever"):
        run(asyncio.wait_for(loop_forever(1), 5))


def test_separate_event_loops_in_threads_compute_a_key_once(engine: CacheWarmingEngine) -> None:
    """Two threads, each with its own loop, await one cold key: the key's lock (here the
    memory region's) lets one of them compute."""
    computes = Computes()
    load = async_function(engine, computes, delay=0.1)
    barrier = threading.Barrier(2)
    values: list[str] = []

    def thread() -> None:
        barrier.wait()
        values.append(run(load(4)))

    threads = [threading.Thread(target=thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert values == ["value-4-1"] * 2 and computes.args == [4]


# -- freshness and refresh ahead ------------------------------------------------------------
def test_a_due_value_is_served_while_a_refresh_task_runs_on_the_callers_loop(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """Past refresh_ahead * ttl, the await returns the cached value at once and one refresh
    task recomputes it on the same loop; the next await gets the new value."""
    computes = Computes()
    load = async_function(engine, computes, refresh_ahead=0.5)

    async def main() -> tuple[str, str, asyncio.AbstractEventLoop]:
        await load(1)
        clock.advance(40)  # past 0.5 * 60 s
        served = await asyncio.gather(*(load(1) for _ in range(10)))
        assert set(served) == {"value-1-1"}
        await asyncio.sleep(0.05)  # the refresh task runs
        return served[0], await load(1), asyncio.get_running_loop()

    with captured_signals("refreshed") as seen:
        served, after, loop = run(main())
    assert (served, after) == ("value-1-1", "value-1-2")
    assert computes.args == [1, 1] and computes.loops[1] is loop
    assert [c.signal for c in seen] == ["refreshed"]


def test_a_value_past_its_ttl_is_never_served(engine: CacheWarmingEngine, clock: FakeClock) -> None:
    """Past the ttl the awaiter waits for the recompute, never gets the old value."""
    computes = Computes()
    load = async_function(engine, computes)

    async def main() -> str:
        await load(1)
        clock.advance(61)
        return await load(1)

    assert run(main()) == "value-1-2"


def test_a_failed_refresh_is_hidden_until_the_ttl_then_raised(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """A refresh that raises leaves the old value served until its ttl; past it, the
    awaiter's own recompute raises."""
    failing = [False]

    @warmable(engine=engine, ttl=60, refresh_ahead=0.5)
    async def price(x: int) -> int:
        if failing[0]:
            raise RuntimeError("pricing service down")
        return x

    async def main() -> None:
        assert await price(5) == 5
        failing[0] = True
        clock.advance(40)
        assert await price(5) == 5  # due: served, refresh started
        await asyncio.sleep(0.05)
        assert await price(5) == 5  # the refresh failed; still within the ttl
        clock.advance(21)
        with pytest.raises(RuntimeError, match="pricing service down"):
            await price(5)

    with captured_signals("warm_failed") as seen:
        run(main())
    [failed] = seen
    assert str(failed.kwargs["error"]) == "pricing service down"


def test_stale_if_error_serves_the_old_value_to_awaiters(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """With stale_if_error, a recompute past the ttl that raises returns the old value."""
    failing = [False]

    @warmable(engine=engine, ttl=60, refresh_ahead=None, stale_if_error=30)
    async def rate(x: int) -> int:
        if failing[0]:
            raise RuntimeError("down")
        return x

    async def main() -> int:
        await rate(2)
        failing[0] = True
        clock.advance(70)
        return await rate(2)

    assert run(main()) == 2
    assert engine.get_stats()["stale_served"] == 1


def test_invalidating_a_tag_makes_the_next_await_recompute(
    backend: str, engine: CacheWarmingEngine
) -> None:
    """A tagged async value is recomputed after invalidate_by_tags, on every backend."""
    computes = Computes()
    load = async_function(engine, computes, tags=["catalog"])

    async def main() -> list[str]:
        first = await load(1)
        engine.invalidate_by_tags("catalog")
        return [first, await load(1), await load(1)]

    assert run(main()) == ["value-1-1", "value-1-2", "value-1-2"]


# -- awaitable companions ------------------------------------------------------------------
def test_the_awaitable_companions_of_an_async_function(
    backend: str, engine: CacheWarmingEngine
) -> None:
    """aset, aget, ainvalidate, arefresh and awarm work on every backend; arefresh and
    awarm compute on the awaiting loop."""
    computes = Computes()
    load = async_function(engine, computes)

    async def main() -> asyncio.AbstractEventLoop:
        await load.aset("given", 1)
        assert await load.aget(1) == "given" and await load(1) == "given"
        await load.ainvalidate(1)
        assert await load.aget(1) is NO_VALUE
        assert await load.arefresh(1) == "value-1-1"
        assert await load.awarm(2) is True
        assert await load.aget(2) == "value-2-2"
        return asyncio.get_running_loop()

    loop = run(main())
    assert computes.args == [1, 2] and computes.loops == [loop, loop]


def test_the_awaitable_companions_of_a_sync_function_compute_off_the_loop(
    engine: CacheWarmingEngine,
) -> None:
    """A sync function's arefresh and awarm compute in another thread, not the loop's."""
    threads: list[str] = []

    @warmable(engine=engine, ttl=60)
    def square(x: int) -> int:
        threads.append(threading.current_thread().name)
        return x * x

    async def main() -> None:
        assert await square.arefresh(3) == 9
        assert await square.awarm(4) is True
        assert await square.aget(4) == 16

    run(main())
    assert len(threads) == 2 and "MainThread" not in threads


def test_a_bound_async_methods_companions_compute_with_their_instance(
    engine: CacheWarmingEngine,
) -> None:
    """obj.method.awarm(x) and arefresh(x) compute with obj; awaiting the method reads it."""

    class Shop:
        def __init__(self, markup: int) -> None:
            self.markup = markup

        @warmable(engine=engine, ttl=60)
        async def price(self, item: str) -> int:
            return len(item) + self.markup

    shop = Shop(100)

    async def main() -> list[Any]:
        return [
            await shop.price.awarm("tea"),
            await shop.price.aget("tea"),
            await shop.price.arefresh("milk"),
            await shop.price("milk"),
        ]

    assert run(main()) == [True, 103, 104, 104]


def test_sync_attributes_of_an_async_function_compute_outside_a_loop(
    engine: CacheWarmingEngine,
) -> None:
    """Outside any loop, refresh() and warm() of an async function run its coroutine;
    inside a loop's thread, warm() reports why it cannot, naming the awaitable."""
    computes = Computes()
    load = async_function(engine, computes)
    assert load.refresh(1) == "value-1-1" and load.warm(2) is True
    assert load.get(2) == "value-2-2"

    async def inside() -> bool:
        return load.warm(3)

    with captured_signals("warm_failed") as seen:
        assert run(inside()) is False
    [failed] = seen
    assert "await" in str(failed.kwargs["error"]) and "awarm" in str(failed.kwargs["error"])


# -- warming from the engine ----------------------------------------------------------------
def critical_async_function(engine: CacheWarmingEngine, computes: Computes) -> Any:
    @warmable(engine=engine, ttl=60, priority=100, warm_args=[(1,), (2,), (3,)])
    async def catalog(page: int) -> str:
        computes.note(page)
        await asyncio.sleep(0.01)
        return f"page-{page}"

    return catalog


def test_awarm_critical_data_computes_on_the_awaiting_loop(engine: CacheWarmingEngine) -> None:
    """awarm_critical_data stores every argument set, computed on the caller's loop,
    which meanwhile keeps running (a ticker advances)."""
    computes = Computes()
    catalog = critical_async_function(engine, computes)
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.001)

    async def main() -> tuple[Any, asyncio.AbstractEventLoop]:
        ticking = asyncio.create_task(ticker())
        report = await engine.awarm_critical_data()
        ticking.cancel()
        return report, asyncio.get_running_loop()

    report, loop = run(main())
    assert report["succeeded"] == 3 and report["failed"] == 0
    assert sorted(computes.args) == [1, 2, 3] and set(computes.loops) == {loop}
    assert len(ticks) > 3
    assert catalog.get(2) == "page-2"


def test_sync_warm_critical_data_warms_async_functions(engine: CacheWarmingEngine) -> None:
    """Called from sync code, warm_critical_data computes async functions in its workers,
    each in an event loop of its own."""
    computes = Computes()
    catalog = critical_async_function(engine, computes)
    report = engine.warm_critical_data()
    assert report["succeeded"] == 3 and sorted(computes.args) == [1, 2, 3]
    assert "MainThread" not in computes.threads
    assert catalog.get(1) == "page-1"


def test_sync_warm_called_inside_a_loop_still_warms_a_single_key(
    engine: CacheWarmingEngine,
) -> None:
    """warm_critical_data() called (blocking) from a coroutine: even one key is computed
    in a worker thread, where its coroutine can run."""
    computes = Computes()

    @warmable(engine=engine, ttl=60, priority=100)
    async def banner() -> str:
        computes.note(None)
        return "hello"

    async def main() -> Any:
        return engine.warm_critical_data()

    assert run(main())["succeeded"] == 1 and banner.get() == "hello"


def test_a_scheduled_cycle_warms_async_functions(engine: CacheWarmingEngine) -> None:
    """The scheduler's cycle (here run in the test's thread, as its own thread runs it)
    warms a critical async function, each computation in an event loop of its own."""
    computes = Computes()
    catalog = critical_async_function(engine, computes)
    report = engine.run_scheduled_cycle()
    assert report["keys_warmed"] == 3 and sorted(computes.args) == [1, 2, 3]
    assert catalog.get(3) == "page-3"


def test_awarm_user_data_preloads_an_async_per_user_function(engine: CacheWarmingEngine) -> None:
    """On login, awarm_user_data computes the user's async values on the loop; a second
    login within the window is skipped."""
    computes = Computes()

    @warmable(engine=engine, ttl=60, user_arg="user_id")
    async def profile(user_id: int) -> dict[str, int]:
        computes.note(user_id)
        return {"id": user_id}

    async def main() -> tuple[Any, Any]:
        return await engine.awarm_user_data(42), await engine.awarm_user_data(42)

    first, second = run(main())
    assert first["keys_warmed"] == [profile.key_for(42)] and second["skipped"] is True
    assert computes.args == [42] and profile.get(42) == {"id": 42}


def test_awarm_tasks_and_awarm_hot_keys(engine: CacheWarmingEngine, clock: FakeClock) -> None:
    """awarm_tasks warms by tag; awarm_hot_keys recomputes keys read before, with their
    remembered arguments."""
    computes = Computes()

    @warmable(engine=engine, ttl=60, tags=["menu"], warm_args=[(1,)])
    async def menu(page: int) -> str:
        computes.note(page)
        return f"menu-{page}-{len(computes.args)}"

    async def main() -> tuple[Any, Any]:
        by_tag = await engine.awarm_tasks("menu")
        await menu(5)
        engine.usage.drain()
        return by_tag, await engine.awarm_hot_keys(10)

    by_tag, hot = run(main())
    assert by_tag["succeeded"] == 1 and hot["succeeded"] >= 1
    assert 5 in computes.args[2:] and menu.get(5) == f"menu-5-{len(computes.args)}"


def test_plain_tasks_and_warm_cache_accept_coroutine_functions(
    engine: CacheWarmingEngine,
) -> None:
    """A WarmingTask's compute_fn and warm_cache's may be async functions: their awaited
    result is stored, not the coroutine."""

    async def compute() -> str:
        await asyncio.sleep(0)
        return "from a coroutine"

    engine.register_task(
        WarmingTask(task_id="t", name="t", cache_key="plain", compute_fn=compute, priority=100),
        is_critical=True,
    )
    assert engine.warm_critical_data()["succeeded"] == 1
    assert engine.get_cached("plain") == "from a coroutine"
    assert engine.warm_cache("other", compute) is True
    assert engine.get_cached("other") == "from a coroutine"


# -- the loop is never blocked by a backend ---------------------------------------------------
@pytest.mark.slow
@pytest.mark.memcached
def test_a_slow_memcached_never_blocks_the_event_loop(
    memcached_server: servers.Server, client_closer: servers.ClientCloser
) -> None:
    """Every memcached request held 20 ms by a proxy: while 50 cold keys compute (30 ms
    each) and are read again, a ticker coroutine's largest gap stays under 0.25 s (on the
    loop, each key's round trips would hold it for about 0.1 s, 5 s in all)."""
    memcached_server.flush()
    proxy = servers.SlowProxy(memcached_server)
    engine = CacheWarmingEngine()  # real time: the gaps are real
    try:
        configure_backend(engine, "memcached", proxy)
        client_closer.watch(engine.region)
        computes = Computes()
        load = async_function(engine, computes, delay=0.03)
        proxy.delay = 0.02
        gaps: list[float] = []

        async def ticker(stop: asyncio.Event) -> None:
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        async def main() -> tuple[list[str], list[str]]:
            stop = asyncio.Event()
            ticking = asyncio.create_task(ticker(stop))
            first = await asyncio.gather(*(load(i) for i in range(50)))
            again = await asyncio.gather(*(load(i) for i in range(50)))
            stop.set()
            await ticking
            return first, again

        first, again = run(main())
        assert first == again and len(set(first)) == 50 and len(computes.args) == 50
        assert engine.get_stats()["hits"] == 50
        assert max(gaps) < 0.25, f"largest gap {max(gaps):.3f} s"
    finally:
        engine.close()
        proxy.stop()


def test_backend_calls_of_awaited_reads_leave_the_loop_only_where_they_may_block(
    backend: str, engine: CacheWarmingEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On memcached and Redis every read of an awaited miss runs in an io thread; on the
    memory backend in the loop's own thread."""
    store = engine.regions.store_for(None)
    read = store.read
    threads: list[str] = []

    def recording_read(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return read(*args, **kwargs)

    monkeypatch.setattr(store, "read", recording_read)
    load = async_function(engine, Computes())
    run(load(1))
    assert threads
    if backend == "memory":
        assert set(threads) == {"MainThread"}
    else:
        assert all(name.startswith("dogpile_warm-io") for name in threads)


# -- found by review: locks never left held, tags strict for joiners ----------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["memcached", "redis"])
def test_an_awaiter_cancelled_while_its_lock_is_taken_leaves_the_lock_free(
    kind: str,
    request: pytest.FixtureRequest,
    client_closer: servers.ClientCloser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The only awaiter of a cold key is cancelled while the key's distributed lock is
    being taken off the loop (a server answering 0.3 s late), and its loop ends: once
    taken, the lock is released, so the next read on a new loop computes at once."""
    server: servers.Server = request.getfixturevalue(f"{kind}_server")
    server.flush()
    proxy = servers.SlowProxy(server)
    engine = CacheWarmingEngine()
    try:
        configure_backend(engine, kind, proxy)
        client_closer.watch(engine.region)
        trying, tried = threading.Event(), threading.Event()
        acquire = KeyLock.acquire

        def observed(lock: KeyLock, wait: bool = True) -> bool:
            trying.set()
            try:
                return acquire(lock, wait)
            finally:
                tried.set()

        monkeypatch.setattr(KeyLock, "acquire", observed)

        @warmable(engine=engine, ttl=60, name="cancelled")
        async def g(x: int) -> int:
            return x

        async def leave_during_the_lock() -> None:
            await g(0)  # connections made at full speed
            proxy.delay = 0.3
            trying.clear()
            tried.clear()
            reader = asyncio.ensure_future(g(1))
            while not trying.is_set():
                await asyncio.sleep(0.01)
            reader.cancel()

        run(leave_during_the_lock())  # the loop ends, cancelling the flight
        assert tried.wait(5)  # the lock was taken, for a task no longer there
        proxy.delay = 0.0
        lock = engine.regions.store_for(None).lock(g.key_for(1))
        wait_until(lambda: not lock.locked(), 2, message="the abandoned lock released")
        started = time.monotonic()
        assert run(asyncio.wait_for(g(1), 10)) == 1
        assert time.monotonic() - started < 2.0
    finally:
        engine.close()
        proxy.stop()


def test_a_thread_bound_lock_is_released_by_the_thread_that_took_it(tmp_path: Any) -> None:
    """dbm's lock works only in the thread that took it: awaited misses take and release
    it in one io thread, so every later miss still gets it."""
    engine = CacheWarmingEngine()
    try:
        engine.configure_region(
            "default", "dogpile.cache.dbm", arguments={"filename": str(tmp_path / "c.dbm")}
        )

        @warmable(engine=engine, ttl=60, name="dbm")
        async def f(x: int) -> int:
            await asyncio.sleep(0.001)
            return x

        async def main() -> list[int]:
            first = await asyncio.gather(*(f(x) for x in range(100, 106)))
            return first + [await asyncio.wait_for(f(x), 3) for x in range(6)]

        assert run(main()) == [100, 101, 102, 103, 104, 105, 0, 1, 2, 3, 4, 5]
    finally:
        engine.close()


def test_an_await_begun_after_invalidate_by_tags_never_gets_the_value_it_invalidated(
    engine: CacheWarmingEngine,
) -> None:
    """An awaiter that starts after invalidate_by_tags() returned, while a computation
    begun before it is under way, gets a value computed after the invalidation."""
    version = [1]

    @warmable(engine=engine, ttl=60, tags=["price"])
    async def price(x: int) -> str:
        seen = version[0]
        await asyncio.sleep(0.05)
        return f"from v{seen}"

    async def main() -> tuple[str, str]:
        first = asyncio.ensure_future(price(1))
        await asyncio.sleep(0.01)  # its computation has read version 1
        version[0] = 2
        engine.invalidate_by_tags("price")
        late = await price(1)
        return await first, late

    assert run(main()) == ("from v1", "from v2")


def test_sync_warm_of_an_async_function_in_the_loops_thread_fails_at_once(
    engine: CacheWarmingEngine,
) -> None:
    """f.warm(x) and f.refresh(x) called in the loop's thread while a flight of that key
    holds its lock fail at once, before taking the lock (they could never wait for the
    coroutine there)."""
    load = async_function(engine, Computes(), delay=0.1)

    async def main() -> bool:
        flight = asyncio.ensure_future(load(1))
        await asyncio.sleep(0.02)  # the flight holds the key's lock
        warmed = load.warm(1)
        with pytest.raises(RuntimeError, match="awarm"):
            load.refresh(1)
        await flight
        return warmed

    assert run(main()) is False


def test_an_async_callable_object_and_a_wrapped_async_def_are_async(
    engine: CacheWarmingEngine,
) -> None:
    """What types call async (a callable returning a coroutine) is async at run time too:
    an object with an async __call__, and an async def under functools.wraps."""

    class Fetcher:
        async def __call__(self, x: int) -> int:
            return x + 1

    def logged(fn: Callable[[int], Coroutine[Any, Any, int]]) -> Callable[[int], Any]:
        @functools.wraps(fn)
        def call(x: int) -> Coroutine[Any, Any, int]:
            return fn(x)

        return call

    @logged
    async def fetch(x: int) -> int:
        return x * 2

    fetcher = warmable(engine=engine, ttl=60, name="fetcher")(Fetcher())
    wrapped = warmable(engine=engine, ttl=60, name="wrapped")(fetch)
    assert isinstance(fetcher, AsyncWarmableFunction)
    assert isinstance(wrapped, AsyncWarmableFunction)

    async def main() -> tuple[Any, Any]:
        return await fetcher(1), await wrapped(2)

    assert run(main()) == (2, 4)


def test_a_value_that_ages_past_its_ttl_before_its_awaiter_resumes_is_read_again(
    engine: CacheWarmingEngine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The promise is about what the caller receives: a flight that found the value
    within its ttl, which the loop then took long enough to hand over that the value
    aged past it, makes its awaiter read again (here: compute). One report per call."""
    computes = Computes()
    load = async_function(engine, computes, refresh_ahead=0.5)  # ttl 60 s
    assert run(load(1)) == "value-1-1"
    clock.advance(59)  # in the refresh window (from 30 s), within its ttl
    reads = load._self_reads
    assert reads is not None

    def slow_loop(*args: Any) -> None:  # the flight is done; its awaiter resumes late
        clock.advance(2.0)

    monkeypatch.setattr(reads, "_refresh_later", slow_loop)
    with captured_signals("cache_hit", "cache_miss") as sent:
        assert run(load(1)) == "value-1-2"  # 61 s old when handed over: computed again
    assert computes.args == [1, 1]
    assert len(sent.named("cache_miss")) == 1 and not sent.named("cache_hit")


def test_awaiters_of_a_value_served_stale_share_its_one_failed_recompute(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """With stale_if_error, five awaiters of an expired key whose recompute fails get the
    old value from one attempt: served_stale once, the joiners' reads as hits."""
    attempts: list[int] = []
    failing = False

    @warmable(engine=engine, ttl=10, stale_if_error=60, refresh_ahead=None)
    async def load(x: int) -> str:
        attempts.append(x)
        await asyncio.sleep(0.05)  # the joiners join while it runs
        if failing:
            raise TimeoutError("upstream down")
        return "old"

    assert run(load(1)) == "old"
    failing = True
    clock.advance(20)

    async def five() -> list[str]:
        return await asyncio.gather(*(load(1) for _ in range(5)))

    with captured_signals("served_stale", "cache_hit", "cache_miss") as sent:
        assert run(five()) == ["old"] * 5
    assert attempts == [1, 1]
    assert len(sent.named("served_stale")) == 1 and len(sent.named("cache_hit")) == 4
