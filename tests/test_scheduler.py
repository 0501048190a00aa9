"""The background scheduler: due tasks, pattern warming, limits, start/stop, fork and fleet.

Cycles are driven by hand on the fake clock (``Scheduler.run_cycle``); real
time is used only to prove the thread starts, stops, survives and shares.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from dogpile.cache import make_region

import dogpile_warm
from dogpile_warm import CacheWarmingEngine, WarmableFunction, WarmingTask, warmable
from dogpile_warm._core.store import Entry
from dogpile_warm._warming.scheduler import Scheduler
from dogpile_warm.reports import SchedulerFigures
from dogpile_warm.testing import FakeClock, captured_signals, wait_until
from tests.servers import ClientCloser, Server, free_port

WORKER = Path(__file__).with_name("scheduler_worker.py")


def scheduler(engine: CacheWarmingEngine, **options: Any) -> Scheduler:
    """A scheduler without a thread, without jitter, driven by ``run_cycle``.

    Pattern warming (and with it schedule optimisation) is off unless asked for.
    """
    options.setdefault("jitter", 0.0)
    options.setdefault("pattern_warming", False)
    return Scheduler(
        engine.planner,
        engine.usage,
        engine.clock,
        rng=random.Random(0),
        **options,  # type: ignore[arg-type,unused-ignore]
    )


def scheduler_figures(engine: CacheWarmingEngine) -> SchedulerFigures:
    """``get_stats()["scheduler"]`` of an engine whose scheduler exists."""
    figures = engine.get_stats()["scheduler"]
    assert figures is not None
    return figures


def no_scheduler_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("dogpile_warm-scheduler")]


# -- due tasks ------------------------------------------------------------------------
def test_first_cycle_warms_never_warmed_critical_tasks_highest_priority_first(
    engine: CacheWarmingEngine,
) -> None:
    """Critical tasks are warmed in the first cycle, by priority; other tasks are not."""
    order: list[str] = []
    for name, priority in (("low", 100), ("high", 300), ("mid", 200), ("plain", 50)):
        engine.register_task(
            WarmingTask(name, name, f"k:{name}", partial(order.append, name), priority=priority),
            is_critical=priority >= 100,
        )
    done = scheduler(engine).run_cycle()
    assert order == ["high", "mid", "low"]
    assert done["tasks_warmed"] == ["high", "mid", "low"]


def test_a_critical_task_is_warmed_again_when_its_interval_has_passed(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """After a warming, the task waits its own interval (next_run), then runs again."""
    runs: list[float] = []
    engine.register_task(
        WarmingTask("t", "t", "k:t", lambda: runs.append(clock()), interval_minutes=15),
        is_critical=True,
    )
    cycles = scheduler(engine)
    cycles.run_cycle()
    (detail,) = engine.get_stats()["task_details"]
    assert detail["next_run"] == clock() + 15 * 60
    clock.advance(15 * 60 - 1)
    cycles.run_cycle()
    assert len(runs) == 1
    clock.advance(1)
    cycles.run_cycle()
    assert len(runs) == 2


def test_jitter_spreads_next_runs_within_ten_percent(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """With jitter, tasks of one interval get different next runs, all within ±10%."""
    for i in range(20):
        engine.register_task(WarmingTask(f"t{i}", "t", f"k:{i}", lambda: 1), is_critical=True)
    Scheduler(
        engine.planner, engine.usage, engine.clock, rng=random.Random(1), pattern_warming=False
    ).run_cycle()
    next_runs = {(d["next_run"] or 0.0) - clock() for d in engine.get_stats()["task_details"]}
    assert len(next_runs) == 20
    assert all(54 * 60 <= delay <= 66 * 60 for delay in next_runs)


def test_a_failing_task_backs_off_and_keeps_its_last_good_value(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """A failing task is retried after 30 s, then 60 s, ...; the cached value stays."""
    failing = False

    @warmable(priority=100, ttl=7200)  # outlives the interval and the retries below
    def catalog() -> str:
        if failing:
            raise ConnectionError("catalog service down")
        return "good"

    cycles = scheduler(engine)
    cycles.run_cycle()
    failing = True
    record = engine.registry.get(catalog.task.task_id)
    assert record is not None
    delays = []
    for _ in range(4):
        clock.now = record.next_run or clock.now
        cycles.run_cycle()
        delays.append((record.next_run or 0) - clock())
    assert delays == [30.0, 60.0, 120.0, 240.0]
    assert catalog.get() == "good"
    failing = False
    clock.now = record.next_run or clock.now
    cycles.run_cycle()
    assert record.consecutive_failures == 0
    assert (record.next_run or 0) - clock() == 3600.0


def test_non_critical_tasks_run_on_schedule_only_when_read_in_their_interval(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """With pattern warming, a due non-critical task is warmed only if it was read lately."""
    computed: list[str] = []

    @warmable(priority=50, ttl=7200, warm_args=[("a",)])
    def read_lately(x: str) -> str:
        computed.append(f"read:{x}")
        return x

    @warmable(priority=50, ttl=3600, warm_args=[("b",)])
    def never_read(x: str) -> str:
        computed.append(f"never:{x}")
        return x

    read_lately("a")
    computed.clear()
    cycles = scheduler(engine, pattern_warming=True)
    clock.advance(61 * 60)
    read_lately("a")  # a hit: any read in the last interval counts
    cycles.run_cycle()
    assert computed == ["read:a"]


def test_critical_warming_can_be_turned_off(engine: CacheWarmingEngine) -> None:
    """enable_critical_warming=False: the scheduler leaves critical tasks alone."""
    runs: list[int] = []
    engine.register_task(WarmingTask("t", "t", "k:t", lambda: runs.append(1)), is_critical=True)
    scheduler(engine, critical_warming=False).run_cycle()
    assert runs == []


def test_a_cycle_warms_at_most_its_budget_of_keys(engine: CacheWarmingEngine) -> None:
    """max_keys_per_cycle bounds a cycle; tasks left over run first in the next one."""
    order: list[int] = []
    for i in range(5):
        engine.register_task(
            WarmingTask(f"t{i}", "t", f"k:{i}", partial(order.append, i), priority=200 - i),
            is_critical=True,
        )
    cycles = scheduler(engine, max_keys_per_cycle=2)
    assert cycles.run_cycle()["keys_warmed"] == 2
    assert cycles.run_cycle()["keys_warmed"] == 2
    assert order == [0, 1, 2, 3]


def test_the_cycle_optimises_schedules_from_read_frequency(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """With pattern warming, a cycle applies optimize_schedules (hot task: 15 minutes)."""

    @warmable(ttl=3600)
    def hot() -> int:
        return 1

    for _ in range(120):  # two reads a minute for an hour
        hot()
        clock.advance(30)
    scheduler(engine, pattern_warming=True).run_cycle()
    [details] = engine.get_stats()["task_details"]
    assert details["interval_minutes"] == 15
    assert hot.task.interval_minutes == 60  # the user's task keeps what it was made with


def test_the_started_interval_is_the_longest_and_reaches_tasks_registered_later(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """After start(interval_minutes=60), an unread critical task keeps 60 minutes (the
    policy alone would give it 120), a hot one gets 15, and a task registered after
    start gets 60; the critical task is warmed again 60 minutes after its first."""
    runs: list[float] = []
    engine.register_task(
        WarmingTask("cold", "cold", "k:cold", lambda: runs.append(clock()), interval_minutes=240),
        is_critical=True,
    )

    @warmable(ttl=3600, name="hot")
    def hot() -> int:
        return 1

    for _ in range(120):  # two reads a minute for an hour
        hot()
        clock.advance(30)
    engine.registry.set_intervals(60)  # what start(interval_minutes=60) does first
    engine.register_task(
        WarmingTask("late", "late", "k:late", lambda: 1, interval_minutes=240), is_critical=False
    )
    assert engine.optimize_schedules()["schedules_adjusted"] == [
        {
            "task_id": "hot",
            "frequency": 2.0,
            "interval_minutes": 15,
            "previous_interval_minutes": 60,
        }
    ]
    cycles = scheduler(engine, pattern_warming=True)
    cycles.run_cycle()
    intervals = {d["task_id"]: d["interval_minutes"] for d in engine.get_stats()["task_details"]}
    assert intervals == {"cold": 60, "hot": 15, "late": 60}
    clock.advance(60 * 60 * 1.1)  # past the interval and its jitter
    cycles.run_cycle()
    assert len(runs) == 2 and runs[1] - runs[0] <= 66 * 60


# -- pattern warming ------------------------------------------------------------------
def make_hot_function(
    engine: CacheWarmingEngine, refresh_ahead: float | None = 0.5
) -> tuple[WarmableFunction[[int], int], list[int]]:
    """ttl 10 s; with refresh_ahead 0.5 its refresh window is 5 s long."""
    computed: list[int] = []

    @warmable(ttl=10, refresh_ahead=refresh_ahead)
    def square(x: int) -> int:
        computed.append(x)
        return x * x

    return square, computed


def age_value(fn: WarmableFunction[[int], int], x: int, seconds: float) -> None:
    """Make the cached value of ``fn(x)`` look ``seconds`` old."""
    store = fn._self_cached.store()
    key = fn.key_for(x)
    entry = store.read(key)
    assert isinstance(entry, Entry)
    store.write(key, entry._replace(created=fn.engine.clock() - seconds))


def read_steadily(
    fn: WarmableFunction[[int], int], x: int, clock: FakeClock, every: float, n: int
) -> None:
    """``n`` reads of ``fn(x)``, ``every`` seconds apart, each finding a value just made."""
    for _ in range(n):
        fn(x)
        clock.advance(every)
        age_value(fn, x, 0)


def test_a_key_read_more_often_than_its_refresh_window_is_left_to_refresh_ahead(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """Reads every 0.5 s into a 5 s refresh window: one will refresh it; no warming."""
    square, computed = make_hot_function(engine)
    read_steadily(square, 3, clock, every=0.5, n=5)
    age_value(square, 3, 4.5)
    computed.clear()
    assert scheduler(engine, pattern_warming=True).run_cycle()["keys_prewarmed"] == []
    assert computed == []


def test_a_key_read_steadily_is_warmed_before_its_next_read_would_find_it_expired(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """Pattern warming recomputes a key read every 6 s (too seldom for a read to land in
    its 5 s refresh window reliably) whose value expires before the next cycle ends."""
    square, computed = make_hot_function(engine)
    read_steadily(square, 3, clock, every=6, n=5)
    age_value(square, 3, 8.9)  # ttl 10 s; the next cycle ends within 1.25 s
    computed.clear()
    with captured_signals() as log:
        done = scheduler(engine, check_every=1.0, pattern_warming=True).run_cycle()
    assert done["keys_prewarmed"] == [square.key_for(3)]
    assert computed == [3]
    assert [c.kwargs["key"] for c in log.named("warmed")] == [square.key_for(3)]
    square(3)
    assert computed == [3]  # the next read is a hit on the new value


def test_a_fresh_value_is_not_warmed(engine: CacheWarmingEngine, clock: FakeClock) -> None:
    """A value that stays within its ttl through the next cycle is left alone, also
    inside its refresh window: a read there refreshes it."""
    square, computed = make_hot_function(engine)
    read_steadily(square, 3, clock, every=6, n=5)
    age_value(square, 3, 7.5)
    computed.clear()
    assert (
        scheduler(engine, check_every=1.0, pattern_warming=True).run_cycle()["keys_prewarmed"] == []
    )
    assert computed == []


def test_a_key_not_expected_before_the_next_cycle_is_not_warmed(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """A key read every 10 minutes, read just now, waits for a later cycle."""
    square, computed = make_hot_function(engine)
    read_steadily(square, 3, clock, every=600, n=3)
    clock.advance(-600)  # the last read was just now
    square(3)
    age_value(square, 3, 9)
    computed.clear()
    assert (
        scheduler(engine, check_every=1.0, pattern_warming=True).run_cycle()["keys_prewarmed"] == []
    )


def test_a_key_gone_cold_is_not_warmed(engine: CacheWarmingEngine, clock: FakeClock) -> None:
    """A key read every second, but not for an hour, is no longer predicted to be read."""
    square, computed = make_hot_function(engine)
    read_steadily(square, 3, clock, every=1, n=5)
    clock.advance(3600)
    age_value(square, 3, 9)
    computed.clear()
    assert (
        scheduler(engine, check_every=1.0, pattern_warming=True).run_cycle()["keys_prewarmed"] == []
    )
    assert computed == []


def test_a_missing_hot_key_is_warmed(engine: CacheWarmingEngine, clock: FakeClock) -> None:
    """A hot key whose value was invalidated is recomputed before its next read."""
    square, computed = make_hot_function(engine)
    read_steadily(square, 4, clock, every=6, n=5)
    square.invalidate(4)
    computed.clear()
    assert scheduler(engine, pattern_warming=True).run_cycle()["keys_prewarmed"] == [
        square.key_for(4)
    ]
    assert computed == [4]


def test_a_key_is_not_warmed_twice_within_half_its_ttl(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """Once warmed, a key is not warmed again for half its ttl."""
    square, computed = make_hot_function(engine)
    read_steadily(square, 3, clock, every=6, n=5)
    cycles = scheduler(engine, check_every=1.0, pattern_warming=True)
    age_value(square, 3, 8.9)
    assert cycles.run_cycle()["keys_prewarmed"] == [square.key_for(3)]
    age_value(square, 3, 8.9)  # as if it aged at once; the scheduler just warmed it
    computed.clear()
    assert cycles.run_cycle()["keys_prewarmed"] == []
    assert computed == []


def test_a_key_being_recomputed_elsewhere_is_skipped(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """Pattern warming does not wait for, or duplicate, a recompute holding the key's lock."""
    square, computed = make_hot_function(engine)
    read_steadily(square, 3, clock, every=6, n=5)
    age_value(square, 3, 8.9)
    computed.clear()
    cached = square._self_cached
    mutex = cached.store().lock(square.key_for(3))
    assert mutex.acquire(False)
    try:
        assert scheduler(engine, pattern_warming=True).run_cycle()["keys_prewarmed"] == []
    finally:
        mutex.release()
    assert computed == []


