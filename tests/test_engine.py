"""The engine on the embedded memory region: tasks, critical warming, users, tags, stats."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from dogpile.cache.api import NO_VALUE

import dogpile_warm
from dogpile_warm import CacheWarmingEngine, WarmingTask, warmable
from dogpile_warm.testing import FakeClock, captured_signals


def make_task(
    task_id: str, priority: int = 50, fn: Callable[[], object] | None = None, **kwargs: Any
) -> WarmingTask:
    return WarmingTask(
        task_id=task_id,
        name=task_id,
        cache_key=f"key:{task_id}",
        compute_fn=fn or (lambda: task_id),
        priority=priority,
        **kwargs,
    )


def test_register_and_unregister_tasks(engine: CacheWarmingEngine) -> None:
    """register_task returns the task; unregister_task says whether it existed."""
    task = make_task("a")
    assert engine.register_task(task) is task
    assert engine.get_stats()["tasks"] == 1
    assert engine.unregister_task("a") is True
    assert engine.unregister_task("a") is False
    assert engine.get_stats()["tasks"] == 0


def test_a_duplicate_task_id_is_refused(engine: CacheWarmingEngine) -> None:
    """Registering a second task with a taken task_id raises ValueError naming it."""
    engine.register_task(make_task("dup"))
    with pytest.raises(ValueError, match="'dup'"):
        engine.register_task(make_task("dup"))


def test_module_functions_use_the_default_engine(engine: CacheWarmingEngine) -> None:
    """register_critical_task and friends act on get_warming_engine()."""
    assert dogpile_warm.get_warming_engine() is engine
    dogpile_warm.register_critical_task(make_task("c", priority=5))
    dogpile_warm.register_warming_task(make_task("n"))
    report = dogpile_warm.warm_critical_data()
    assert [r["task_id"] for r in report["results"]] == ["c"]
    assert dogpile_warm.get_cached("key:c") == "c"
    assert dogpile_warm.get_cached("key:n") is NO_VALUE
    stats = dogpile_warm.get_warming_stats()
    assert (stats["tasks"], stats["critical_tasks"]) == (2, 1)
    assert dogpile_warm.get_region() is engine.region


def test_critical_tasks_run_highest_priority_first() -> None:
    """With one worker, critical tasks run in descending priority; others do not run."""
    engine = CacheWarmingEngine(max_workers=1)
    order: list[str] = []

    def recording(task_id: str) -> Callable[[], str]:
        def compute() -> str:
            order.append(task_id)
            return task_id

        return compute

    for task_id, priority in [("low", 100), ("top", 300), ("mid", 200), ("normal", 99)]:
        engine.register_task(
            make_task(task_id, priority, fn=recording(task_id)), is_critical=priority >= 100
        )
    report = engine.warm_critical_data()
    assert order == ["top", "mid", "low"]
    assert [r["task_id"] for r in report["results"]] == ["top", "mid", "low"]
    assert report["succeeded"] == 3 and report["failed"] == 0


def test_critical_warming_runs_at_most_max_workers_at_once() -> None:
    """No more than max_workers computations overlap."""
    engine = CacheWarmingEngine(max_workers=3)
    running = 0
    peak = 0
    lock = threading.Lock()
    together = threading.Barrier(3, timeout=5)  # fewer than 3 at once: broken, tasks fail

    def slow() -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        together.wait()
        with lock:
            running -= 1
        return 1

    for i in range(12):
        engine.register_task(make_task(f"t{i}", 100, fn=slow), is_critical=True)
    report = engine.warm_critical_data()
    assert report["succeeded"] == 12
    assert peak == 3


def test_a_failing_task_keeps_the_last_good_value_and_others_run(
    engine: CacheWarmingEngine,
) -> None:
    """A failure is reported, signalled and leaves the previous value; other tasks succeed."""
    fail = False

    def sometimes() -> str:
        if fail:
            raise RuntimeError("source down")
        return "good"

    bad = make_task("bad", 200, fn=sometimes)
    engine.register_task(bad, is_critical=True)
    engine.register_task(make_task("ok", 100), is_critical=True)
    assert engine.warm_critical_data()["succeeded"] == 2
    fail = True
    with captured_signals("warmed", "warm_failed") as sent:
        report = engine.warm_critical_data()
    assert (report["succeeded"], report["failed"]) == (1, 1)
    failed = next(r for r in report["results"] if not r["success"])
    assert failed["task_id"] == "bad" and "source down" in str(failed["error"])
    assert engine.get_cached("key:bad") == "good"
    failure = sent.named("warm_failed")[0]
    assert failure.sender is bad and isinstance(failure.kwargs["error"], RuntimeError)
    assert [s.sender.task_id for s in sent.named("warmed")] == ["ok"]
    details = {d["task_id"]: d for d in engine.get_stats()["task_details"]}
    assert (details["bad"]["runs"], details["bad"]["failures"]) == (2, 1)


def test_decorated_critical_functions_warm_their_warm_args(engine: CacheWarmingEngine) -> None:
    """warm_args name the calls warming computes; functions needing arguments without them skip."""

    @warmable(priority=100, ttl=60, warm_args=[(1,), {"x": 2}])
    def page(x: int) -> str:
        return f"page {x}"

    @warmable(priority=150, ttl=60, warm_args=lambda: [(3,)])
    def lazy(x: int) -> int:
        return x

    @warmable(priority=100, ttl=60)
    def needs_args(x: int) -> int:
        return x

    report = engine.warm_critical_data()
    assert report["skipped"] == 1
    assert [r["key"] for r in report["results"]] == [
        lazy.key_for(3),
        page.key_for(1),
        page.key_for(2),
    ]
    assert page.get(2) == "page 2" and lazy.get(3) == 3


def test_a_warm_report_names_each_skipped_task_and_why(engine: CacheWarmingEngine) -> None:
    """warm_tasks lists every task it cannot call in "skipped_tasks", with the reason."""

    @warmable(name="basket", user_arg="user_id")
    def basket(user_id: int) -> list[str]:
        return []

    @warmable(name="product")
    def product(product_id: int) -> int:
        return product_id

    class Shop:
        @warmable(name="menu")
        def menu(self) -> list[str]:
            return []

    @warmable(name="catalog")
    def catalog() -> list[str]:
        return []

    report = engine.warm_tasks()
    assert (report["succeeded"], report["skipped"]) == (1, 3)
    assert sorted(report["skipped_tasks"], key=lambda s: s["task_id"]) == [
        {"task_id": "basket", "reason": "per-user function: warm_user_data warms it on login"},
        {"task_id": "menu", "reason": "method: warming has no instance to call it on"},
        {
            "task_id": "product",
            "reason": "needs arguments and has no warm_args: missing a required argument: "
            "'product_id'",
        },
    ]


def test_critical_defaults_to_priority_100_or_more(engine: CacheWarmingEngine) -> None:
    """critical=None means priority >= 100; critical=True/False overrides it."""

    @warmable(priority=100)
    def a() -> int:
        return 1

    @warmable(priority=10, critical=True)
    def b() -> int:
        return 2

    @warmable(priority=500, critical=False)
    def c() -> int:
        return 3

    flags = {d["task_id"]: d["critical"] for d in engine.get_stats()["task_details"]}
    assert flags == {a.task.task_id: True, b.task.task_id: True, c.task.task_id: False}


def test_warm_cache_and_get_cached_honour_tags(engine: CacheWarmingEngine) -> None:
    """warm_cache stores; get_cached reads; invalidating a tag hides the value."""
    with captured_signals("warmed", "invalidated") as sent:
        assert engine.warm_cache("homepage", lambda: "<html>", ttl=60, tags={"pages"}) is True
        assert engine.warm_cache("other", lambda: 1, ttl=60) is True
        assert engine.get_cached("homepage") == "<html>"
        assert engine.invalidate_by_tags({"pages"}) == 1
    assert engine.get_cached("homepage") is NO_VALUE
    assert engine.get_cached("other") == 1
    assert sent.named("warmed")[0].sender is engine
    assert sent.named("invalidated")[0].kwargs["tags"] == frozenset({"pages"})


def test_warm_cache_failure_returns_false_and_keeps_old_value(engine: CacheWarmingEngine) -> None:
    """A failing compute_fn makes warm_cache return False; the stored value stays."""
    engine.warm_cache("k", lambda: "old")

    def broken() -> str:
        raise KeyError("gone")

    with captured_signals("warm_failed") as sent:
        assert engine.warm_cache("k", broken) is False
    assert engine.get_cached("k") == "old"
    assert sent[0].sender is engine and sent[0].kwargs["key"] == "k"


def test_invalidate_by_tags_hits_only_tagged_functions(engine: CacheWarmingEngine) -> None:
    """Tagged functions recompute after invalidation; others keep their value."""
    computed: list[str] = []

    @warmable(ttl=60, tags={"catalog"})
    def catalog() -> str:
        computed.append("catalog")
        return "c"

    @warmable(ttl=60, tags={"nav"})
    def navigation() -> str:
        computed.append("nav")
        return "n"

    catalog(), navigation()
    assert dogpile_warm.invalidate_by_tags("catalog") == 1
    catalog(), navigation()
    assert computed == ["catalog", "nav", "catalog"]


def test_a_computation_racing_an_invalidation_is_stale(engine: CacheWarmingEngine) -> None:
    """Tag versions are read before computing, so a value computed across an invalidation is stale."""
    started, release = threading.Event(), threading.Event()
    versions = iter(["old", "new"])

    @warmable(ttl=60, tags={"t"})
    def slow() -> str:
        value = next(versions)
        if value == "old":
            started.set()
            release.wait(5)
        return value

    worker = threading.Thread(target=slow)
    worker.start()
    assert started.wait(5)
    engine.invalidate_by_tags({"t"})
    release.set()
    worker.join(5)
    assert slow.get() is NO_VALUE
    assert slow() == "new"


def test_invalidate_needs_tags_of_strings(engine: CacheWarmingEngine) -> None:
    """A non-string tag is a TypeError naming it."""
    with pytest.raises(TypeError, match="42"):
        engine.invalidate_by_tags([42])  # type: ignore[list-item]


class Users:
    """Per-user functions on a fresh engine."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

        @warmable(ttl=60, tags={"user", "session"}, user_arg="user_id", priority=90)
        def session(user_id: int) -> dict[str, int]:
            self.calls.append(("session", user_id))
            return {"user": user_id}

        @warmable(ttl=60, tags={"user", "forms"}, user_arg="user_id")
        def recent_forms(user_id: int, limit: int = 5) -> list[str]:
            self.calls.append(("forms", user_id))
            return [f"form-{user_id}-{i}" for i in range(limit)]

        self.session = session
        self.recent_forms = recent_forms


