"""Smoke runs of the benchmarks at tiny sizes, so they cannot rot (no timing is asserted)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks import __main__ as entry_point
from benchmarks import (
    async_hit,
    celery_warm,
    gunicorn_load,
    hit_path,
    key_memory,
    memcached_hit,
    redis_hit,
    skewed_async,
    skewed_load,
    tracker_cost,
    warm_throughput,
)
from benchmarks._report import COLUMNS, Row, format_table
from dogpile_warm import CacheWarmingEngine
from dogpile_warm._cached.refresh import latest_start

ROOT = Path(__file__).resolve().parent.parent


def check_rows(rows: list[Row]) -> None:
    """Every row is complete, and ``met`` says whether the ratio is within the goal."""
    assert rows
    for row in rows:
        assert row.contender and row.figure
        if row.ratio is None:
            assert row.met is None and row.detail
            continue
        assert math.isfinite(row.ratio) and row.ratio >= 0
        assert row.met == (None if row.goal is None else row.ratio <= row.goal)


def by_contender(rows: list[Row], figure: str) -> dict[str, Row]:
    return {row.contender: row for row in rows if row.figure == figure}


def test_table_has_the_common_columns_and_marks_goals() -> None:
    """format_table prints one Markdown row per Row, n/a for no ratio, yes/NO against goals."""
    rows = [
        Row("a", "f", 1.2, 1.5, "12 us"),
        Row("b", "f", 2.0, 1.5),
        Row("c", "f", None, 1.0, "n/a (scheduler missing)"),
        Row("d", "f", 0.5),
    ]
    lines = format_table(rows).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(COLUMNS)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert cells == [
        ["a", "f", "1.20", "<= 1.50", "yes", "12 us"],
        ["b", "f", "2.00", "<= 1.50", "NO", ""],
        ["c", "f", "n/a", "<= 1.00", "", "n/a (scheduler missing)"],
        ["d", "f", "0.500", "", "", ""],
    ]


def test_hit_path_has_one_row_per_contender_relative_to_dogpile() -> None:
    """hit_path.run gives every contender a ratio to dogpile's decorator, which is 1."""
    rows = hit_path.run(quick=True)
    check_rows(rows)
    ratios = by_contender(rows, hit_path.FIGURE)
    assert set(ratios) == {
        "dogpile_warm",
        "dogpile_warm + 1 receiver",
        "dogpile cache_on_arguments",
        "cachetools TTLCache",
        "functools.lru_cache",
    }
    assert ratios[hit_path.BASELINE].ratio == 1.0
    bound = by_contender(rows, hit_path.METHOD_FIGURE)
    assert set(bound) == {*hit_path.BOUND_CALLS, hit_path.BINDING_FLOOR}
    assert all(row.ratio is not None and row.ratio > 0 for row in bound.values())
    assert bound[hit_path.BINDING_FLOOR].goal is None  # a measured floor, not a contender


