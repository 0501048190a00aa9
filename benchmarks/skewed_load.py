"""Skewed load: Zipf-distributed reads of expiring keys from many threads, per contender.

Eight threads read 200 keys, key ``k`` (1-based) with probability
proportional to ``1 / k**1.1`` (Zipf, s=1.1), pausing 1 ms between reads as a
request handler does its own work (without the pause, eight threads
spinning on a microsecond hit path measure the GIL, not the cache).
Recomputing a key takes 20 ms (``time.sleep(0.02)``); values live 1 s.

Contenders, each on an in-memory region: dogpile.cache's
``cache_on_arguments(expiration_time=1)``; the same with an
``async_creation_runner`` (dogpile's recipe: a thread runs the creator and
releases the mutex); dogpile_warm's ``@warmable(ttl=1, refresh_ahead=0.8)``;
and that plus the background scheduler's pattern warming
(``engine.start(enable_pattern_warming=True, check_every=0.1)``).

After a warm-up, every call is measured: its latency; whether the caller
waited on a recompute (it ran the computation itself, seen through a
thread-local flag, or took 15 ms or more: it waited on another thread's);
and the age of the value it got (each value carries ``time.time()`` from
the start of its computation). All recomputations in the measured window
are counted, wherever they ran. Goals, with pattern warming: at most 0.5% of
calls wait, p99 latency at most 0.1x dogpile's, no value older than the ttl
(that one holds for both dogpile_warm contenders), at most 1.25x dogpile's
recomputes. For dogpile_warm, also the share of values computed ahead of
reads that no read used (its ``get_performance()``, warm-up included). And
a reference: the recomputes that keeping every key fresh costs when each
refresh starts at dogpile_warm's latest start (and, in its detail, with no
margin at all). Writes a chart of latency percentiles (``--chart``).
Run: ``python benchmarks/skewed_load.py [--quick] [--chart PATH]``.
"""

from __future__ import annotations

import itertools
import math
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dogpile.cache import CacheRegion, make_region

from dogpile_warm import CacheWarmingEngine, warmable
from dogpile_warm._cached.refresh import latest_start

try:
    from benchmarks._report import Row, format_table, make_parser
except ModuleNotFoundError:  # run as a script: the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._report import Row, format_table, make_parser

KEYS = 200
ZIPF_S = 1.1
THREADS = 8
THINK = 0.001  # seconds each reader pauses between reads
RECOMPUTE = 0.02  # seconds one recomputation takes
TTL = 1.0
REFRESH_AHEAD = 0.8
WAITED = 0.015  # a call this slow waited on a recompute, wherever it ran
CHECK_EVERY = 0.1  # the scheduler's cycle, seconds
# Only task intervals: pattern warming runs every cycle, and the function
# under test takes an argument, so it has no task of its own to warm.
INTERVAL_MINUTES = 1.0
WARMUP, DURATION = 2.0, 5.0  # seconds per contender: not measured, then measured
QUICK_WARMUP, QUICK_DURATION = 1.2, 1.0
DEFAULT_CHART = Path(__file__).resolve().parent / "skewed_load.png"

DOGPILE = "dogpile cache_on_arguments"
DOGPILE_ASYNC = "dogpile + async_creation_runner"
REFRESH = "dogpile_warm refresh-ahead"
PATTERN = "dogpile_warm refresh-ahead + pattern warming"

WAITS = "skewed: share of calls waiting on a recompute"
P99 = "skewed: p99 latency / dogpile's"
AGE = "skewed: max value age / ttl"
RECOMPUTES = "skewed: recomputes / dogpile's"
WASTED = "skewed: computed ahead, never read"
KEPT_FRESH = "reference: every key kept fresh at dogpile_warm's refresh margin"

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("max", 100.0),
)
# The goals each contender is held to: figure -> upper bound.
GOALS: dict[str, dict[str, float]] = {
    DOGPILE: {},
    DOGPILE_ASYNC: {},
    REFRESH: {AGE: 1.0},
    PATTERN: {WAITS: 0.005, P99: 0.1, AGE: 1.0, RECOMPUTES: 1.25},
}

