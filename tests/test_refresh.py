"""Refresh ahead of expiry, the freshness promise, backoff, XFetch and backend expiry."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE

import dogpile_warm
from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._cached import refresh, refresh_runner
from dogpile_warm._cached.refresh import RefreshBackoff, xfetch_due
from dogpile_warm._cached.refresh_runner import RefreshRunner
from dogpile_warm._core.entry import Entry
from dogpile_warm._core.regions import backend_defaults
from dogpile_warm.testing import FakeClock, captured_signals, wait_until


@pytest.fixture
def wall(clock: FakeClock) -> FakeClock:
    """The engine's clock, set to 1000 s: every age and ttl is measured on it."""
    clock.now = 1_000.0
    return clock


@pytest.fixture
def idle_refreshes(engine: CacheWarmingEngine) -> Iterator[None]:
    """Wait for background refreshes to finish before the test's checks end."""
    yield
    engine.close()


def test_a_failing_refresh_never_reaches_the_caller(wall: FakeClock, idle_refreshes: None) -> None:
    """Within ttl a refresh failure is signalled and the caller keeps the cached value."""
    fail = False

    @warmable(ttl=10, refresh_ahead=0.5)
    def price() -> str:
        if fail:
            raise TimeoutError("pricing service slow")
        return f"price@{wall.now:g}"

    assert price() == "price@1000"
    fail = True
    wall.now += 6
    with captured_signals("warm_failed", "cache_hit") as sent:
        assert price() == "price@1000"
        wait_until(lambda: sent.named("warm_failed"), message="the failed refresh")
    failure = sent.named("warm_failed")[0]
    assert failure.sender is price.task and isinstance(failure.kwargs["error"], TimeoutError)
    assert len(sent.named("cache_hit")) == 1


def test_failing_refreshes_back_off_instead_of_retrying_on_every_read(
    wall: FakeClock, engine: CacheWarmingEngine
) -> None:
    """After a failed refresh, reads inside the backoff start no new refresh."""
    attempts: list[float] = []

    @warmable(ttl=100, refresh_ahead=0.5)
    def report() -> str:
        attempts.append(wall.now)
        if len(attempts) > 1:
            raise RuntimeError("db down")
        return "r"

    report()
    wall.now += 60
    report()
    wait_until(lambda: len(attempts) == 2, message="the failed refresh")
    for _ in range(20):
        assert report() == "r"
    engine.close()  # waits for any refresh those reads started
    assert len(attempts) == 2


def test_the_mutex_is_released_when_a_refresh_raises(wall: FakeClock, idle_refreshes: None) -> None:
    """A raising refresh leaves the key unlocked: the next expired read recomputes at once."""
    calls: list[int] = []

    @warmable(ttl=10, refresh_ahead=0.5)
    def fragile() -> int:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("once")
        return len(calls)

    fragile()
    wall.now += 6
    fragile()
    wait_until(lambda: len(calls) == 2, message="the raising refresh")
    wall.now += 5  # past ttl: the caller computes, which needs the lock to be free
    done = threading.Event()
    result: list[int] = []

    def call() -> None:
        result.append(fragile())
        done.set()

    threading.Thread(target=call).start()
    assert done.wait(5), "the key stayed locked after a failed refresh"
    assert result == [3]


def test_should_cache_fn_keeps_refused_values_out(wall: FakeClock) -> None:
    """A value refused by should_cache_fn is returned but not stored."""
    answers = iter([None, None, "data"])

    @warmable(ttl=10, should_cache_fn=lambda v: v is not None)
    def lookup() -> str | None:
        return next(answers)

    assert lookup() is None
    assert lookup.get() is NO_VALUE
    assert lookup() is None
    assert lookup() == "data"
    assert lookup.get() == "data"


