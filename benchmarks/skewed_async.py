"""Skewed load on an event loop: :mod:`benchmarks.skewed_load`'s reads, awaited by tasks.

200 tasks on one event loop read the same 200 keys (Zipf, s=1.1), each
pausing 10 ms between reads (``await asyncio.sleep``: about 20,000 reads a
second in all, what one loop serves without falling behind); recomputing a
key awaits 20 ms; values live 1 s.

Contenders: dogpile_warm's ``@warmable(ttl=1, refresh_ahead=0.8)`` on an
``async def``; aiocache's ``@cached(ttl=1)``; cashews' ``@cache(ttl=1)`` and
its refresh-ahead, ``@cache.early(ttl=1, early_ttl=0.8)``. A call *waited* if
it took 15 ms or more (a recompute, its own or one it joined: no contender
says which). Goals for dogpile_warm: at most 1% of calls wait, no value
older than the ttl. :func:`run` measures these and the threaded contenders
of :mod:`benchmarks.skewed_load`, rows for both, one chart.
Run: ``python benchmarks/skewed_async.py [--quick] [--chart PATH]``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from dogpile_warm import CacheWarmingEngine, warmable

try:
    from benchmarks import skewed_load
    from benchmarks._report import Row, format_table, make_parser
except ModuleNotFoundError:  # run as a script: the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import skewed_load
    from benchmarks._report import Row, format_table, make_parser

from benchmarks.skewed_load import KEYS, RECOMPUTE, TTL, WAITED, Load, Value, zipf_cum_weights

TASKS = 200
THINK = 0.01  # seconds each task pauses between reads

WARM = "dogpile_warm async refresh-ahead"
AIOCACHE = "aiocache cached"
CASHEWS = "cashews cache"
CASHEWS_EARLY = "cashews cache.early"

WAITS = "skewed async: share of calls waiting on a recompute"
AGE = "skewed async: max value age / ttl"
RECOMPUTES = "skewed async: recomputes / dogpile's (threads)"
GOALS: dict[str, dict[str, float]] = {WARM: {WAITS: 0.01, AGE: 1.0}}

AsyncRead = Callable[[int], Awaitable[Value]]


class Recompute:
    """The expensive coroutine function under test, counting its runs in the window."""

    def __init__(self) -> None:
        self.window = (math.inf, math.inf)
        self.count = 0

    async def __call__(self, key: int) -> Value:
        started = time.time()
        start, end = self.window
        if start <= time.perf_counter() < end:
            self.count += 1
        await asyncio.sleep(RECOMPUTE)
        return key, started


@asynccontextmanager
async def warm_refresh_ahead(fn: Recompute) -> AsyncIterator[AsyncRead | None]:
    engine = CacheWarmingEngine()

    async def load(key: int) -> Value:
        return await fn(key)

    try:
        yield warmable(ttl=TTL, refresh_ahead=0.8, engine=engine, name="bench.skewed_async")(load)
    finally:
        engine.close()


@asynccontextmanager
async def with_aiocache(fn: Recompute) -> AsyncIterator[AsyncRead | None]:
    try:
        from aiocache import cached
    except ModuleNotFoundError:
        yield None
        return

    @cached(ttl=TTL)  # type: ignore[untyped-decorator]  # aiocache is untyped
    async def load(key: int) -> Value:
        return await fn(key)

    yield load


def _cashews(early: bool) -> Callable[[Recompute], AbstractAsyncContextManager[AsyncRead | None]]:
    @asynccontextmanager
    async def setup(fn: Recompute) -> AsyncIterator[AsyncRead | None]:
        try:
            from cashews import Cache
        except ModuleNotFoundError:
            yield None
            return
        cache = Cache()
        cache.setup("mem://")
        decorate = cache.early(ttl=TTL, early_ttl=0.8 * TTL) if early else cache(ttl=TTL)

        @decorate
        async def load(key: int) -> Value:
            return await fn(key)

        try:
            yield load
        finally:
            await cache.close()

    return setup


CONTENDERS: dict[str, Callable[[Recompute], AbstractAsyncContextManager[AsyncRead | None]]] = {
    WARM: warm_refresh_ahead,
    AIOCACHE: with_aiocache,
    CASHEWS: _cashews(early=False),
    CASHEWS_EARLY: _cashews(early=True),
}


async def drive(read: AsyncRead, fn: Recompute, warmup: float, duration: float) -> Load:
    """Read from ``TASKS`` tasks for ``warmup + duration`` s; measure the last ``duration``."""
    cum = zipf_cum_weights()
    reads_per_task = int((warmup + duration) / THINK) + 1
    start = time.perf_counter()
    fn.window = (start + warmup, start + warmup + duration)
    load = Load()

    async def reader(seed: int) -> None:
        keys = random.Random(seed).choices(range(KEYS), cum_weights=cum, k=reads_per_task)
        measure_from, end = fn.window
        for key in itertools.cycle(keys):
            t0 = time.perf_counter()
            if t0 >= end:
                return
            value = await read(key)
            latency = time.perf_counter() - t0
            if t0 >= measure_from:
                load.latencies.append(latency)
                load.ages.append(time.time() - value[1])
                slow = latency >= WAITED
                load.slow += slow
                load.waited += slow
            await asyncio.sleep(THINK)

    await asyncio.gather(*(reader(1 + i) for i in range(TASKS)))
    load.recomputes = fn.count
    return load


def measure(warmup: float, duration: float) -> dict[str, Load | None]:
    """Each contender's :class:`Load`, each on a new event loop; None if not installed."""

    async def one(name: str) -> Load | None:
        fn = Recompute()
        async with CONTENDERS[name](fn) as read:
            return None if read is None else await drive(read, fn, warmup, duration)

    return {name: asyncio.run(one(name)) for name in CONTENDERS}


