"""The timing method the benchmarks share: best of N rounds, contenders side by side."""

from __future__ import annotations

import math
import timeit
from collections.abc import Mapping

__all__ = ["best_per_call", "per_round"]


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


def per_round(
    timers: Mapping[str, timeit.Timer], calls: int, repeat: int
) -> dict[str, list[float]]:
    """Seconds per call of each timer in each of ``repeat`` rounds (contenders in turn).

    For figures where the noise is in the thing measured (a loopback round
    trip), a ratio taken within each round and then its median is steadier
    than a ratio of two best rounds that may come from different moments.
    """
    rounds: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(repeat):
        for name, timer in timers.items():
            rounds[name].append(timer.timeit(calls) / calls)
    return rounds