@pytest.mark.parametrize(
    ("age", "cost", "rand", "due"),
    [
        (5.0, 0.0, 0.5, False),  # cheap and young: no refresh before ttl
        (9.9, 0.5, 0.5, True),  # 9.9 + 0.5*ln(2) = 10.25 >= 10
        (9.0, 0.5, 0.5, False),  # 9.0 + 0.35 < 10
        (5.0, 2.0, 0.01, True),  # costly and unlucky: 5 + 2*4.6 >= 10
    ],
)
def test_xfetch_refreshes_earlier_for_costly_values(
    age: float, cost: float, rand: float, due: bool
) -> None:
    """XFetch: refresh when age - cost * beta * ln(U) >= ttl."""
    assert xfetch_due(age, 10.0, cost, 1.0, rand=rand) is due


def test_window_policy_refreshes_an_untracked_key_past_refresh_ahead_times_ttl(
    wall: FakeClock,
) -> None:
    """The window policy refreshes a key with no read history exactly past
    refresh_ahead * ttl."""

    @warmable(ttl=10.0, refresh_ahead=0.8)
    def value() -> float:
        return wall.now

    cached, key = value._self_cached, value.key_for()
    entry = Entry(1000.0, created=1000.0, ttl=10.0, tags=(), cost=0.0)
    wall.now = 1008.0
    assert cached.freshness(entry, key) is refresh.FRESH
    wall.now = 1008.01
    assert cached.freshness(entry, key) is refresh.DUE


def test_a_key_read_often_is_refreshed_late_in_its_window(
    wall: FakeClock, idle_refreshes: None
) -> None:
    """The window policy refreshes a key read every 0.1 s of a 10 s ttl close to its
    ttl (1.5 times the compute time, SLACK and READS_AHEAD gaps before it), not at 8 s.
    The point is decided by the first read in the window, from the gaps seen then."""
    computed: list[float] = []

    @warmable(ttl=10, refresh_ahead=0.8)
    def hot() -> float:
        computed.append(wall.now)
        return wall.now

    with captured_signals("refreshed") as sent:
        for _ in range(95):  # 0.0 .. 9.4 s old
            assert hot() == 1000.0
            wall.now += 0.1
        assert computed == [1000.0] and not sent, "refreshed early in its window"
        wall.now = 1009.95  # within SLACK and READS_AHEAD gaps of the ttl
        assert hot() == 1000.0
        wait_until(lambda: sent, message="the late refresh")
    assert computed == [1000.0, 1009.95]
    # The point the first read in the window decided for the first value (it cost ~0 s).
    lead = refresh.SLACK + refresh.READS_AHEAD * 0.1
    policy = hot._self_cached.policy
    assert isinstance(policy, refresh.WindowPolicy)
    created, point = policy.points[hot.key_for()]
    assert created == 1000.0 and point == pytest.approx(1010.0 - lead, abs=1e-3)


def test_a_key_gone_quiet_is_refreshed_by_its_first_read_in_the_window(
    wall: FakeClock, idle_refreshes: None
) -> None:
    """A key read twice a second apart, then not for 5.5 s, refreshes at its next read
    past refresh_ahead * ttl: the gap since its last read counts, not only the mean."""

    @warmable(ttl=10, refresh_ahead=0.5)
    def quiet() -> float:
        return wall.now

    with captured_signals("refreshed") as sent:
        quiet()
        wall.now += 1
        quiet()
        wall.now += 4.5
        assert quiet() == 1000.0  # 5.5 s old: a gap of 4.5 s leads the ttl by more
        wait_until(lambda: sent, message="the refresh")


def test_wasted_refreshes_are_those_no_read_used(
    wall: FakeClock, engine: CacheWarmingEngine
) -> None:
    """get_performance counts refreshed values that expired unread as wasted, and the
    share among refreshed values whose fate is known."""

    @warmable(ttl=10, refresh_ahead=0.5)
    def value(x: int) -> float:
        return wall.now

    value(1), value(2)
    wall.now += 6
    with captured_signals("refreshed") as sent:
        value(1), value(2)  # both refresh in the background
        wait_until(lambda: len(sent) == 2, message="two refreshes")
    wall.now += 1
    assert value(1) == 1006.0  # read: useful
    before = engine.get_performance()
    assert before["refreshes"] == 2 and before["wasted_refreshes"] == 0
    assert before["wasted_refresh_share"] == 0.0  # one fate known: read
    wall.now += 10  # value(2)'s refreshed value expires unread
    after = engine.get_performance()
    assert after["wasted_refreshes"] == 1
    assert after["wasted_refresh_share"] == 0.5


