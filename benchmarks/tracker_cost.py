"""Usage tracker cost: ``record_access`` against a plain dict increment, and its memory.

Every hit and miss of a decorated function feeds the engine's
:class:`~dogpile_warm.UsagePatternTracker`, so ``record_access(key)`` sits on
the hit path. Figures: its time per call as a ratio to ``counts[key] += 1``
(the least any counting can cost); its absolute time in microseconds on
this machine, with a goal of 1; the same for a stream of keys never seen
before, once the tracker is full (each one makes room for itself; best of
several rounds, goal 2); and the memory it holds, traced with
tracemalloc while 1,000,000 distinct keys are fed to a tracker with the
default ``max_keys``: the peak after all of them over the peak after the
first 100,000, which must stay flat (goal 1.1).
Run: ``python benchmarks/tracker_cost.py [--quick]``.
"""

from __future__ import annotations

import sys
import time
import timeit
import tracemalloc
from pathlib import Path

from dogpile_warm import UsagePatternTracker

try:
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._timing import best_per_call
except ModuleNotFoundError:  # run as a script: the repository root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._report import Row, format_table, make_parser
    from benchmarks._timing import best_per_call

CONTENDER = "UsagePatternTracker.record_access"
DICT = "dict[key] += 1"
KEY = "bench.tracker|42"
CALLS, REPEAT = 200_000, 5
QUICK_CALLS, QUICK_REPEAT = 2_000, 2
NEW_KEYS, QUICK_NEW_KEYS = 20_000, 2_000  # per round
NEW_KEY_ROUNDS, QUICK_NEW_KEY_ROUNDS = 10, 2
NEW_KEY_GOAL_US = 2.0
KEYS, CHECKPOINT = 1_000_000, 100_000
QUICK_KEYS, QUICK_CHECKPOINT = 50_000, 20_000
TIME_GOAL_US = 1.0
MEMORY_GOAL = 1.1


def per_call(calls: int, repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` seconds per ``record_access`` and per dict increment, one hot key."""
    tracker = UsagePatternTracker()
    timers = {
        CONTENDER: timeit.Timer(
            "record(key)", globals={"record": tracker.record_access, "key": KEY}
        ),
        DICT: timeit.Timer("counts[key] += 1", globals={"counts": {KEY: 0}, "key": KEY}),
    }
    return best_per_call(timers, calls, repeat)


def per_new_key(keys: int, rounds: int) -> float:
    """Seconds per ``record_access`` of a key never seen before, into a full tracker: the
    best of ``rounds`` rounds of ``keys`` new keys each (garbage collector on, as in use)."""
    tracker = UsagePatternTracker()
    record = tracker.record_access
    for i in range(tracker.max_keys):
        record(f"old:{i}")
    best = float("inf")
    for round_ in range(rounds):
        names = [f"new:{round_}:{i}" for i in range(keys)]
        t0 = time.perf_counter()
        for name in names:
            record(name)
        best = min(best, (time.perf_counter() - t0) / keys)
    return best


def memory(keys: int, checkpoint: int) -> tuple[int, int, int, int]:
    """Traced bytes (current, peak) after ``checkpoint`` distinct keys, then after ``keys``."""
    tracker = UsagePatternTracker()
    record = tracker.record_access
    tracemalloc.start()
    try:
        for i in range(checkpoint):
            record(f"key:{i}")
        current_1, peak_1 = tracemalloc.get_traced_memory()
        for i in range(checkpoint, keys):
            record(f"key:{i}")
        current_2, peak_2 = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return current_1, peak_1, current_2, peak_2


def run(quick: bool) -> list[Row]:
    """Four rows: time over a dict increment, absolute time, new keys' time, memory growth."""
    calls, repeat = (QUICK_CALLS, QUICK_REPEAT) if quick else (CALLS, REPEAT)
    new_keys, new_rounds = (
        (QUICK_NEW_KEYS, QUICK_NEW_KEY_ROUNDS) if quick else (NEW_KEYS, NEW_KEY_ROUNDS)
    )
    keys, checkpoint = (QUICK_KEYS, QUICK_CHECKPOINT) if quick else (KEYS, CHECKPOINT)
    times = per_call(calls, repeat)
    record_ns, dict_ns = times[CONTENDER] * 1e9, times[DICT] * 1e9
    new_ns = per_new_key(new_keys, new_rounds) * 1e9
    current_1, peak_1, current_2, peak_2 = memory(keys, checkpoint)
    return [
        Row(
            CONTENDER,
            "tracker: record_access / dict += 1",
            record_ns / dict_ns,
            detail=f"{record_ns:.0f} ns vs {dict_ns:.0f} ns per call (this machine)",
        ),
        Row(
            CONTENDER,
            "tracker: record_access, us per call (this machine)",
            record_ns / 1000,
            TIME_GOAL_US,
            f"{record_ns:.0f} ns per call",
        ),
        Row(
            CONTENDER,
            "tracker: record_access of a new key, us per call (this machine)",
            new_ns / 1000,
            NEW_KEY_GOAL_US,
            f"{new_ns:,.0f} ns per call, best of {new_rounds} rounds of {new_keys:,} new keys "
            "into a full tracker",
        ),
        Row(
            CONTENDER,
            f"tracker: peak memory, {keys:,} keys / {checkpoint:,} keys",
            peak_2 / peak_1,
            MEMORY_GOAL,
            f"peak {peak_1 / 1024:,.0f} KiB after {checkpoint:,}, {peak_2 / 1024:,.0f} KiB "
            f"after {keys:,} (held: {current_1 / 1024:,.0f} / {current_2 / 1024:,.0f} KiB)",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    args = make_parser(__doc__).parse_args(argv)
    print(format_table(run(args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
