"""Awaited hit cost on in-memory caches, as ratios to peers measured in the same run.

Contenders, each answering the same awaited call ``await f(1)`` from memory:
dogpile_warm's ``@warmable`` on an ``async def`` (built-in tracking on, no
blinker receiver), aiocache's ``@cached`` (its ``SimpleMemoryCache``),
cashews' ``@cache`` on ``mem://``, and a plain coroutine that returns at once
(the floor: what awaiting costs). Each round awaits every contender ``calls``
times in a loop of one event loop, contenders in turn; the best round counts.
Goals: dogpile_warm <= 0.1x aiocache's and <= 0.05x cashews'.
Run: ``python benchmarks/async_hit.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dogpile_warm import CacheWarmingEngine, warmable

try:
    from benchmarks._report import Row, format_table, make_parser
except ModuleNotFoundError:  # run as a script: the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._report import Row, format_table, make_parser

CALLS, REPEAT = 5_000, 15
QUICK_CALLS, QUICK_REPEAT = 200, 2

WARM = "dogpile_warm async"
AIOCACHE = "aiocache cached"
CASHEWS = "cashews cache"
BARE = "plain coroutine"
# dogpile_warm's goals, as ratios to each peer's time per awaited hit.
GOALS = {AIOCACHE: 0.1, CASHEWS: 0.05}

AsyncRead = Callable[[int], Awaitable[Any]]


@contextmanager
def contenders() -> Iterator[dict[str, AsyncRead | None]]:
    """The contenders' cached coroutine functions (None: that library is not installed)."""
    engine = CacheWarmingEngine()

    @warmable(ttl=3600, engine=engine, name="bench.async_hit")
    async def warm(x: int) -> int:
        return x

    async def bare(x: int) -> int:
        return x

    found: dict[str, AsyncRead | None] = {WARM: warm, AIOCACHE: None, CASHEWS: None, BARE: bare}
    try:
        from aiocache import cached as aiocache_cached

        @aiocache_cached(ttl=3600)  # type: ignore[untyped-decorator]  # aiocache is untyped
        async def with_aiocache(x: int) -> int:
            return x

        found[AIOCACHE] = with_aiocache
    except ModuleNotFoundError:
        pass
    try:
        from cashews import Cache

        cashews = Cache()
        cashews.setup("mem://")

        @cashews(ttl="1h")
        async def with_cashews(x: int) -> int:
            return x

        found[CASHEWS] = with_cashews
    except ModuleNotFoundError:
        pass
    try:
        yield found
    finally:
        engine.close()


async def _awaits(read: AsyncRead, calls: int) -> float:
    """Seconds per awaited call over ``calls`` awaits of ``read(1)``."""
    t0 = time.perf_counter()
    for _ in range(calls):
        await read(1)
    return (time.perf_counter() - t0) / calls


async def measure_async(calls: int, repeat: int) -> dict[str, float | None]:
    """Best-of-``repeat`` seconds per awaited hit for each contender (None: not installed)."""
    with contenders() as reads:
        present = {name: read for name, read in reads.items() if read is not None}
        for read in present.values():
            await read(1)  # the one miss
        best = dict.fromkeys(present, math.inf)
        for _ in range(repeat):
            for name, read in present.items():
                best[name] = min(best[name], await _awaits(read, calls))
        return {name: best.get(name) for name in reads}


def run(quick: bool) -> list[Row]:
    """One row per peer: dogpile_warm's time per awaited hit over that peer's."""
    calls, repeat = (QUICK_CALLS, QUICK_REPEAT) if quick else (CALLS, REPEAT)
    results = asyncio.run(measure_async(calls, repeat))
    warm = results[WARM]
    assert warm is not None
    rows = []
    for peer in (AIOCACHE, CASHEWS, BARE):
        theirs = results[peer]
        figure = f"awaited memory hit: time / {peer}'s"
        if theirs is None:
            rows.append(Row(WARM, figure, None, GOALS.get(peer), f"n/a ({peer} not installed)"))
            continue
        rows.append(
            Row(
                WARM,
                figure,
                warm / theirs,
                GOALS.get(peer),
                f"{warm * 1e6:.3f} vs {theirs * 1e6:.3f} us/hit",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    args = parser.parse_args(argv)
    print(format_table(run(args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