@pytest.mark.slow
def test_a_benchmark_runs_as_a_script() -> None:
    """python benchmarks/hit_path.py --quick runs from anywhere and prints the table."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "hit_path.py"), "--quick", "--calls", "50"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd="/",
    ).stdout
    names = {line.split("|")[1].strip() for line in out.splitlines()[2:]}
    assert "dogpile_warm" in names and hit_path.BASELINE in names


@pytest.mark.memcached
@pytest.mark.slow
def test_memcached_hit_compares_with_a_raw_get_on_its_own_server() -> None:
    """memcached_hit.run starts memcached and rates each contender against the raw get."""
    rows = memcached_hit.run(quick=True)
    check_rows(rows)
    ratios = by_contender(rows, memcached_hit.FIGURE)
    assert set(ratios) == {
        memcached_hit.RAW,
        memcached_hit.RAW_TIMEOUTS,
        memcached_hit.OWN_GET,
        memcached_hit.RAW_STORED,
        memcached_hit.OWN_STORED,
        memcached_hit.RAW_HASH,
        memcached_hit.DOGPILE,
        memcached_hit.WARM,
    }
    assert ratios[memcached_hit.RAW].ratio == 1.0
    assert ratios[memcached_hit.WARM].goal == memcached_hit.GOAL


@pytest.mark.redis
@pytest.mark.slow
def test_redis_hit_compares_with_a_raw_get_and_with_dogpile_on_one_region() -> None:
    """redis_hit.run starts redis-server, rates each contender against the raw GET, and
    @warmable on the user's region against dogpile's decorator on that region."""
    rows = redis_hit.run(quick=True)
    check_rows(rows)
    ratios = by_contender(rows, redis_hit.RAW_FIGURE)
    assert set(ratios) == {
        redis_hit.RAW,
        redis_hit.OWN_GET,
        redis_hit.RAW_STORED,
        redis_hit.OWN_STORED,
        redis_hit.DOGPILE,
        redis_hit.CONFIGURED,
        redis_hit.ON_REGION,
    }
    assert ratios[redis_hit.RAW].ratio == 1.0
    assert ratios[redis_hit.CONFIGURED].goal == redis_hit.CONFIGURED_GOAL
    [own] = by_contender(rows, redis_hit.DOGPILE_FIGURE).values()
    assert own.contender == redis_hit.ON_REGION and own.goal == redis_hit.ON_REGION_GOAL


@pytest.mark.slow
def test_skewed_load_reports_every_contender_and_keeps_the_ttl_promise(tmp_path: Path) -> None:
    """The skewed loads (python -m benchmarks runs skewed_async.run: threads, then tasks):
    each threaded contender gets four rows, each async one three, plus the recomputes of
    keeping every key fresh, one chart shows both; dogpile_warm never returned a value older than the ttl, sync or async."""
    chart = tmp_path / "skewed.png"
    both = skewed_async.run(quick=True, chart=chart)
    check_rows(both)
    awaited = [row for row in both if row.figure.startswith("skewed async")]
    for figure in (skewed_async.WAITS, skewed_async.AGE, skewed_async.RECOMPUTES):
        assert set(by_contender(awaited, figure)) == set(skewed_async.CONTENDERS)
    async_age = by_contender(awaited, skewed_async.AGE)[skewed_async.WARM]
    assert async_age.ratio is not None and async_age.ratio <= 1.0, async_age.detail
    [kept_fresh] = [row for row in both if row.contender == skewed_load.KEPT_FRESH]
    rows = [row for row in both if row not in awaited and row is not kept_fresh]
    dogpile_recomputes = by_contender(rows, skewed_load.RECOMPUTES)[skewed_load.DOGPILE].detail
    interval = latest_start(0.0, skewed_load.TTL, skewed_load.RECOMPUTE)
    expected = skewed_load.KEYS * skewed_load.QUICK_DURATION / interval
    assert kept_fresh.figure == skewed_load.RECOMPUTES
    assert kept_fresh.ratio == pytest.approx(expected / int(dogpile_recomputes.split()[0]))
    figures = (skewed_load.WAITS, skewed_load.P99, skewed_load.AGE, skewed_load.RECOMPUTES)
    for figure in figures:
        assert set(by_contender(rows, figure)) == set(skewed_load.CONTENDERS)
    wasted = by_contender(rows, skewed_load.WASTED)
    assert set(wasted) == {skewed_load.REFRESH, skewed_load.PATTERN}  # dogpile_warm's only
    assert len(rows) == len(figures) * len(skewed_load.CONTENDERS) + len(wasted)
    for figure in (skewed_load.P99, skewed_load.RECOMPUTES):
        assert by_contender(rows, figure)[skewed_load.DOGPILE].ratio == 1.0
    for row in by_contender(rows, skewed_load.WAITS).values():
        assert row.ratio is None or row.ratio <= 1.0
    ages = by_contender(rows, skewed_load.AGE)
    promised = [skewed_load.REFRESH]
    if hasattr(CacheWarmingEngine, "start"):
        promised.append(skewed_load.PATTERN)
    else:
        assert ages[skewed_load.PATTERN].ratio is None
        assert all(r.detail == "n/a (scheduler missing)" for r in rows if r.ratio is None)
    for name in promised:
        age = ages[name].ratio  # max age / ttl
        assert age is not None and age <= 1.0, ages[name].detail
    for row in by_contender(rows, skewed_load.RECOMPUTES).values():
        assert row.ratio is None or row.ratio > 0  # keys expired within the window
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_async_hit_compares_an_awaited_hit_with_aiocache_cashews_and_a_bare_coroutine() -> None:
    """async_hit.run gives one row per peer with dogpile_warm's goals against aiocache and
    cashews; no await of a cached value costs less than awaiting a bare coroutine."""
    rows = async_hit.run(quick=True)
    check_rows(rows)
    assert {row.contender for row in rows} == {async_hit.WARM}
    goals = {row.figure.rsplit("/ ", 1)[1]: row.goal for row in rows}
    assert goals == {
        f"{async_hit.AIOCACHE}'s": 0.1,
        f"{async_hit.CASHEWS}'s": 0.05,
        f"{async_hit.BARE}'s": None,
    }
    assert all(row.ratio is not None for row in rows)  # both peers are dev dependencies
    floor = next(row for row in rows if row.figure.endswith(f"{async_hit.BARE}'s"))
    assert floor.ratio is not None and floor.ratio > 1.0


@pytest.mark.redis
@pytest.mark.slow
def test_celery_warm_compares_four_workers_with_one() -> None:
    """celery_warm.run warms on 1 and on 4 real celery worker processes and reports the
    time ratio against the goal of a 3x speed-up, with the machine's core count."""
    [row] = celery_warm.run(quick=True)
    check_rows([row])
    assert row.ratio is not None, row.detail  # redis-server and celery are installed here
    assert row.goal == pytest.approx(1 / 3)
    assert f"on {os.cpu_count()} cores" in row.detail