Value = tuple[int, float]  # (key, time.time() when its computation started)
Read = Callable[[int], Value]


class Recompute:
    """The expensive function under test, counting its runs in the measured window.

    Thread-safe. ``window`` (perf_counter seconds, start and end) is set
    before the load starts; runs in reader threads are counted per thread
    in ``local.computed`` (readers set ``local.reader``).
    """

    def __init__(self) -> None:
        self.window = (math.inf, math.inf)
        self.count = 0
        self.local = threading.local()
        self._lock = threading.Lock()

    def __call__(self, key: int) -> Value:
        started = time.time()
        start, end = self.window
        if start <= time.perf_counter() < end:
            with self._lock:
                self.count += 1
        local = self.local
        if getattr(local, "reader", False):
            local.computed += 1
        time.sleep(RECOMPUTE)
        return key, started


def _plain(fn: Recompute) -> Callable[[int], Value]:
    # A plain function of one argument: dogpile's key generator would take a
    # bound method's first parameter for ``self`` and leave the key out.
    def load(key: int) -> Value:
        return fn(key)

    return load


@contextmanager
def dogpile_plain(fn: Recompute) -> Iterator[Read]:
    region = make_region().configure("dogpile.cache.memory")
    yield region.cache_on_arguments(expiration_time=TTL)(_plain(fn))


@contextmanager
def dogpile_async(fn: Recompute) -> Iterator[Read]:
    threads: list[threading.Thread] = []

    def runner(cache: CacheRegion, key: str, creator: Callable[[], Any], mutex: Any) -> None:
        # dogpile's documented recipe: regenerate in a thread, then release the lock.
        def regenerate() -> None:
            try:
                cache.set(key, creator())
            finally:
                mutex.release()

        thread = threading.Thread(target=regenerate, daemon=True)
        threads.append(thread)
        thread.start()

    region = make_region(async_creation_runner=runner).configure("dogpile.cache.memory")
    try:
        yield region.cache_on_arguments(expiration_time=TTL)(_plain(fn))
    finally:
        for thread in threads:
            thread.join()


@contextmanager
def warm_refresh_ahead(fn: Recompute) -> Iterator[Read]:
    engine = CacheWarmingEngine()
    try:
        yield warmable(ttl=TTL, refresh_ahead=REFRESH_AHEAD, engine=engine, name="bench.skewed")(
            _plain(fn)
        )
    finally:
        engine.close()


@contextmanager
def warm_pattern(fn: Recompute) -> Iterator[Read]:
    engine = CacheWarmingEngine()
    try:
        read = warmable(ttl=TTL, refresh_ahead=REFRESH_AHEAD, engine=engine, name="bench.skewed")(
            _plain(fn)
        )
        engine.start(
            interval_minutes=INTERVAL_MINUTES,
            enable_pattern_warming=True,
            enable_critical_warming=False,
            check_every=CHECK_EVERY,
        )
        yield read
    finally:
        engine.stop()
        engine.close()


def scheduler_missing() -> bool:
    """Whether dogpile_warm lacks the background scheduler (``CacheWarmingEngine.start``)."""
    return not hasattr(CacheWarmingEngine, "start")


CONTENDERS: dict[str, Callable[[Recompute], AbstractContextManager[Read]]] = {
    DOGPILE: dogpile_plain,
    DOGPILE_ASYNC: dogpile_async,
    REFRESH: warm_refresh_ahead,
    PATTERN: warm_pattern,
}


