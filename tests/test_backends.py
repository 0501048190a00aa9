"""Specifications that hold on every backend: memory, a real memcached and a real Redis.

Each test runs once per backend through the ``backend`` fixture, which points
the test's engine at an emptied server. Decorated functions are defined inside
the tests, so they register on the test's own engine.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from dogpile.cache import CacheRegion, make_region
from dogpile.cache.api import NO_VALUE

import dogpile_warm
from dogpile_warm import CacheWarmingEngine
from dogpile_warm.testing import FakeClock, captured_signals, wait_until
from tests.servers import ClientCloser, Server

pytestmark = pytest.mark.usefixtures("backend")

AWKWARD_ARGUMENTS = [
    "plain",
    "with spaces in it",
    "line\nbreak",
    "tab\tand\rreturn",
    "ünïcödé ✓ 日本語",
    "x" * 400,
    "x" * 399 + "y",
    "",
]


class Calls:
    """Counts how often a function body ran, per argument (thread-safe)."""

    def __init__(self) -> None:
        self.counts: Counter[Any] = Counter()
        self._lock = threading.Lock()

    def __call__(self, arg: Any = None) -> int:
        with self._lock:
            self.counts[arg] += 1
            return self.counts[arg]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@pytest.fixture
def calls() -> Calls:
    return Calls()


# -- reading through the cache ------------------------------------------------------


def test_cold_call_computes_and_second_call_hits(calls: Calls) -> None:
    """The first call runs the function; the second returns the cached value without running it."""

    @dogpile_warm.warmable(ttl=60)
    def answer() -> dict[str, int]:
        calls()
        return {"answer": 42}

    assert answer() == {"answer": 42}
    assert answer() == {"answer": 42}
    assert calls.total == 1


def test_distinct_arguments_have_distinct_values(calls: Calls) -> None:
    """Calls with different arguments are cached separately."""

    @dogpile_warm.warmable(ttl=60)
    def double(n: int) -> int:
        calls(n)
        return n * 2

    assert [double(1), double(2), double(1), double(2)] == [2, 4, 2, 4]
    assert calls.counts == {1: 1, 2: 1}


def test_awkward_arguments_make_working_distinct_keys(calls: Calls) -> None:
    """Spaces, control characters, unicode and 400-character arguments cache and stay distinct."""

    @dogpile_warm.warmable(ttl=60)
    def echo(text: str) -> str:
        calls(text)
        return f"<{text}>"

    first = [echo(text) for text in AWKWARD_ARGUMENTS]
    second = [echo(text) for text in AWKWARD_ARGUMENTS]

    assert first == second == [f"<{text}>" for text in AWKWARD_ARGUMENTS]
    assert calls.counts == dict.fromkeys(AWKWARD_ARGUMENTS, 1)
    assert [echo.get(text) for text in AWKWARD_ARGUMENTS] == first


def test_string_and_int_arguments_do_not_share_a_key(calls: Calls) -> None:
    """``f(1)`` and ``f("1")`` are different calls with different cached values."""

    @dogpile_warm.warmable(ttl=60)
    def kind(x: Any) -> str:
        calls(x)
        return type(x).__name__

    assert (kind(1), kind("1"), kind(1), kind("1")) == ("int", "str", "int", "str")
    assert calls.total == 2


def test_positional_keyword_and_default_calls_share_a_key(calls: Calls) -> None:
    """``f(1)``, ``f(x=1)`` and ``f()`` with ``x=1`` as default compute once."""

    @dogpile_warm.warmable(ttl=60)
    def f(x: int = 1) -> int:
        calls(x)
        return x + 100

    assert (f(1), f(x=1), f()) == (101, 101, 101)
    assert calls.total == 1
    assert f.key_for(1) == f.key_for(x=1) == f.key_for()


def test_exception_reaches_the_caller_and_caches_nothing(calls: Calls) -> None:
    """A function that raises is not cached: the next call runs it again."""

    @dogpile_warm.warmable(ttl=60)
    def flaky() -> str:
        if calls() == 1:
            raise RuntimeError("first call fails")
        return "ok"

    with pytest.raises(RuntimeError, match="first call fails"):
        flaky()
    assert flaky.get() is NO_VALUE
    assert flaky() == "ok"
    assert flaky() == "ok"
    assert calls.total == 2


def test_none_is_cached_like_any_value(calls: Calls) -> None:
    """A function returning None is cached: None is a value, not a miss."""

    @dogpile_warm.warmable(ttl=60)
    def nothing() -> None:
        calls()

    assert nothing() is None
    assert nothing() is None
    assert calls.total == 1


def test_concurrent_cold_callers_compute_once(calls: Calls, lock_requests: list[str]) -> None:
    """16 threads calling one cold key run the function once and all get its value."""
    barrier = threading.Barrier(16)

    @dogpile_warm.warmable(ttl=60)
    def slow() -> str:
        calls()
        wait_until(lambda: len(lock_requests) >= 16, message="every caller at the lock")
        return "computed once"

    results = _run_threads(16, lambda: (barrier.wait(5), slow())[1])

    assert results == ["computed once"] * 16
    assert calls.total == 1


def test_concurrent_cold_callers_send_one_miss_and_hits(
    calls: Calls, lock_requests: list[str]
) -> None:
    """Of 16 concurrent callers of a cold key, exactly one sends ``cache_miss``, 15 ``cache_hit``."""
    barrier = threading.Barrier(16)

    @dogpile_warm.warmable(ttl=60)
    def slow() -> int:
        calls()
        wait_until(lambda: len(lock_requests) >= 16, message="every caller at the lock")
        return 7

    with captured_signals("cache_hit", "cache_miss") as sent:
        _run_threads(16, lambda: (barrier.wait(5), slow())[1])

    assert len(sent.named("cache_miss")) == 1
    assert len(sent.named("cache_hit")) == 15


# -- tags -------------------------------------------------------------------------------


def test_invalidate_by_tags_makes_tagged_functions_recompute(calls: Calls) -> None:
    """After ``invalidate_by_tags`` a tagged function recomputes; an untagged one keeps its value."""
    version = {"now": 1}

    @dogpile_warm.warmable(ttl=60, tags={"catalog"})
    def catalog() -> int:
        calls("catalog")
        return version["now"]

    @dogpile_warm.warmable(ttl=60)
    def untagged() -> int:
        calls("untagged")
        return version["now"]

    assert (catalog(), untagged()) == (1, 1)
    version["now"] = 2

    assert dogpile_warm.invalidate_by_tags({"catalog"}) == 1

    assert (catalog(), untagged()) == (2, 1)
    assert calls.counts == {"catalog": 2, "untagged": 1}


def test_concurrent_first_warmings_of_a_new_tag_agree_on_its_version(calls: Calls) -> None:
    """Eight functions sharing a tag nobody has used yet, warmed at once: each value is
    computed once and then read, none made stale by another thread's tag version."""
    rounds, width = 10, 8
    for round_ in range(rounds):
        tag = f"fresh-{round_}"

        def make(n: int, round_: int = round_, tag: str = tag) -> Any:
            @dogpile_warm.warmable(ttl=60, tags={tag, "common"}, name=f"tagged.{round_}.{n}")
            def value() -> int:
                calls((round_, n))
                return n

            return value

        functions = [make(n) for n in range(width)]
        start = threading.Barrier(width)

        def warm(function: Any, start: threading.Barrier = start) -> None:
            start.wait()
            function.warm()

        threads = [threading.Thread(target=warm, args=(f,)) for f in functions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [f() for f in functions] == list(range(width))
    assert calls.counts == {(r, n): 1 for r in range(rounds) for n in range(width)}


def test_invalidating_another_tag_keeps_the_value(calls: Calls) -> None:
    """Invalidating a tag a function does not carry leaves its value cached."""

    @dogpile_warm.warmable(ttl=60, tags={"a", "b"})
    def both() -> str:
        calls()
        return "value"

    both()
    dogpile_warm.invalidate_by_tags("c")
    both()

    assert calls.total == 1


def test_invalidating_one_of_several_tags_is_enough(calls: Calls) -> None:
    """A value carrying tags ``a`` and ``b`` is stale once ``b`` alone is invalidated."""

    @dogpile_warm.warmable(ttl=60, tags={"a", "b"})
    def both() -> int:
        return calls()

    assert both() == 1
    dogpile_warm.invalidate_by_tags(["b"])

    assert both.get() is NO_VALUE
    assert both() == 2


def test_invalidate_by_tags_reaches_every_argument_of_a_function(calls: Calls) -> None:
    """Every cached argument of a tagged function is invalidated, not only one key."""

    @dogpile_warm.warmable(ttl=60, tags={"user"})
    def profile(user_id: int) -> int:
        calls(user_id)
        return user_id

    for user_id in range(5):
        profile(user_id)
    dogpile_warm.invalidate_by_tags("user")

    assert [profile.get(user_id) for user_id in range(5)] == [NO_VALUE] * 5


def test_awkward_tag_names_invalidate(calls: Calls) -> None:
    """Tags with spaces, unicode or 300 characters work as tags on every backend."""
    tags = ["with space", "ünï ✓", "t" * 300]

    @dogpile_warm.warmable(ttl=60, tags=tags)
    def value() -> int:
        return calls()

    for number, tag in enumerate(tags, start=1):
        assert value() == number
        assert value() == number
        dogpile_warm.invalidate_by_tags(tag)
    assert value() == len(tags) + 1


# -- attributes of the decorated function ---------------------------------------------------


def test_get_returns_no_value_when_cold_and_never_computes(calls: Calls) -> None:
    """``.get()`` on a cold key returns ``NO_VALUE`` without running the function."""

    @dogpile_warm.warmable(ttl=60)
    def value(x: int) -> int:
        calls(x)
        return x

    assert value.get(1) is NO_VALUE
    assert calls.total == 0


def test_get_returns_the_cached_value(calls: Calls) -> None:
    """``.get()`` returns what a call cached."""

    @dogpile_warm.warmable(ttl=60)
    def value(x: int) -> list[int]:
        calls(x)
        return [x, x]

    value(3)

    assert value.get(3) == [3, 3]
    assert value.get(x=3) == [3, 3]
    assert calls.total == 1


def test_set_stores_a_value_that_calls_return(calls: Calls) -> None:
    """``.set(value, *args)`` stores the value; the next call returns it without computing."""

    @dogpile_warm.warmable(ttl=60)
    def value(x: int) -> str:
        calls(x)
        return "computed"

    value.set("preset", 5)

    assert value(5) == "preset"
    assert value.get(x=5) == "preset"
    assert calls.total == 0


def test_invalidate_removes_one_key(calls: Calls) -> None:
    """``.invalidate(*args)`` makes that call recompute and leaves other arguments cached."""

    @dogpile_warm.warmable(ttl=60)
    def value(x: int) -> int:
        return calls(x)

    value(1), value(2)
    value.invalidate(x=1)

    assert value.get(1) is NO_VALUE
    assert value(1) == 2
    assert value(2) == 1


def test_refresh_recomputes_stores_and_returns(calls: Calls) -> None:
    """``.refresh(*args)`` recomputes even when cached, stores and returns the new value."""

    @dogpile_warm.warmable(ttl=60)
    def value(x: int) -> int:
        return calls(x)

    assert value(1) == 1

    assert value.refresh(1) == 2
    assert value.get(1) == 2
    assert value(1) == 2
    assert calls.total == 2


def test_warm_computes_stores_and_reports_success(calls: Calls) -> None:
    """``.warm(*args)`` returns True and the next call is answered from the cache."""

    @dogpile_warm.warmable(ttl=60)
    def value(x: int) -> str:
        calls(x)
        return f"warm {x}"

    assert value.warm(4) is True
    assert value.get(4) == "warm 4"
    assert value(4) == "warm 4"
    assert calls.total == 1


def test_warm_of_a_failing_function_returns_false_and_keeps_the_old_value() -> None:
    """``.warm()`` of a function that raises returns False and leaves the cached value."""
    fail = {"now": False}

    @dogpile_warm.warmable(ttl=60)
    def value() -> str:
        if fail["now"]:
            raise RuntimeError("source down")
        return "good"

    assert value() == "good"
    fail["now"] = True

    assert value.warm() is False
    assert value.get() == "good"


# -- refresh-ahead and warming through the backend ------------------------------------------


@pytest.mark.slow
def test_refresh_ahead_serves_the_old_value_and_refreshes_in_the_background(
    calls: Calls, clock: FakeClock
) -> None:
    """Past ``refresh_ahead * ttl`` a read returns the cached value and one background refresh stores a new one."""

    @dogpile_warm.warmable(ttl=2, refresh_ahead=0.25)
    def value() -> int:
        return calls()

    assert value() == 1
    clock.advance(0.6)  # past the 0.5 s refresh point, well within the 2 s ttl

    with captured_signals("refreshed", "cache_hit", "cache_miss") as sent:
        assert value() == 1  # at once: the refresh runs in the background
        wait_until(lambda: sent.named("refreshed"), message="the background refresh")

    assert value.get() == 2
    # The refresh may finish before the caller sends its hit: order is not specified.
    assert sorted(s.signal for s in sent) == ["cache_hit", "refreshed"]
    assert calls.total == 2


@pytest.mark.slow
def test_a_value_older_than_ttl_is_recomputed(calls: Calls, clock: FakeClock) -> None:
    """Past ``ttl`` seconds (wall clock) a call recomputes instead of returning the old value."""

    @dogpile_warm.warmable(ttl=0.3, refresh_ahead=None)
    def value() -> int:
        return calls()

    assert value() == 1
    assert value() == 1
    clock.advance(0.4)  # past the ttl, on the engine's clock

    assert value.get() is NO_VALUE
    assert value() == 2


def test_warm_critical_data_stores_values_that_calls_hit(calls: Calls) -> None:
    """``warm_critical_data`` computes critical functions; their next calls are hits."""

    @dogpile_warm.warmable(priority=100, ttl=60)
    def settings() -> dict[str, str]:
        calls("settings")
        return {"mode": "fast"}

    @dogpile_warm.warmable(priority=100, ttl=60, warm_args=[(1,), {"n": 2}])
    def page(n: int) -> str:
        calls(n)
        return f"page {n}"

    report = dogpile_warm.warm_critical_data()

    assert (report["succeeded"], report["failed"]) == (3, 0)
    assert (settings(), page(1), page(2)) == ({"mode": "fast"}, "page 1", "page 2")
    assert calls.counts == {"settings": 1, 1: 1, 2: 1}


def test_warm_user_data_keeps_each_users_values_apart(calls: Calls) -> None:
    """Values warmed for one user are never served to another."""

    @dogpile_warm.warmable(ttl=60, user_arg="user_id")
    def inbox(user_id: str) -> str:
        calls(user_id)
        return f"inbox of {user_id}"

    for user_id in ("alice", "bob smith", "ünï"):
        result = dogpile_warm.warm_user_data_optimized(user_id)
        assert (result["skipped"], result["failed"]) == (False, [])

    assert [inbox(u) for u in ("alice", "bob smith", "ünï")] == [
        "inbox of alice",
        "inbox of bob smith",
        "inbox of ünï",
    ]
    assert calls.counts == {"alice": 1, "bob smith": 1, "ünï": 1}


# -- warm_cache and get_cached --------------------------------------------------------------


def test_warm_cache_then_get_cached_round_trip() -> None:
    """A value stored with ``warm_cache`` is read back by ``get_cached``."""
    assert dogpile_warm.warm_cache("report:daily", lambda: {"rows": [1, 2, 3]}, ttl=60) is True

    assert dogpile_warm.get_cached("report:daily") == {"rows": [1, 2, 3]}


def test_get_cached_of_a_missing_key_is_no_value() -> None:
    """``get_cached`` of a key nobody stored returns ``NO_VALUE``."""
    assert dogpile_warm.get_cached("never stored") is NO_VALUE


def test_warm_cache_with_awkward_keys_round_trips() -> None:
    """``warm_cache`` keys with spaces, newlines, unicode or 400 characters work and stay distinct."""
    for key in AWKWARD_ARGUMENTS[:-1]:  # the empty string is not a valid key
        assert dogpile_warm.warm_cache(key, key.upper, ttl=60) is True

    assert [dogpile_warm.get_cached(k) for k in AWKWARD_ARGUMENTS[:-1]] == [
        k.upper() for k in AWKWARD_ARGUMENTS[:-1]
    ]


def test_warm_cache_values_honour_tag_invalidation() -> None:
    """A ``warm_cache`` value stored with tags reads as ``NO_VALUE`` once a tag is invalidated."""
    dogpile_warm.warm_cache("tagged", lambda: "v1", ttl=60, tags={"reports"})
    dogpile_warm.warm_cache("other", lambda: "kept", ttl=60, tags={"other"})

    dogpile_warm.invalidate_by_tags("reports")

    assert dogpile_warm.get_cached("tagged") is NO_VALUE
    assert dogpile_warm.get_cached("other") == "kept"


def test_get_cached_reads_a_decorated_function_value_by_key_for(calls: Calls) -> None:
    """``get_cached(f.key_for(*args))`` returns what the decorated function cached."""

    @dogpile_warm.warmable(ttl=60, tags={"t"})
    def value(x: str) -> str:
        calls(x)
        return x * 2

    value("a b")

    assert dogpile_warm.get_cached(value.key_for("a b")) == "a ba b"


# -- signals ------------------------------------------------------------------------------


def test_cold_call_sends_one_cache_miss_and_warm_call_one_cache_hit() -> None:
    """Each call sends exactly one signal: a miss when it computed, a hit when it did not."""

    @dogpile_warm.warmable(ttl=60)
    def value(x: int) -> int:
        return x

    with captured_signals() as sent:
        value(1)
        first = list(sent)
        value(1)
        second = sent[len(first) :]

    assert [s.signal for s in first] == ["cache_miss"]
    assert [s.signal for s in second] == ["cache_hit"]
    assert first[0].sender is value and second[0].sender is value
    assert first[0].kwargs["key"] == second[0].kwargs["key"] == value.key_for(1)
    assert first[0].kwargs["duration_ms"] >= 0
    assert 0 <= second[0].kwargs["age"] < 60


def test_every_call_sends_exactly_one_hit_or_miss(calls: Calls) -> None:
    """Over many calls, hits plus misses equal calls, and misses equal computations."""

    @dogpile_warm.warmable(ttl=60, tags={"t"})
    def value(x: int) -> int:
        calls(x)
        return x

    with captured_signals("cache_hit", "cache_miss") as sent:
        for i in range(30):
            value(i % 4)
        dogpile_warm.invalidate_by_tags("t")
        for i in range(10):
            value(i % 4)

    assert len(sent) == 40
    assert len(sent.named("cache_miss")) == calls.total == 8


def test_warm_and_get_send_no_hit_or_miss(calls: Calls) -> None:
    """``.warm()`` and ``.get()`` are not calls: they send neither ``cache_hit`` nor ``cache_miss``."""

    @dogpile_warm.warmable(ttl=60)
    def value() -> int:
        return calls()

    with captured_signals("cache_hit", "cache_miss") as sent:
        value.warm()
        value.get()

    assert list(sent) == []


# -- regions the user configured ----------------------------------------------------------------


class TestRegionsTheUserConfigured:
    """A region the user configured on a real server and passed as ``region=``.

    Not parametrised: each test builds its own region on the server it is
    about, so the class replaces the module's ``backend`` parameter with the
    memory default.
    """

    @pytest.fixture
    def backend(self) -> str:
        return "memory"

    @pytest.fixture
    def user_region(self, memcached_server: Server, client_closer: ClientCloser) -> CacheRegion:
        """A pymemcache region the way a user configures it: no key mangler, default arguments."""
        memcached_server.flush()
        region = make_region(name="users_own").configure(
            "dogpile.cache.pymemcache", arguments={"url": memcached_server.url}
        )
        return client_closer.watch(region)

    @pytest.mark.memcached
    def test_awkward_keys_work_on_a_user_memcached_region(
        self, user_region: CacheRegion, calls: Calls
    ) -> None:
        """A passed-in pymemcache region without key mangler caches awkward-key calls, distinctly."""

        @dogpile_warm.warmable(ttl=60, region=user_region)
        def echo(text: str) -> str:
            calls(text)
            return text[::-1]

        first = [echo(text) for text in AWKWARD_ARGUMENTS]
        second = [echo(text) for text in AWKWARD_ARGUMENTS]

        assert first == second == [text[::-1] for text in AWKWARD_ARGUMENTS]
        assert calls.counts == dict.fromkeys(AWKWARD_ARGUMENTS, 1)

    @pytest.mark.memcached
    def test_user_region_is_not_modified(self, user_region: CacheRegion) -> None:
        """Using a passed-in region leaves its backend, key mangler and async runner as they were."""
        region = user_region
        before = _region_setup(region)

        @dogpile_warm.warmable(ttl=60, tags={"t"}, region=region)
        def echo(text: str) -> str:
            return text

        echo("a key with spaces\n")
        echo.warm("x" * 400)
        dogpile_warm.invalidate_by_tags("t")
        echo("a key with spaces\n")

        assert _region_setup(region) == before
        assert region.key_mangler is None

    @pytest.mark.memcached
    def test_user_region_keeps_serving_the_users_own_functions(
        self, user_region: CacheRegion
    ) -> None:
        """The user's own ``cache_on_arguments`` function on the passed-in region works as before."""
        own_calls = Calls()

        @user_region.cache_on_arguments()
        def users_own(x: int) -> int:
            own_calls(x)
            return x * 3

        @dogpile_warm.warmable(ttl=60, region=user_region)
        def ours(x: int) -> int:
            return x

        assert users_own(2) == 6
        ours(2)
        assert users_own(2) == 6
        assert own_calls.total == 1

    @pytest.mark.redis
    @pytest.mark.slow
    def test_redis_region_with_a_thread_local_lock_refreshes_ahead(
        self,
        redis_server: Server,
        client_closer: ClientCloser,
        engine: CacheWarmingEngine,
        clock: FakeClock,
    ) -> None:
        """A passed-in Redis region whose lock is thread-local still refreshes in the background."""
        redis_server.flush()
        with pytest.warns(UserWarning, match="thread_local_lock"):  # dogpile's own warning
            region = make_region(name="thread_local").configure(
                "dogpile.cache.redis",
                arguments={
                    "host": redis_server.host,
                    "port": redis_server.port,
                    "distributed_lock": True,
                    "lock_timeout": 4,
                },
            )
        client_closer.watch(region)
        computed: list[float] = []

        @dogpile_warm.warmable(ttl=1.0, refresh_ahead=0.5, region=region)
        def stamp() -> float:
            computed.append(time.time())
            return computed[-1]

        with captured_signals("refreshed") as sent:
            first = stamp()
            clock.advance(0.6)  # inside the refresh window
            assert stamp() == first  # served at once, refreshed behind it
            wait_until(lambda: sent.named("refreshed"), message="the background refresh")
            assert stamp() != first  # the refreshed value, and no lock left behind
            engine.close()
        assert len(computed) == 2

    @pytest.mark.redis
    def test_redis_region_without_thread_local_lock_is_accepted(
        self, redis_server: Server, client_closer: ClientCloser, calls: Calls
    ) -> None:
        """A passed-in Redis region with ``thread_local_lock=False`` caches awkward-key calls."""
        redis_server.flush()
        region = make_region(name="redis_ok").configure(
            "dogpile.cache.redis",
            arguments={
                "host": redis_server.host,
                "port": redis_server.port,
                "distributed_lock": True,
                "thread_local_lock": False,
                "lock_timeout": 4,
            },
        )
        client_closer.watch(region)

        @dogpile_warm.warmable(ttl=60, region=region)
        def echo(text: str) -> str:
            calls(text)
            return text

        assert [echo(t) for t in AWKWARD_ARGUMENTS] == [echo(t) for t in AWKWARD_ARGUMENTS]
        assert calls.counts == dict.fromkeys(AWKWARD_ARGUMENTS, 1)


def _region_setup(region: Any) -> tuple[Any, ...]:
    return (
        region.backend,
        region.actual_backend,
        region.key_mangler,
        region.async_creation_runner,
        region.expiration_time,
        type(region.actual_backend).__name__,
    )


def test_engine_default_region_is_the_configured_backend(
    backend: str, engine: CacheWarmingEngine
) -> None:
    """The ``backend`` fixture points the engine's default region at the parametrised backend."""
    expected = {
        "memory": "MemoryBackend",
        "memcached": "PyMemcacheBackend",
        "redis": "RedisBackend",
    }[backend]

    assert type(engine.region.actual_backend).__name__ == expected


def _run_threads(n: int, target: Callable[[], Any]) -> list[Any]:
    """Run ``target`` in ``n`` threads at once; return their results, re-raising any error."""
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(t.is_alive() for t in threads), "a caller did not return within 30s"
    if errors:
        raise errors[0]
    return results
