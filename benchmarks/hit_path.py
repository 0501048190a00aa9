"""Hit-path cost on the memory backend, as ratios to peers measured in the same run.

Contenders, each answering the same cached call ``f(1)`` from memory:
dogpile_warm's ``@warmable`` (built-in tracking on, no blinker receiver),
the same with one blinker receiver on ``cache_hit``, dogpile.cache's own
``cache_on_arguments``, cachetools' ``TTLCache`` and ``functools.lru_cache``
(the in-process limit). Prints per-call times and each one's ratio to
dogpile's decorator. Run: ``python benchmarks/hit_path.py [--calls N]``.
"""

from __future__ import annotations

import argparse
import functools
import timeit
from collections.abc import Callable
from typing import Any

import cachetools
from dogpile.cache import make_region

from dogpile_warm import CacheWarmingEngine, signals, warmable


def contenders() -> dict[str, Callable[[int], Any]]:
    engine = CacheWarmingEngine()

    @warmable(ttl=3600, engine=engine, name="bench.warm")
    def warm(x: int) -> int:
        return x

    @warmable(ttl=3600, engine=engine, name="bench.warm_signal")
    def warm_signal(x: int) -> int:
        return x

    region = make_region().configure("dogpile.cache.memory", expiration_time=3600)

    @region.cache_on_arguments()
    def dogpile(x: int) -> int:
        return x

    @cachetools.cached(cachetools.TTLCache(maxsize=1024, ttl=3600))
    def ttlcache(x: int) -> int:
        return x

    @functools.lru_cache(maxsize=1024)
    def lru(x: int) -> int:
        return x

    return {
        "dogpile_warm": warm,
        "dogpile_warm + 1 receiver": warm_signal,
        "dogpile cache_on_arguments": dogpile,
        "cachetools TTLCache": ttlcache,
        "functools.lru_cache": lru,
    }


def measure(calls: int, repeat: int = 5) -> dict[str, float]:
    """Best-of-``repeat`` seconds per hit for each contender."""
    fns = contenders()
    received: list[object] = []

    def receiver(sender: object, **kw: object) -> None:
        received.append(sender)

    signals.cache_hit.connect(receiver, sender=fns["dogpile_warm + 1 receiver"])
    try:
        results = {}
        for name, fn in fns.items():
            fn(1)  # the one miss
            best = min(timeit.repeat(lambda fn=fn: fn(1), number=calls, repeat=repeat))
            results[name] = best / calls
    finally:
        signals.cache_hit.disconnect(receiver)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args(argv)
    results = measure(args.calls)
    base = results["dogpile cache_on_arguments"]
    print(f"{'contender':30} {'us/hit':>8} {'x dogpile':>10}")
    for name, seconds in results.items():
        print(f"{name:30} {seconds * 1e6:8.2f} {seconds / base:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
