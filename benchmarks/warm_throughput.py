"""Warm throughput: ``warm_critical_data`` over many 5 ms tasks, against the ideal time.

An engine with ``max_workers=32`` warms 1,000 critical tasks that each take
5 ms (``time.sleep(0.005)``); the ideal is ``1000 * 5 ms / 32``, what 32
workers would take with no overhead at all. The ratio of the best of a few
runs to the ideal has a goal of 1.25 on the memory backend. A second figure
warms 1,000 keys of one ``@warmable`` function (critical, ``warm_args``)
into a memcached of its own, configured as README.md suggests (distributed
lock on), and counts the memcached round trips per key; its goal is 1.15.
A third row is the floor this machine sets: the same number of threads
taking the same sleeps from one shared iterator, with no cache and no
warming at all (no thread pool does better: a Future per task costs more).
Run: ``python benchmarks/warm_throughput.py [--quick]``.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dogpile_warm import CacheWarmingEngine, WarmingTask, warmable

try:
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._servers import ClientWatch, running_memcached
except ModuleNotFoundError:  # run as a script: the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._servers import ClientWatch, running_memcached

WORKERS = 32
TASK_SECONDS = 0.005
TASKS, REPEAT = 1_000, 5
QUICK_TASKS, QUICK_REPEAT = 100, 1
GOAL = 1.25
MEMCACHED_GOAL = 1.15

MEMORY = "warm_critical_data, memory"
MEMCACHED = "warm_critical_data, memcached"
BARE = f"floor: {WORKERS} bare threads, no cache"


def _figure(tasks: int) -> str:
    return f"warm {tasks:,} x 5 ms, {WORKERS} workers: time / ideal"


def ideal(tasks: int) -> float:
    """Seconds ``tasks`` tasks take on ``WORKERS`` workers with no overhead."""
    return tasks * TASK_SECONDS / WORKERS


def _work() -> str:
    time.sleep(TASK_SECONDS)
    return "warm"


def best_warm(
    engine: CacheWarmingEngine, tasks: int, repeat: int, before: Callable[[], Any]
) -> float:
    """Best-of-``repeat`` seconds of ``engine.warm_critical_data()``; every key must succeed."""
    best = math.inf
    for _ in range(repeat):
        before()
        t0 = time.perf_counter()
        report = engine.warm_critical_data()
        elapsed = time.perf_counter() - t0
        if report["succeeded"] != tasks:
            raise RuntimeError(f"warmed {report['succeeded']} of {tasks} keys: {report['results']}")
        best = min(best, elapsed)
    return best


def bare_threads(tasks: int, repeat: int) -> float:
    """Best-of-``repeat`` seconds for ``WORKERS`` threads to run ``tasks`` sleeps of
    ``TASK_SECONDS`` taken from one shared iterator: the machine's floor."""

    def work(order: Iterator[int]) -> None:
        for _ in order:
            time.sleep(TASK_SECONDS)

    best = math.inf
    for _ in range(repeat):
        order = iter(range(tasks))
        threads = [threading.Thread(target=work, args=(order,)) for _ in range(min(WORKERS, tasks))]
        t0 = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        best = min(best, time.perf_counter() - t0)
    return best


def memory(tasks: int, repeat: int) -> float:
    """Best seconds to warm ``tasks`` critical :class:`WarmingTask` values into memory."""
    engine = CacheWarmingEngine(max_workers=WORKERS)
    try:
        for i in range(tasks):
            task_id = f"bench.warm.{i}"
            task = WarmingTask(task_id, task_id, task_id, _work, priority=100)
            engine.register_task(task, is_critical=True)
        return best_warm(engine, tasks, repeat, lambda: None)
    finally:
        engine.close()


def memcached(tasks: int, repeat: int) -> tuple[float, dict[str, int]]:
    """Best seconds to warm ``tasks`` keys into memcached, and the commands of one warming."""
    with running_memcached() as url, ClientWatch(count=True) as clients:
        engine = CacheWarmingEngine(max_workers=WORKERS)
        try:
            clients.watch(
                engine.configure_region(
                    "default",
                    "dogpile.cache.pymemcache",
                    arguments={"url": url, "distributed_lock": True},
                )
            )

            @warmable(
                priority=100,
                ttl=3600,
                engine=engine,
                name="bench.warm_memcached",
                warm_args=[(i,) for i in range(tasks)],
            )
            def load(i: int) -> str:
                time.sleep(TASK_SECONDS)
                return "warm"

            seconds = best_warm(engine, tasks, repeat, clients.reset)
            return seconds, dict(clients.counts)
        finally:
            engine.close()


def run(quick: bool) -> list[Row]:
    """One row per backend, and the machine's floor: the best time over the ideal."""
    tasks, repeat = (QUICK_TASKS, QUICK_REPEAT) if quick else (TASKS, REPEAT)
    best = ideal(tasks)
    floor = bare_threads(tasks, repeat)
    in_memory = memory(tasks, repeat)
    in_memcached, commands = memcached(tasks, repeat)
    trips = sum(commands.values())
    per_command = ", ".join(f"{name} {n / tasks:g}" for name, n in sorted(commands.items()))
    return [
        Row(
            MEMORY,
            _figure(tasks),
            in_memory / best,
            GOAL,
            f"{in_memory * 1000:.0f} ms, ideal {best * 1000:.0f} ms",
        ),
        Row(
            MEMCACHED,
            _figure(tasks),
            in_memcached / best,
            MEMCACHED_GOAL,
            f"{in_memcached * 1000:.0f} ms; {trips / tasks:g} round trips per key ({per_command})",
        ),
        Row(BARE, _figure(tasks), floor / best, None, f"{floor * 1000:.0f} ms: sleeps alone"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = make_parser(__doc__).parse_args(argv)
    print(format_table(run(args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