def test_a_pattern_warmings_duration_is_its_computation_not_the_lock_or_read(
    engine: CacheWarmingEngine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a warming reports as its duration (``warmed``'s ``duration_ms``, the task's
    figures) is computing and storing: a 50 ms read under the key's lock is not in it."""
    square, _ = make_hot_function(engine)
    read_steadily(square, 3, clock, every=6, n=5)
    age_value(square, 3, 8.9)
    store = square._self_cached.store()
    read = store.read

    def slow_read(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)
        return read(*args, **kwargs)

    monkeypatch.setattr(store, "read", slow_read)
    with captured_signals("warmed") as log:
        done = scheduler(engine, check_every=1.0, pattern_warming=True).run_cycle()
    assert done["keys_prewarmed"] == [square.key_for(3)]
    [warmed] = log
    assert 0 <= warmed.kwargs["duration_ms"] < 50


def test_pattern_warming_needs_remembered_arguments_and_respects_the_budget(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """Only keys with remembered calls are warmed, hottest first, up to the budget."""
    square, computed = make_hot_function(engine, refresh_ahead=None)
    for x in range(6):
        read_steadily(square, x, clock, every=0.1, n=6 - x)  # x=0 hottest
    for x in range(6):
        age_value(square, x, 9)
    engine.usage_tracker.record_access("some:key:without:arguments")
    engine.usage_tracker.record_access("some:key:without:arguments")
    computed.clear()
    done = scheduler(
        engine, check_every=5.0, max_keys_per_cycle=3, pattern_warming=True
    ).run_cycle()
    assert computed == [0, 1, 2]
    assert len(done["keys_prewarmed"]) == 3


# -- the thread, in real time ---------------------------------------------------------------
def test_start_and_stop_are_idempotent_and_leave_no_thread(engine: CacheWarmingEngine) -> None:
    """start twice runs one thread; stop twice is fine; nothing is left behind."""
    assert engine.get_stats()["running"] is False
    engine.start(check_every=0.05)
    engine.start(check_every=0.05)
    threads = [t for t in threading.enumerate() if t.name == "dogpile_warm-scheduler"]
    assert len(threads) == 1 and threads[0].daemon
    assert engine.get_stats()["running"] is True
    wait_until(lambda: scheduler_figures(engine)["cycles"] >= 3, message="3 cycles")
    t0 = time.monotonic()
    engine.stop(timeout=2)
    engine.stop(timeout=2)
    assert time.monotonic() - t0 < 2
    assert engine.get_stats()["running"] is False
    assert no_scheduler_threads()


def test_module_functions_start_and_stop_the_default_engine(engine: CacheWarmingEngine) -> None:
    """start_cache_warming / stop_cache_warming drive the default engine's scheduler."""
    runs: list[int] = []
    dogpile_warm.register_critical_task(WarmingTask("t", "t", "k:t", lambda: runs.append(1)))
    dogpile_warm.start_cache_warming(
        interval_minutes=30, enable_pattern_warming=False, check_every=0.05
    )
    wait_until(lambda: runs == [1], message="the critical task's run")
    assert dogpile_warm.get_warming_stats()["task_details"][0]["interval_minutes"] == 30
    dogpile_warm.stop_cache_warming()
    assert not engine.running and no_scheduler_threads()


def test_stop_returns_within_its_timeout_while_a_computation_runs(
    engine: CacheWarmingEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """A long computation cannot hold stop() past its timeout; queued keys are cancelled."""
    started = threading.Event()
    release = threading.Event()
    computed: list[int] = []

    def slow(i: int) -> int:
        started.set()
        release.wait(10)
        computed.append(i)
        return i

    for i in range(20):
        engine.register_task(
            WarmingTask(f"t{i}", "t", f"k:{i}", partial(slow, i)), is_critical=True
        )
    engine.start(check_every=0.05)
    assert started.wait(5)
    t0 = time.monotonic()
    engine.stop(timeout=0.3)
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 1.5
    assert "did not stop within" in caplog.text
    release.set()
    wait_until(no_scheduler_threads)
    assert len(computed) <= engine.max_workers  # the rest never started


def test_the_thread_survives_a_dead_fleet_backend(engine: CacheWarmingEngine) -> None:
    """An unreachable memcached shared by the fleet does not end the scheduler's thread:
    cycles go unclaimed (none runs) and the thread carries on."""
    engine.configure_region(  # the fleet's only region: cycles are claimed there
        "default",
        "dogpile.cache.pymemcache",
        arguments={"url": "127.0.0.1:1", "distributed_lock": True},
    )

    @warmable(priority=100)
    def on_dead_backend() -> int:
        return 1

    engine.start(check_every=0.05)
    try:
        wait_until(
            lambda: scheduler_figures(engine)["cycles_skipped"] >= 3, message="3 unclaimed cycles"
        )
        assert engine.running and scheduler_figures(engine)["cycles"] == 0
    finally:
        engine.stop()
    assert no_scheduler_threads()


def test_with_a_region_in_process_memory_each_process_runs_its_own_cycles(
    engine: CacheWarmingEngine,
) -> None:
    """A memcached region shared by the fleet (here unreachable) beside the default memory
    region: cycles are not claimed, since the memory region's values are this process's
    own to warm; they run."""
    engine.configure_region(
        "shared",
        "dogpile.cache.pymemcache",
        arguments={"url": "127.0.0.1:1", "distributed_lock": True},
    )

    @warmable(priority=100, region="shared")
    def on_shared() -> int:
        return 1

    engine.start(check_every=0.05)
    try:
        wait_until(lambda: scheduler_figures(engine)["cycles"] >= 3, message="3 cycles")
        assert scheduler_figures(engine)["cycles_skipped"] == 0
    finally:
        engine.stop()


def test_the_thread_survives_failing_tasks(engine: CacheWarmingEngine) -> None:
    """A task that raises in every cycle is counted as failing and the thread carries on."""

    def broken() -> int:
        raise RuntimeError("boom")

    engine.register_task(WarmingTask("broken", "broken", "k:b", broken), is_critical=True)
    engine.start(check_every=0.05)
    try:
        wait_until(lambda: scheduler_figures(engine)["cycles"] >= 3, message="3 cycles")
        assert engine.running
    finally:
        engine.stop()
    assert no_scheduler_threads()
    failures = {d["task_id"]: d["failures"] for d in engine.get_stats()["task_details"]}
    assert failures["broken"] >= 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.slow
def test_a_scheduler_started_without_restart_after_fork_stays_in_the_parent(
    engine: CacheWarmingEngine,
) -> None:
    """``start(restart_after_fork=False)``: a forked child (a worker pool) runs no
    scheduler, and the parent's carries on."""
    engine.start(check_every=0.05, restart_after_fork=False)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, never return into pytest
        status = 1
        try:
            status = 0 if not engine.running and engine.get_stats()["scheduler"] is None else 3
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert engine.running
    engine.stop()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.slow
def test_a_forked_child_runs_the_scheduler_again_with_the_same_settings(
    engine: CacheWarmingEngine,
) -> None:
    """A child forked from a process with a running scheduler runs its own (gunicorn
    ``--preload``: every worker keeps warming), and can stop and start it."""
    runs: list[int] = []
    engine.register_task(WarmingTask("t", "t", "k:t", lambda: runs.append(1)), is_critical=True)
    engine.start(check_every=0.05)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, never return into pytest
        status = 1
        try:
            os.close(read_fd)
            ok = engine.running and scheduler_figures(engine)["check_every"] == 0.05
            ok = ok and engine.warm_critical_data()["succeeded"] == 1
            engine.stop(timeout=2)
            ok = ok and not engine.running
            engine.start(check_every=0.05)
            ok = ok and engine.running
            engine.stop(timeout=2)
            status = 0 if ok else 3
        finally:
            os._exit(status)
    os.close(write_fd)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert engine.running  # the parent's scheduler carries on
    engine.stop()


# -- a fleet sharing a backend ----------------------------------------------------------------
def run_fleet(
    backend: str, server: Server, processes: int, seconds: float, kill_first: bool = False
) -> list[tuple[list[int], bool]]:
    """Run ``processes`` workers; return each one's claimed cycles and whether it finished.

    ``kill_first``: SIGKILL the first worker once it has run three cycles.
    """
    period = 0.1
    address = f"{server.host}:{server.port}"
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), backend, address, str(seconds), str(period)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=Path(__file__).parent.parent,
        )
        for _ in range(processes)
    ]
    early = ""
    if kill_first:
        stdout = workers[0].stdout
        assert stdout is not None
        while early.count("@ cycle") < 3:
            line = stdout.readline()
            assert line, f"the worker ended early: {early}"
            early += line
        workers[0].kill()
    results = []
    for i, worker in enumerate(workers):
        out, _ = worker.communicate(timeout=seconds + 30)
        if i == 0:
            out = early + out
        lines = [line for line in out.splitlines() if line.startswith("@ ")]
        cycles = [int(line.split()[2]) for line in lines if line.startswith("@ cycle")]
        finished = any(line.startswith("@ done") for line in lines)
        if not (kill_first and i == 0):
            assert worker.returncode == 0, out
        results.append((cycles, finished))
    return results


