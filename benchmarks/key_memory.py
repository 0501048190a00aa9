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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

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


def traced(fill: Callable[[], object]) -> int:
    """Bytes newly held once ``fill()`` returns (the caller keeps what it filled alive)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fill()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


Function = Callable[[int], int]


@contextmanager
def dogpile_function() -> Iterator[Function]:
    """``n -> n`` under dogpile's ``cache_on_arguments``, on a memory region of its own."""
    region = make_region().configure("dogpile.cache.memory")

    @region.cache_on_arguments()
    def value(n: int) -> int:
        return n

    yield value


@contextmanager
def warm_function() -> Iterator[Function]:
    """``n -> n`` under ``@warmable``, on an engine (and memory region) of its own."""
    engine = CacheWarmingEngine()
    try:

        @warmable(engine=engine, ttl=3600)
        def value(n: int) -> int:
            return n

        yield value
    finally:
        engine.close()


def live(function: Callable[[], AbstractContextManager[Function]], keys: int) -> int:
    """Bytes held with ``keys`` live keys, each computed and read once more."""
    with function() as value:

        def fill() -> None:
            for n in range(keys):
                value(n)
            for n in range(keys):
                value(n)  # and read once more: a live key is read

        return traced(fill)


def left(function: Callable[[], AbstractContextManager[Function]], keys: int) -> int:
    """Bytes left once ``keys`` keys are computed and invalidated (a delete) again."""
    with function() as value:

        def fill_and_forget() -> None:
            for n in range(keys):
                value(n)
            for n in range(keys):
                value.invalidate(n)  # type: ignore[attr-defined]  # both decorators have it

        return traced(fill_and_forget)


def run(quick: bool) -> list[Row]:
    keys = QUICK_KEYS if quick else KEYS
    theirs, ours = live(dogpile_function, keys), live(warm_function, keys)
    their_left, our_left = left(dogpile_function, keys), left(warm_function, keys)
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
            (our_left - their_left) / 1e6,
            LEFT_GOAL_MB,
            f"{our_left / 1e6:.1f} MB in all, of which {their_left / 1e6:.1f} MB as dogpile's "
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