@pytest.mark.memcached
@pytest.mark.slow
def test_warm_throughput_rates_both_backends_against_the_ideal() -> None:
    """warm_throughput.run warms into memory and memcached, and times bare threads as the
    floor; none can beat the ideal."""
    rows = warm_throughput.run(quick=True)
    check_rows(rows)
    assert [row.contender for row in rows] == [
        warm_throughput.MEMORY,
        warm_throughput.MEMCACHED,
        warm_throughput.BARE,
    ]
    for row in rows:
        # Tasks sleep at least 5 ms, so only more than max_workers at once could go under 1.
        assert row.ratio is not None and row.ratio >= 1.0
    assert rows[0].goal == warm_throughput.GOAL
    assert "round trips per key" in rows[1].detail


@pytest.mark.slow
def test_tracker_cost_reports_time_and_flat_memory() -> None:
    """tracker_cost.run times record_access and finds its memory bounded past max_keys."""
    rows = tracker_cost.run(quick=True)
    check_rows(rows)
    assert {row.contender for row in rows} == {tracker_cost.CONTENDER}
    assert len(rows) == 4
    memory = rows[-1]
    assert memory.figure.startswith("tracker: peak memory")
    assert memory.met  # bounded memory is the tracker's contract, not a timing


@pytest.mark.slow
def test_key_memory_compares_with_dogpile_on_the_same_backend() -> None:
    """key_memory.run gives bytes per live key over dogpile's, and what is left behind."""
    rows = key_memory.run(quick=True)
    check_rows(rows)
    live = by_contender(rows, rows[0].figure)
    assert live[key_memory.BASELINE].ratio == 1.0
    assert live[key_memory.CONTENDER].goal == key_memory.PER_KEY_GOAL
    assert rows[2].figure.startswith("memory: MB left")


def test_entry_point_runs_every_benchmark_into_one_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """python -m benchmarks calls each benchmark's run(quick) and prints all rows in one table."""
    seen: list[tuple[str, bool]] = []

    def fake(name: str) -> Callable[[bool], list[Row]]:
        def run(quick: bool) -> list[Row]:
            seen.append((name, quick))
            return [Row(name, "f", 1)]

        return run

    modules = (
        hit_path,
        async_hit,
        memcached_hit,
        redis_hit,
        warm_throughput,
        celery_warm,
        gunicorn_load,
        tracker_cost,
    )
    for module in (*modules, key_memory):
        monkeypatch.setattr(module, "run", fake(module.__name__.rsplit(".", 1)[1]))

    def skewed(quick: bool, *, chart: Path | None) -> list[Row]:
        seen.append(("skewed_load", quick))
        assert chart == tmp_path / "c.png"
        return [Row("skewed_load", "f", 1)]

    monkeypatch.setattr(skewed_async, "run", skewed)
    assert entry_point.main(["--quick", "--chart", str(tmp_path / "c.png")]) == 0
    names = [
        "hit_path",
        "async_hit",
        "memcached_hit",
        "redis_hit",
        "skewed_load",
        "warm_throughput",
        "celery_warm",
        "gunicorn_load",
        "tracker_cost",
        "key_memory",
    ]
    assert seen == [(name, True) for name in names]
    table = capsys.readouterr().out.splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == names


def test_on_demand_minimum_computes_at_each_read_the_last_computation_does_not_cover() -> None:
    """One computation at 0 covers the reads to 5, the next at 6 those to 11, one at 12;
    only those starting inside the window count."""
    reads = [0.0, 1.0, 6.0, 6.5, 11.0, 12.0]
    assert gunicorn_load.on_demand_minimum(reads, 5.0, 0.0, 100.0) == 3
    assert gunicorn_load.on_demand_minimum(reads, 5.0, 5.0, 100.0) == 2
    assert gunicorn_load.on_demand_minimum([], 5.0, 0.0, 100.0) == 0


@pytest.mark.memcached
def test_gunicorn_load_counts_what_four_workers_compute() -> None:
    """gunicorn_load.run serves the app under gunicorn and reports its three figures, the
    computes against the issue's goal."""
    rows = gunicorn_load.run(quick=True)
    check_rows(rows)
    figures = {row.figure: row for row in rows}
    assert set(figures) == {gunicorn_load.MINIMUM, gunicorn_load.DUPLICATES, gunicorn_load.SOURCES}
    assert figures[gunicorn_load.MINIMUM].goal == gunicorn_load.RATIO_GOAL
    assert "reads" in figures[gunicorn_load.SOURCES].detail