def test_xfetch_functions_refresh_in_the_background(
    wall: FakeClock, monkeypatch: pytest.MonkeyPatch, idle_refreshes: None
) -> None:
    """A function with refresh_policy='xfetch' serves the value and refreshes when XFetch says."""
    monkeypatch.setattr(
        "dogpile_warm._cached.refresh.random.random", lambda: 1e-9
    )  # always "unlucky"
    values = iter(["first", "second"])

    @warmable(ttl=10, refresh_policy="xfetch")
    def costly() -> str:
        time.sleep(0.05)  # measured cost: 0.05 s * beta * -ln(1e-12) ~ 1.4 s early
        return next(values)

    with captured_signals("refreshed") as sent:
        assert costly() == "first"
        wall.now += 9
        assert costly() == "first"
        wait_until(lambda: sent, message="the background refresh")
    assert costly() == "second"


def test_refresh_ahead_none_never_refreshes_in_the_background(
    wall: FakeClock, engine: CacheWarmingEngine
) -> None:
    """With refresh_ahead=None a value is served until ttl, then recomputed by the caller."""
    computed: list[float] = []

    @warmable(ttl=10, refresh_ahead=None)
    def plain() -> float:
        computed.append(wall.now)
        return wall.now

    plain()
    wall.now += 9.5
    assert plain() == 1000.0
    engine.close()  # waits for a refresh, had the read started one
    assert computed == [1000.0]


def test_backoff_grows_and_resets() -> None:
    """Backoff doubles per failure up to its cap and clears on success."""
    backoff = RefreshBackoff(base=1, cap=4)
    assert backoff.failed("k", now=0) == 1
    assert backoff.allows("k", now=0.5) is False
    assert backoff.allows("k", now=1.0) is True
    assert [backoff.failed("k", now=0) for _ in range(3)] == [2, 4, 4]
    backoff.succeeded("k")
    assert backoff.allows("k", now=0) is True


def test_backoff_memory_is_bounded() -> None:
    """The backoff remembers at most max_keys keys."""
    backoff = RefreshBackoff(max_keys=100)
    for i in range(1000):
        backoff.failed(f"k{i}", now=0)
    assert len(backoff._failures) == 100


def test_a_passed_in_region_expiring_before_ttl_is_refused() -> None:
    """A memcached region whose memcached_expire_time < ttl fails at decoration, saying what to change."""
    region = make_region(name="short").configure(
        "dogpile.cache.pymemcache",
        arguments={"url": "127.0.0.1:1", "memcached_expire_time": 60},
    )
    with pytest.raises(ValueError, match=r"memcached_expire_time.*at least 7200"):

        @warmable(ttl=3600, region=region)
        def hourly() -> int:
            return 1


def test_a_named_region_expiring_before_ttl_is_refused_at_first_call() -> None:
    """A configured region whose backend expiry is below a function's ttl fails on first use."""
    dogpile_warm.configure(
        "tiny",
        "dogpile.cache.redis",
        arguments={"host": "127.0.0.1", "port": 1, "redis_expiration_time": 5},
    )

    @warmable(ttl=60, region="tiny")
    def minutely() -> int:
        return 1

    with pytest.raises(ValueError, match="redis_expiration_time"):
        minutely()


def test_configured_regions_get_backend_expiry_twice_the_expiration_time() -> None:
    """configure(expiration_time=E) sets the backend's own expiry to 2E; none without E."""
    assert backend_defaults("dogpile.cache.pymemcache", 300)["memcached_expire_time"] == 600
    assert backend_defaults("dogpile.cache.redis", 300)["redis_expiration_time"] == 600
    assert "memcached_expire_time" not in backend_defaults("dogpile.cache.pymemcache")
    assert backend_defaults("dogpile.cache.redis")["thread_local_lock"] is False