def fleet_server(backend: str, request: pytest.FixtureRequest) -> Server:
    server: Server = request.getfixturevalue(f"{backend}_server")
    server.flush()
    return server


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("memcached", marks=pytest.mark.memcached),
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
def test_three_processes_run_each_cycle_once(backend: str, request: pytest.FixtureRequest) -> None:
    """Three processes sharing a backend never run the same cycle twice, and miss none."""
    server = fleet_server(backend, request)
    results = run_fleet(backend, server, processes=3, seconds=2.0)
    claimed = [cycle for cycles, _ in results for cycle in cycles]
    assert len(claimed) == len(set(claimed))  # each cycle once
    span = max(claimed) - min(claimed) + 1
    assert len(claimed) >= 0.8 * span  # and (nearly) every cycle by someone
    assert sum(1 for cycles, _ in results if cycles) >= 2  # shared, not one fixed leader


@pytest.mark.slow
@pytest.mark.memcached
def test_the_fleet_carries_on_when_a_process_is_killed(
    request: pytest.FixtureRequest,
) -> None:
    """After one process dies (SIGKILL), the others run every later cycle."""
    server = fleet_server("memcached", request)
    results = run_fleet("memcached", server, processes=3, seconds=4.0, kill_first=True)
    (killed, killed_finished), *survivors = results
    assert not killed_finished
    claimed = [cycle for cycles, _ in survivors for cycle in cycles]
    after_kill = [c for c in claimed if c > max(killed)]
    assert len(killed) >= 3
    assert after_kill, f"no cycle after the kill: killed ran {killed}, the others {claimed}"
    assert len(claimed) + len(killed) == len(set(claimed + killed))
    span = max(after_kill) - max(killed)
    assert len(after_kill) >= 0.8 * span >= 8  # the survivors run (nearly) every later cycle


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({"interval_minutes": 0}, ValueError, "interval_minutes"),
        ({"interval_minutes": "60"}, TypeError, "interval_minutes"),
        ({"check_every": -1}, ValueError, "check_every"),
        ({"check_every": True}, TypeError, "check_every"),
        ({"max_keys_per_cycle": 0}, ValueError, "max_keys_per_cycle"),
    ],
)
def test_start_rejects_bad_settings_naming_them(
    engine: CacheWarmingEngine, options: dict[str, Any], error: type[Exception], named: str
) -> None:
    """Bad start() arguments raise with the argument's name, and start nothing."""
    with pytest.raises(error, match=named):
        engine.start(**options)
    assert not engine.running and no_scheduler_threads()


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("memory"),
        pytest.param("memcached", marks=pytest.mark.memcached),
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
def test_pattern_warming_keeps_a_sparsely_read_key_fresh_in_real_time(
    backend: str, request: pytest.FixtureRequest, client_closer: ClientCloser
) -> None:
    """A key read every 0.3 s (ttl 1 s, no refresh-ahead: only pattern warming keeps it
    fresh) is pre-warmed by the running scheduler on every backend, and its reads after
    the first are (nearly all) hits."""
    from tests.conftest import configure_backend

    real = CacheWarmingEngine()  # the real clock: predictions need real read times
    try:
        if backend != "memory":
            server = fleet_server(backend, request)
            configure_backend(real, backend, server)
            client_closer.watch(real.region)

        @warmable(ttl=1.0, refresh_ahead=None, engine=real)
        def slow_square(x: int) -> int:
            time.sleep(0.02)  # real time: a computation worth warming ahead
            return x * x

        real.start(check_every=0.05)
        for _ in range(10):
            assert slow_square(4) == 16
            time.sleep(0.3)  # real time: the scheduler predicts reads from their real times
        stats = real.get_stats()
        assert scheduler_figures(real)["keys_prewarmed"] >= 2
        assert stats["misses"] <= 3  # the first read; a slow machine may add one or two
    finally:
        real.close()
    assert no_scheduler_threads()