def test_warm_user_data_warms_every_user_function() -> None:
    """All user_arg functions are computed for that user and then served from cache."""
    users = Users()
    result = dogpile_warm.warm_user_data_optimized(7)
    assert result["skipped"] is False and result["failed"] == []
    assert sorted(result["keys_warmed"]) == sorted(
        [users.session.key_for(7), users.recent_forms.key_for(7)]
    )
    assert result["user_id"] == 7 and result["duration_ms"] >= 0
    users.session(7), users.recent_forms(7), users.recent_forms(user_id=7, limit=5)
    assert sorted(users.calls) == [("forms", 7), ("session", 7)]


def test_a_recently_warmed_user_is_skipped_until_the_window_passes(clock: FakeClock) -> None:
    """Within user_preload_window (engine clock) a user is skipped unless force=True."""
    users = Users()
    engine = dogpile_warm.get_warming_engine()
    assert engine.warm_user_data(1)["skipped"] is False
    clock.advance(299)
    assert engine.warm_user_data(1)["skipped"] is True
    assert engine.warm_user_data(1, force=True)["skipped"] is False
    clock.advance(300)
    assert engine.warm_user_data(1)["skipped"] is False
    assert len(users.calls) == 6


def test_preload_forms_false_leaves_forms_out() -> None:
    """Functions tagged 'forms' are not warmed with preload_forms=False."""
    users = Users()
    result = dogpile_warm.get_warming_engine().warm_user_data(3, preload_forms=False)
    assert result["keys_warmed"] == [users.session.key_for(3)]
    assert users.recent_forms.get(3) is NO_VALUE


