"""The timing method the benchmarks share: best of N rounds, contenders side by side."""

from __future__ import annotations

import math
import timeit
from collections.abc import Mapping

__all__ = ["best_per_call"]


def best_per_call(timers: Mapping[str, timeit.Timer], calls: int, repeat: int) -> dict[str, float]:
    """Seconds per call of each timer: the best of ``repeat`` rounds of ``calls`` calls.

    Each round times every contender once, in turn, so a slow moment of the
    machine (another process, frequency scaling) falls on all of them alike
    and their ratios hold while absolute times drift. The best round is the
    one least disturbed. timeit turns the garbage collector off while it times.
    """
    best = dict.fromkeys(timers, math.inf)
    for _ in range(repeat):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(calls) / calls)
    return best