@dataclass
class Load:
    """What one contender's measured window saw; latencies and ages in seconds."""

    latencies: list[float] = field(default_factory=list)
    ages: list[float] = field(default_factory=list)
    computed_in_caller: int = 0  # calls that ran the computation themselves
    slow: int = 0  # calls of at least WAITED seconds
    waited: int = 0  # calls that did either
    recomputes: int = 0
    duration: float = 0.0  # seconds measured
    # dogpile_warm's get_performance() at the end of the run, warm-up included
    performance: dict[str, Any] | None = None

    @property
    def calls(self) -> int:
        return len(self.latencies)

    def percentiles(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        return {name: _nearest_rank(ordered, q) for name, q in PERCENTILES}


def _nearest_rank(ordered: Sequence[float], q: float) -> float:
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def zipf_cum_weights(n: int = KEYS, s: float = ZIPF_S) -> list[float]:
    """Cumulative weights of keys ``0..n-1``, key ``i`` weighing ``1 / (i + 1)**s``."""
    return list(itertools.accumulate(1.0 / (k**s) for k in range(1, n + 1)))


def drive(read: Read, fn: Recompute, warmup: float, duration: float, seed: int = 1) -> Load:
    """Read from ``THREADS`` threads for ``warmup + duration`` s; measure the last ``duration``."""
    cum = zipf_cum_weights()
    calls_per_thread = int((warmup + duration) / THINK) + 1
    sequences = [
        random.Random(seed + i).choices(range(KEYS), cum_weights=cum, k=calls_per_thread)
        for i in range(THREADS)
    ]
    loads = [Load() for _ in range(THREADS)]
    ready = threading.Barrier(THREADS + 1)

    def reader(keys: list[int], load: Load) -> None:
        local = fn.local
        local.reader, local.computed = True, 0
        ready.wait()
        measure_from, end = fn.window
        for key in itertools.cycle(keys):
            t0 = time.perf_counter()
            if t0 >= end:
                return
            computed = local.computed
            value = read(key)
            t1 = time.perf_counter()
            age = time.time() - value[1]
            if t0 >= measure_from:
                latency = t1 - t0
                in_caller, slow = local.computed != computed, latency >= WAITED
                load.latencies.append(latency)
                load.ages.append(age)
                load.computed_in_caller += in_caller
                load.slow += slow
                load.waited += in_caller or slow
            time.sleep(THINK)

    threads = [
        threading.Thread(target=reader, args=(keys, load), name=f"bench-reader-{i}")
        for i, (keys, load) in enumerate(zip(sequences, loads, strict=True))
    ]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    fn.window = (start + warmup, start + warmup + duration)
    ready.wait()
    for thread in threads:
        thread.join()
    total = Load(recomputes=fn.count, duration=duration)
    for load in loads:
        total.latencies += load.latencies
        total.ages += load.ages
        total.computed_in_caller += load.computed_in_caller
        total.slow += load.slow
        total.waited += load.waited
    return total


def measure(warmup: float, duration: float) -> dict[str, Load | None]:
    """Each contender's :class:`Load`, one after the other; None for one that cannot run."""
    results: dict[str, Load | None] = {}
    for name, setup in CONTENDERS.items():
        if name == PATTERN and scheduler_missing():
            results[name] = None
            continue
        fn = Recompute()
        with setup(fn) as read:
            load = results[name] = drive(read, fn, warmup, duration)
            engine = getattr(read, "engine", None)
            if isinstance(engine, CacheWarmingEngine):
                load.performance = dict(engine.get_performance())
    return results


def rows(results: dict[str, Load | None]) -> list[Row]:
    """Four rows per contender (waits, p99, max age, recomputes); ratios to dogpile's."""
    base = results[DOGPILE]
    if base is None:
        raise ValueError("dogpile's own run is the reference and must be there")
    base_p99 = base.percentiles()["p99"]
    out: list[Row] = []
    for name, load in results.items():
        goals = GOALS[name]
        if load is None:
            out += [
                Row(name, figure, None, goals.get(figure), "n/a (scheduler missing)")
                for figure in (WAITS, P99, AGE, RECOMPUTES)
            ]
            continue
        pct = load.percentiles()
        max_age = max(load.ages)
        out += [
            Row(
                name,
                WAITS,
                load.waited / load.calls,
                goals.get(WAITS),
                f"{load.waited} of {load.calls:,} calls ({load.computed_in_caller} computed in "
                f"the caller, {load.slow} took >= {WAITED * 1000:g} ms)",
            ),
            Row(
                name,
                P99,
                pct["p99"] / base_p99,
                goals.get(P99),
                " ".join(f"{k} {v * 1000:#.3g}" for k, v in pct.items()) + " ms",
            ),
            Row(
                name, AGE, max_age / TTL, goals.get(AGE), f"max age {max_age:.4f} s, ttl {TTL:g} s"
            ),
            Row(
                name,
                RECOMPUTES,
                load.recomputes / base.recomputes,
                goals.get(RECOMPUTES),
                f"{load.recomputes} recomputes",
            ),
        ]
        if load.performance is not None:
            out.append(wasted_row(name, load.performance))
    return [*out, kept_fresh_row(base)]


def kept_fresh_row(base: Load) -> Row:
    """The recomputes that keeping every key fresh costs (every key is read several times
    per ttl here) when each refresh starts at dogpile_warm's latest start: refreshes of
    a key are then ttl less 1.5 computations and the slack apart. With no margin at
    all (a refresh finishing the moment the value expires) they would be ttl less one
    computation apart, which the detail gives too. Against dogpile's, which recomputes a
    key only when a read finds it expired."""
    interval = latest_start(0.0, TTL, RECOMPUTE)
    at_margin = KEYS * base.duration / interval
    no_margin = KEYS * base.duration / (TTL - RECOMPUTE)
    return Row(
        KEPT_FRESH,
        RECOMPUTES,
        at_margin / base.recomputes,
        None,
        f"{at_margin:,.0f} recomputes: {KEYS} keys x {base.duration:g} s / {interval:.3f} s; "
        f"with no margin, {no_margin:,.0f} ({no_margin / base.recomputes:.3f}x)",
    )


def wasted_row(name: str, performance: dict[str, Any]) -> Row:
    """The share of values computed ahead of reads (background refreshes and pattern
    warmings) that no read used before they were replaced or expired, over the run."""
    score = performance["efficiency_score"]
    refreshes, wasted = performance["refreshes"], performance["wasted_refreshes"]
    share = performance["wasted_refresh_share"]
    return Row(
        name,
        WASTED,
        None if score is None else 1.0 - score / 100.0,
        None,
        f"of {performance['successful']:,} refreshes and warmings, warm-up included; "
        f"refreshes alone: {wasted:,} of {refreshes:,} unread"
        + ("" if share is None else f" ({share:.1%} of those whose fate is known)"),
    )


def write_chart(results: dict[str, Load | None], path: Path) -> None:
    """A PNG of each contender's latency percentiles, log-scale milliseconds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 5), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    labels = [name for name, _ in PERCENTILES]
    for name, load in results.items():
        if load is not None:
            ms = [v * 1000 for v in load.percentiles().values()]
            ax.plot(labels, ms, marker="o", label=f"{name} ({load.calls:,} calls)")
    ax.set_yscale("log")
    ax.set_xlabel("percentile of call latency")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(
        f"Skewed load: {THREADS} threads, Zipf s={ZIPF_S:g} over {KEYS} keys, "
        f"ttl {TTL:g} s, recompute {RECOMPUTE * 1000:g} ms"
    )
    ax.grid(True, which="both", axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def run(quick: bool, *, chart: Path | None = DEFAULT_CHART) -> list[Row]:
    """Run every contender; return their rows and write the latency chart to ``chart``."""
    warmup, duration = (QUICK_WARMUP, QUICK_DURATION) if quick else (WARMUP, DURATION)
    results = measure(warmup, duration)
    if chart is not None:
        write_chart(results, chart)
    return rows(results)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--chart", type=Path, default=DEFAULT_CHART, help="where to write the latency chart (PNG)"
    )
    args = parser.parse_args(argv)
    print(format_table(run(args.quick, chart=args.chart)))
    print(f"chart: {args.chart}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