@pytest.mark.slow
def test_a_cycle_claim_the_backend_cannot_answer_is_not_won() -> None:
    """With the fleet's memcached unreachable, no cycle is claimed, so none runs (it
    would otherwise run in every process of the fleet at once)."""
    real = CacheWarmingEngine()
    real.configure_region(
        "default",
        "dogpile.cache.pymemcache",
        arguments={"url": f"127.0.0.1:{free_port()}", "distributed_lock": True},
    )

    @warmable(priority=100, ttl=60, engine=real, name="unclaimed.critical")
    def critical() -> int:
        return 1

    try:
        real.start(check_every=0.05)
        wait_until(lambda: scheduler_figures(real)["cycles_skipped"] >= 3, 10, message="3 skipped")
        assert scheduler_figures(real)["cycles"] == 0
    finally:
        real.close()


def test_the_scheduler_on_a_file_region_holds_no_lock_between_cycles(tmp_path: Path) -> None:
    """A dbm region cannot claim cycles for a fleet: the scheduler runs each cycle itself and
    never keeps the file's one lock, so a miss elsewhere does not wait for it."""
    region = make_region().configure(
        "dogpile.cache.dbm", arguments={"filename": str(tmp_path / "cache.dbm")}
    )
    engine = CacheWarmingEngine(region)

    @warmable(priority=100, ttl=60, engine=engine, name="dbm.critical")
    def critical() -> int:
        return 1

    @warmable(ttl=60, engine=engine, name="dbm.other")
    def other(x: int) -> int:
        return x

    try:
        engine.start(check_every=0.05)
        wait_until(lambda: scheduler_figures(engine)["cycles"] >= 3, 10, message="3 cycles")
        t0 = time.monotonic()
        assert other(5) == 5
        assert time.monotonic() - t0 < 2.0
        assert scheduler_figures(engine)["cycles_skipped"] == 0
    finally:
        engine.close()