def test_one_user_never_gets_another_users_value() -> None:
    """Values are keyed by user: warming user 1 serves nothing to user 2, also for '1' vs 1."""
    users = Users()
    dogpile_warm.get_warming_engine().warm_user_data(1)
    assert users.session(2) == {"user": 2}
    assert users.session("1") == {"user": "1"}  # type: ignore[arg-type,comparison-overlap]
    assert users.session(1) == {"user": 1}


def test_user_warming_failures_are_listed_and_retried_next_login(clock: FakeClock) -> None:
    """A user whose every warming failed is not marked warmed: the next login retries."""
    engine = dogpile_warm.get_warming_engine()
    broken = True

    @warmable(ttl=60, user_arg="uid")
    def profile(uid: int) -> int:
        if broken:
            raise ConnectionError("profile service down")
        return uid

    first = engine.warm_user_data(5)
    assert first["failed"] == [profile.key_for(5)] and first["keys_warmed"] == []
    broken = False
    second = engine.warm_user_data(5)
    assert second["skipped"] is False and second["keys_warmed"] == [profile.key_for(5)]


def test_stats_report_hits_misses_and_task_details(engine: CacheWarmingEngine) -> None:
    """get_stats counts hits and misses and describes every task."""

    @warmable(ttl=60, priority=120, tags={"a"})
    def one() -> int:
        return 1

    one(), one(), one()
    stats = engine.get_stats()
    assert (stats["hits"], stats["misses"]) == (2, 1)
    assert stats["hit_ratio"] == pytest.approx(2 / 3)
    assert stats["running"] is False and stats["backend_errors"] == 0
    (detail,) = stats["task_details"]
    assert set(detail) == {
        "task_id", "name", "priority", "tags", "critical", "runs", "failures",
        "avg_duration_ms", "last_run", "next_run", "interval_minutes", "consecutive_failures",
    }  # fmt: skip
    assert (detail["priority"], detail["tags"], detail["critical"]) == (120, ["a"], True)