def rows(results: dict[str, Load | None], dogpile: Load) -> list[Row]:
    """Three rows per contender: waits, max age, recomputes (to dogpile's threaded run)."""
    out: list[Row] = []
    for name, load in results.items():
        goals = GOALS.get(name, {})
        if load is None:
            out += [
                Row(name, figure, None, goals.get(figure), "n/a (not installed)")
                for figure in (WAITS, AGE, RECOMPUTES)
            ]
            continue
        max_age = max(load.ages)
        out += [
            Row(
                name,
                WAITS,
                load.waited / load.calls,
                goals.get(WAITS),
                f"{load.waited} of {load.calls:,} calls took >= {WAITED * 1000:g} ms",
            ),
            Row(
                name, AGE, max_age / TTL, goals.get(AGE), f"max age {max_age:.4f} s, ttl {TTL:g} s"
            ),
            Row(
                name,
                RECOMPUTES,
                load.recomputes / dogpile.recomputes,
                None,
                f"{load.recomputes} recomputes",
            ),
        ]
    return out


def run(quick: bool, *, chart: Path | None = skewed_load.DEFAULT_CHART) -> list[Row]:
    """The threaded and the async skewed loads: their rows, and one chart of both."""
    warmup, duration = (
        (skewed_load.QUICK_WARMUP, skewed_load.QUICK_DURATION)
        if quick
        else (skewed_load.WARMUP, skewed_load.DURATION)
    )
    threaded = skewed_load.measure(warmup, duration)
    awaited = measure(warmup, duration)
    if chart is not None:
        skewed_load.write_chart({**threaded, **awaited}, chart)
    dogpile = threaded[skewed_load.DOGPILE]
    assert dogpile is not None
    return skewed_load.rows(threaded) + rows(awaited, dogpile)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--chart",
        type=Path,
        default=skewed_load.DEFAULT_CHART,
        help="where to write the latency chart (PNG)",
    )
    args = parser.parse_args(argv)
    print(format_table(run(args.quick, chart=args.chart)))
    print(f"chart: {args.chart}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
