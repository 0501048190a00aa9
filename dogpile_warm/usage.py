"""What an engine learns from reads: counts, usage patterns, remembered calls, warm figures.

Every call through a decorated function reports one access (hit or miss).
The hit path only queues it; :meth:`Usage.drain` applies queued accesses in
batches to the hit and miss counters, the per-key tracker, the per-task
tracker and the warming figures. Everything that reads those drains first
(the trackers call :meth:`Usage.drain` before answering), so no reader ever
sees a count that is behind the calls that returned before it asked.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from .stats import AccessCounters, WarmingFigures
from .tracker import UsagePatternTracker

if TYPE_CHECKING:
    from .cached import CachedFunction

__all__ = ["Call", "Usage"]

# Queued accesses that make the thread queueing the last one apply them all.
_DRAIN_AT = 512
# Tasks the per-task tracker follows (a task is any key of one function).
_MAX_TASKS = 100_000

Call = tuple["CachedFunction", tuple[Any, ...], dict[str, Any]]

_key = itemgetter(1)
_hit = itemgetter(2)
_when = itemgetter(3)


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
        self._calls_lock = threading.Lock()
        # (function, key, hit, engine time) not yet applied
        self._queue: deque[tuple[CachedFunction, str, bool, float]] = deque()
        self._drain_lock = threading.Lock()
        self.tracker.pending = self.task_usage.pending = self.drain

    def record(self, cached: CachedFunction, key: str, hit: bool) -> None:
        """Queue one access (the hit path: an append, and a batch every ``_DRAIN_AT``)."""
        queue = self._queue
        queue.append((cached, key, hit, self.clock()))
        if len(queue) >= _DRAIN_AT:
            self.drain(wait=False)

    def drain(self, wait: bool = True) -> None:
        """Apply queued accesses. ``wait=False``: leave them if another thread is at it."""
        if not self._drain_lock.acquire(wait):
            return
        try:
            queue = self._queue
            # Only what is queued now: appenders may outpace a drainer.
            batch = [queue.popleft() for _ in range(len(queue))]
            if not batch:
                return
            hits = sum(map(_hit, batch))
            self.counters.add(hits, len(batch) - hits)
            # Grouped by key (a stable sort keeps each key's accesses in order),
            # so a skewed load costs one step per key, not per access.
            batch.sort(key=_key)
            per_key: list[tuple[str, list[float]]] = []
            per_task: dict[str, list[float]] = {}
            figures = self.figures
            for key, group in groupby(batch, _key):
                accesses = list(group)
                cached, _, hit, when = accesses[0]
                times = list(map(_when, accesses))
                per_key.append((key, times))
                task_times = per_task.get(cached.task.task_id)
                if task_times is None:
                    per_task[cached.task.task_id] = times.copy()
                else:
                    task_times.extend(times)
                # Only the first read after a warming decides its usefulness.
                figures.accessed(key, hit, when)
            self.tracker.record_grouped(per_key)
            self.task_usage.record_grouped(
                [(task_id, sorted(times)) for task_id, times in per_task.items()]
            )
        finally:
            self._drain_lock.release()

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

    def task_frequency(self, task_id: str, window_minutes: float) -> float:
        """Reads per minute of any key of the task ``task_id`` in the last ``window_minutes``."""
        return self.task_usage.get_access_frequency(task_id, window_minutes)

    def after_fork_in_child(self) -> None:
        """New locks: a lock another thread held at fork time stays held in the child."""
        for owner in (self.counters, self.tracker, self.task_usage, self.figures):
            owner._lock = threading.Lock()
        self._calls_lock = threading.Lock()
        self._drain_lock = threading.Lock()