@pytest.mark.parametrize(
    ("kwargs", "mentions"),
    [
        ({"max_workers": 0}, "max_workers"),
        ({"history_size": "x"}, "history_size"),
        ({"user_preload_window": -1}, "user_preload_window"),
        ({"clock": 5}, "clock"),
        ({"region": "default"}, "region"),
    ],
)
def test_engine_arguments_are_checked(kwargs: dict[str, Any], mentions: str) -> None:
    """Bad engine arguments raise naming the argument."""
    with pytest.raises((TypeError, ValueError), match=mentions):
        CacheWarmingEngine(**kwargs)


def test_warming_task_arguments_are_checked() -> None:
    """WarmingTask refuses a non-callable, bad ttl or priority, naming the value."""
    with pytest.raises(TypeError, match="compute_fn"):
        WarmingTask("a", "a", "k", compute_fn=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        WarmingTask("a", "a", "k", compute_fn=int, ttl=0)
    with pytest.raises(TypeError, match="priority"):
        WarmingTask("a", "a", "k", compute_fn=int, priority="1")  # type: ignore[arg-type]


def test_get_task_returns_the_registered_task_or_none(engine: CacheWarmingEngine) -> None:
    """get_task looks a task up by id; a decorated function knows its engine."""

    @warmable(name="lookup:me")
    def me() -> int:
        return 1

    assert engine.get_task("lookup:me") is me.task
    assert engine.get_task("nobody") is None
    assert me.engine is engine


def test_a_plain_task_may_compute_through_the_function_that_owns_its_key(
    engine: CacheWarmingEngine,
) -> None:
    """A task (or warm_cache) whose compute_fn is the @warmable function stored under the
    same key warms that key, cold or not, instead of failing as a re-entrant call."""

    @warmable(ttl=60, name="report")
    def report() -> str:
        return "data"

    engine.register_task(
        WarmingTask("warm-report", "report", report.key_for(), report), is_critical=True
    )
    rows = {row["task_id"]: row for row in engine.warm_tasks()["results"]}
    assert rows["warm-report"]["success"], rows
    report.invalidate()
    assert engine.warm_cache(report.key_for(), report) is True
    assert engine.get_cached(report.key_for()) == "data"
