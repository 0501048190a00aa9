"""Memory per key on dogpile's memory backend: dogpile_warm against dogpile's own decorator.

Figures, both traced with tracemalloc in one run:

- bytes held per live key: ``N`` distinct keys computed through ``@warmable``
  against the same through dogpile's ``cache_on_arguments``, each on its own
  ``dogpile.cache.memory`` region (goal: at most 1.2 times dogpile's);
- what is left once ``N`` keys are computed and each invalidated again
  (``f.invalidate(x)``, a delete), from a fresh start: bytes still held,
  in MB, less what dogpile's own decorator leaves doing the same (its memory
  backend's dict keeps its size as keys leave it; dogpile_warm shares that
  backend): goal under 10 MB at 200,000 keys. Bounded structures (usage
  tracker, remembered calls: 10,000 keys each) count in it.

Run: ``python benchmarks/key_memory.py [--quick]``.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dogpile.cache import make_region

from dogpile_warm import CacheWarmingEngine, warmable

try:
    from benchmarks._report import Row, format_table, make_parser
except ModuleNotFoundError:  # run as a script: the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._report import Row, format_table, make_parser

CONTENDER = "dogpile_warm"
BASELINE = "dogpile cache_on_arguments"
KEYS, QUICK_KEYS = 200_000, 5_000
PER_KEY_GOAL = 1.2
LEFT_GOAL_MB = 10.0


def traced(fill: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes newly held once ``fill()`` returns (what it returns is kept alive)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = fill()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, kept


def dogpile_live(keys: int) -> int:
    """Bytes held with ``keys`` live keys, computed and read once more."""
    region = make_region().configure("dogpile.cache.memory")

    @region.cache_on_arguments()
    def value(n: int) -> int:
        return n

    def fill() -> Any:
        for n in range(keys):
            value(n)
        for n in range(keys):
            value(n)  # and read once more: a live key is read
        return region

    return traced(fill)[0]


def dogpile_left(keys: int) -> int:
    """Bytes left once ``keys`` keys are computed and invalidated (a delete) again."""
    region = make_region().configure("dogpile.cache.memory")

    @region.cache_on_arguments()
    def value(n: int) -> int:
        return n

    def fill_and_forget() -> Any:
        for n in range(keys):
            value(n)
        for n in range(keys):
            value.invalidate(n)
        return region

    return traced(fill_and_forget)[0]


def warm_live(keys: int) -> int:
    """Bytes held with ``keys`` live keys, computed and read once more."""
    engine = CacheWarmingEngine()
    try:

        @warmable(engine=engine, ttl=3600)
        def value(n: int) -> int:
            return n

        def fill() -> Any:
            for n in range(keys):
                value(n)
            for n in range(keys):
                value(n)  # and read once more: a live key is read
            return value

        return traced(fill)[0]
    finally:
        engine.close()


def warm_left(keys: int) -> int:
    """Bytes left once ``keys`` keys are computed and invalidated (a delete) again."""
    engine = CacheWarmingEngine()
    try:

        @warmable(engine=engine, ttl=3600)
        def value(n: int) -> int:
            return n

        def fill_and_forget() -> Any:
            for n in range(keys):
                value(n)
            for n in range(keys):
                value.invalidate(n)
            return value

        return traced(fill_and_forget)[0]
    finally:
        engine.close()


def run(quick: bool) -> list[Row]:
    keys = QUICK_KEYS if quick else KEYS
    theirs, ours = dogpile_live(keys), warm_live(keys)
    their_left, left = dogpile_left(keys), warm_left(keys)
    return [
        Row(
            CONTENDER,
            f"memory: bytes per live key / dogpile's ({keys:,} keys)",
            ours / theirs,
            PER_KEY_GOAL,
            f"{ours / keys:.0f} B vs {theirs / keys:.0f} B per key",
        ),
        Row(BASELINE, f"memory: bytes per live key / dogpile's ({keys:,} keys)", 1.0),
        Row(
            CONTENDER,
            f"memory: MB left after {keys:,} keys computed and invalidated",
            (left - their_left) / 1e6,
            LEFT_GOAL_MB,
            f"{left / 1e6:.1f} MB in all, of which {their_left / 1e6:.1f} MB as dogpile's "
            "own decorator leaves (its memory backend's dict does not shrink)",
        ),
        Row(
            BASELINE,
            f"memory: MB left after {keys:,} keys computed and invalidated",
            their_left / 1e6,
            detail="reported, not a goal",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    args = make_parser(__doc__).parse_args(argv)
    print(format_table(run(args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