@pytest.mark.parametrize(
    ("backend", "arguments"),
    [
        ("dogpile.cache.redis", {"host": "127.0.0.1", "port": 1, "thread_local_lock": False}),
        ("dogpile.cache.pymemcache", {"url": "127.0.0.1:1"}),
    ],
    ids=["redis", "memcached"],
)
def test_a_passed_in_region_whose_lock_never_expires_warns_naming_the_setting(
    backend: str, arguments: dict[str, object]
) -> None:
    """A distributed lock without expiry would block a key forever after its holder is killed."""
    region = make_region().configure(backend, arguments={**arguments, "distributed_lock": True})
    with pytest.warns(UserWarning, match="'lock_timeout'"):

        @warmable(ttl=60, region=region)
        def f() -> int:
            return 1


def test_a_passed_in_region_whose_lock_expires_does_not_warn() -> None:
    """With a lock_timeout, decorating says nothing (warnings are errors in this suite)."""
    region = make_region().configure(
        "dogpile.cache.pymemcache",
        arguments={"url": "127.0.0.1:1", "distributed_lock": True, "lock_timeout": 5},
    )

    @warmable(ttl=60, region=region)
    def f() -> int:
        return 1


@pytest.mark.parametrize(
    ("kwargs", "mentions"),
    [
        ({"refresh_policy": "sometimes"}, "refresh_policy"),
        ({"xfetch_beta": 0}, "xfetch_beta"),
        ({"should_cache_fn": 3}, "should_cache_fn"),
    ],
)
def test_refresh_arguments_are_checked(kwargs: dict[str, Any], mentions: str) -> None:
    """Bad refresh arguments fail at decoration naming the argument."""
    with pytest.raises((TypeError, ValueError), match=mentions):
        warmable(**kwargs)


def test_a_closed_engine_drops_the_async_refreshes_of_its_regions_releasing_once(
    wall: FakeClock,
) -> None:
    """dogpile's own cache_on_arguments on a region the engine configured, after close():
    the refresh is dropped and its mutex released once (twice raised in the caller)."""
    engine = CacheWarmingEngine()
    region = engine.configure_region("own", "dogpile.cache.memory", expiration_time=10)
    calls: list[int] = []

    @region.cache_on_arguments()
    def users_own(x: int) -> int:
        calls.append(x)
        return x

    assert users_own(1) == 1
    engine.close()
    wall.now += 11  # expired: dogpile hands the refresh to the engine's runner
    assert users_own(1) == 1  # the old value, no RuntimeError from a second release
    wall.now += 1
    assert users_own(1) == 1
    assert calls == [1]  # dropped, not run


def test_the_refresh_backoff_runs_on_the_engines_clock(
    wall: FakeClock, idle_refreshes: None
) -> None:
    """After a failed refresh, advancing the engine's clock past the backoff lets the next
    due read refresh again: no real second has to pass."""
    attempts: list[float] = []

    @warmable(ttl=100, refresh_ahead=0.5)
    def report() -> str:
        attempts.append(wall.now)
        if len(attempts) == 2:
            raise RuntimeError("db down once")
        return f"r{len(attempts)}"

    with captured_signals("warm_failed", "refreshed") as sent:
        report()
        wall.now += 60  # due for refresh: the refresh fails, backing off 1 s
        report()
        wait_until(lambda: sent.named("warm_failed"), message="the failed refresh")
        wall.now += 1.5  # past the backoff, on the engine's clock only
        report()
        wait_until(lambda: sent.named("refreshed"), message="the refresh after the backoff")
    assert len(attempts) == 3


