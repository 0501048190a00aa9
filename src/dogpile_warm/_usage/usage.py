"""What an engine learns from reads: counts, usage patterns, remembered calls, warm figures.

Every call through a decorated function reports one access (hit or miss).
The hit path only queues its hit; :meth:`Usage.drain` applies queued hits in
batches to the hit counter, the per-key tracker, the per-task tracker and
the warming figures. A miss, already paying for a computation, is applied
at once, after the hits queued before it. Everything that reads those drains first
(the trackers call :meth:`Usage.drain` before answering), so no reader ever
sees a count that is behind the calls that returned before it asked.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from .._core import forks
from .stats import AccessCounters, WarmingFigures
from .tracker import UsagePatternTracker

if TYPE_CHECKING:
    from .._cached.cached import CachedFunction

__all__ = ["Call", "Usage"]

# Queued hits that make the next read apply them all first, before it checks a
# value's freshness (see dogpile_warm._cached.reader), without waiting if another thread
# is at it.
DRAIN_AT = 512
# Queued hits beyond which a read waits for its turn to apply them: readers on
# several threads must not outpace the one applying them (an ever longer queue,
# and a read that applies it taking seconds).
QUEUE_CAP = 16 * DRAIN_AT
# Tasks the per-task tracker follows (a task is any key of one function).
_MAX_TASKS = 100_000

Call = tuple["CachedFunction", tuple[Any, ...], dict[str, Any]]

_key = itemgetter(1)
_when = itemgetter(2)


class Usage:
    """Counters, trackers, figures and remembered calls of one engine (thread-safe)."""

    def __init__(self, history_size: int, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.counters = AccessCounters()
        self.tracker = UsagePatternTracker(history_size, clock=clock)
        self.task_usage = UsagePatternTracker(history_size, max_keys=_MAX_TASKS, clock=clock)
        self.figures = WarmingFigures(history_size, clock)
        # key -> (function, args, kwargs) of a real call, so a hot key can be recomputed
        self.calls: OrderedDict[str, Call] = OrderedDict()
        self._calls_lock = forks.new_lock()
        # (function, key, engine time) of hits not yet applied. A list: appending
        # to it and cutting its head off are each one step under the GIL, so
        # appenders need no lock, and only the drainer (holding _drain_lock)
        # cuts. Never replaced: the read path holds on to it.
        self.queued_hits: list[tuple[CachedFunction, str, float]] = []
        self._drain_lock = forks.new_lock()
        self.tracker.pending = self.task_usage.pending = self.drain

    def hit(self, cached: CachedFunction, key: str, now: float) -> None:
        """Queue one hit at ``now`` (the engine's clock): an append, nothing else."""
        self.queued_hits.append((cached, key, now))

    def miss(self, cached: CachedFunction, key: str, now: float) -> None:
        """Apply one miss at ``now``, after the hits queued before it.

        Misses are rare and each costs a computation, so they skip the queue:
        the queue then holds only hits, and a batch's hit count is its length.
        """
        with self._drain_lock:
            self._apply(self._take_hits())
            self.counters.add(0, 1)
            self.figures.accessed(key, False, now)
            self.tracker.record_grouped([(key, [now])])
            self.task_usage.record_grouped([(cached.task.task_id, [now])])

    def drain(self, wait: bool = True) -> None:
        """Apply queued hits. ``wait=False``: leave them if another thread is at it."""
        if not self._drain_lock.acquire(wait):
            return
        try:
            self._apply(self._take_hits())
        finally:
            self._drain_lock.release()

    def _take_hits(self) -> list[tuple[CachedFunction, str, float]]:
        # Called with the drain lock held. Only what is queued now: appenders
        # may outpace a drainer.
        queue = self.queued_hits
        batch = queue[: len(queue)]
        del queue[: len(batch)]
        return batch

    def _apply(self, hits: list[tuple[CachedFunction, str, float]]) -> None:
        # Called with the drain lock held.
        if not hits:
            return
        self.counters.add(len(hits), 0)
        # Grouped by key (a stable sort keeps each key's hits in order), so a
        # skewed load costs one step per key, and per hit only C-level passes.
        hits.sort(key=_key)
        per_key: list[tuple[str, list[float]]] = []
        per_task: dict[str, list[float]] = {}
        accessed = self.figures.accessed
        for key, group in groupby(hits, _key):
            cached, _, first = next(group)
            times = [first, *map(_when, group)]  # noqa: B031 (the rest, after next())
            per_key.append((key, times))
            task_times = per_task.get(cached.task.task_id)
            if task_times is None:
                per_task[cached.task.task_id] = times.copy()
            else:
                task_times.extend(times)
            # Only the first read after a warming decides its usefulness.
            accessed(key, True, first)
        self.tracker.record_grouped(per_key)
        self.task_usage.record_grouped(per_task.items())

    def read_gap(self, key: str) -> float | None:
        """The mean time between reads of ``key``, or the time since its last read when
        that is longer (a key gone quiet); None with fewer than two reads known."""
        known = self.tracker.last_and_gap(key)
        if known is None:
            return None
        last, gap = known
        return max(gap, self.clock() - last)

    def remember_call(
        self, cached: CachedFunction, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Keep the arguments of a real call (bounded like the tracker), first call wins."""
        if key in self.calls:
            return
        with self._calls_lock:
            self.calls[key] = (cached, args, kwargs)
            if len(self.calls) > self.tracker.max_keys:
                self.calls.popitem(last=False)

    def remembered_calls(self) -> dict[str, Call]:
        """A copy of ``key -> (function, args, kwargs)``, consistent at one instant."""
        with self._calls_lock:
            return dict(self.calls)

    def task_frequency(self, task_id: str, window_minutes: float) -> float:
        """Reads per minute of any key of the task ``task_id`` in the last ``window_minutes``."""
        return self.task_usage.get_access_frequency(task_id, window_minutes)