def test_timed_refresh_jobs_wait_dedupe_and_are_dropped_on_close() -> None:
    """RefreshRunner.submit with a delay runs the job after it (in the timer thread's
    hand-off to the pool); a second job for the same key is refused while the first
    waits; close() drops jobs still waiting, leaving nothing pending."""
    runner = RefreshRunner(workers=2)
    ran: list[tuple[str, float]] = []
    start = time.monotonic()
    try:
        assert runner.submit("a", lambda: ran.append(("a", time.monotonic() - start)), 0.2)
        assert not runner.submit("a", lambda: ran.append(("again", 0.0)))
        assert runner.submit("b", lambda: ran.append(("b", time.monotonic() - start)))
        wait_until(lambda: len(ran) == 2, message="both jobs")
        assert [name for name, _ in ran] == ["b", "a"]
        assert ran[1][1] >= 0.2  # the timed job waited its delay
        assert runner.submit("a", lambda: ran.append(("a2", 0.0)), 60.0)  # pending again
        assert runner.submit("c", lambda: ran.append(("c", 0.0)), 60.0)
    finally:
        runner.close()
    assert [name for name, _ in ran] == ["b", "a"]  # the waiting ones never ran
    assert runner._count == 0 and not runner._pending and not runner._timed


def test_a_refresh_waits_for_the_latest_safe_moment_on_a_real_clock() -> None:
    """On the real clock, a read at 0.6 s of a 1 s value (refresh window from 0.5 s)
    starts a refresh that runs just before the ttl (1.5 x its cost + SLACK before it),
    not at once; every read meanwhile gets the first value, within its ttl."""
    real = CacheWarmingEngine()
    try:
        starts: list[float] = []

        @warmable(ttl=1.0, refresh_ahead=0.5, engine=real)
        def stamp() -> float:
            starts.append(time.time())
            return time.time()

        with captured_signals("refreshed") as sent:
            first = stamp()
            time.sleep(0.6)  # real time: into the refresh window
            assert stamp() == first
            time.sleep(0.1)  # real time: the refresh waits for its moment
            assert len(starts) == 1 and not sent
            wait_until(lambda: sent, message="the timed refresh")
        assert starts[1] - starts[0] >= 0.9  # not at 0.6 s: at ttl - 1.5 x cost - SLACK
    finally:
        real.close()


def test_a_fake_clock_refreshes_at_once() -> None:
    """FakeClock says it does not keep real time: refreshes do not wait on it."""
    assert FakeClock.real_time is False
    policy = refresh.WindowPolicy(10.0, 0.5, lambda key: None, defers=False)
    assert policy.refresh_delay(1000.0, 0.0, 1006.0) == 0.0
    real = refresh.WindowPolicy(10.0, 0.5, lambda key: None)
    assert real.refresh_delay(1000.0, 0.0, 1006.0) == pytest.approx(10.0 - refresh.SLACK - 6.0)


def test_jobs_waiting_for_their_time_leave_the_pool_to_others() -> None:
    """max_pending counts jobs queued in the pool or running, not those waiting for
    their time: with three waiting, an immediate job still runs."""
    runner = RefreshRunner(workers=1, max_pending=3)
    ran: list[str] = []
    try:
        for key in "abc":
            assert runner.submit(key, lambda: ran.append("late"), 60.0)
        assert runner.submit("now", lambda: ran.append("now"))
        wait_until(lambda: ran == ["now"], message="the immediate job")
    finally:
        runner.close()


def test_the_runner_learns_how_late_jobs_start() -> None:
    """A job that waited 0.2 s behind another in a one-thread pool moves the lateness
    refreshes make up for (a moving average, twice over); before any job, it is a
    GIL switch interval."""
    runner = RefreshRunner(workers=1)
    try:
        before = runner.lateness()
        assert before == pytest.approx(refresh_runner.LATE_MARGIN * sys.getswitchinterval())
        ran: list[str] = []
        runner.submit("slow", lambda: time.sleep(0.2))  # real time: holds the only thread
        runner.submit("next", lambda: ran.append("next"))
        wait_until(lambda: ran, message="the second job")
        moved = (
            refresh_runner.LATE_MARGIN
            * refresh_runner.LATE_WEIGHT
            * (0.15 - sys.getswitchinterval())
        )
        assert runner.lateness() >= before + moved
    finally:
        runner.close()
