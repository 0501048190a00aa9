"""The tasks an engine warms: their records, their schedules, and the interval policy.

A :class:`TaskRecord` is a registered :class:`~dogpile_warm.task.WarmingTask`
with what the engine has seen of it (runs, failures) and its schedule. The
schedule lives on the record: the user's task keeps the interval it was
created with, whatever the scheduler or the interval policy decide.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._core import forks
from ..reports import ScheduleChange, ScheduleReport, TaskDetails

if TYPE_CHECKING:
    from dogpile.cache import CacheRegion

    from .._cached.cached import CachedFunction
    from ..task import WarmingTask

__all__ = ["TaskRecord", "TaskRegistry", "interval_for"]


@dataclass(eq=False)
class TaskRecord:
    """A registered task with its schedule and what the engine has seen of it.

    ``source`` is the decorated function of a task made by ``@warmable``
    (None for a plain task). ``interval_minutes`` starts as the task's own and
    is what the scheduler and :meth:`TaskRegistry.adapt_intervals` change.
    """

    task: WarmingTask
    critical: bool
    source: CachedFunction | None = None
    interval_minutes: float = 60.0
    runs: int = 0
    failures: int = 0
    total_duration_ms: float = 0.0
    last_run: float | None = None
    next_run: float | None = None
    consecutive_failures: int = 0  # scheduled warmings in a row that failed (for backoff)
    _lock: threading.Lock = field(default_factory=forks.new_lock, repr=False)

    def record_run(self, success: bool, duration_ms: float, now: float) -> None:
        with self._lock:
            self.runs += 1
            if not success:
                self.failures += 1
            self.total_duration_ms += duration_ms
            self.last_run = now

    def warmed_elsewhere(self, now: float) -> None:
        """Another process of the fleet warmed this task at about ``now``: it is not
        "never warmed" here any more."""
        with self._lock:
            if self.last_run is None:
                self.last_run = now

    def details(self) -> TaskDetails:
        task = self.task
        with self._lock:
            runs, failures, total = self.runs, self.failures, self.total_duration_ms
            last_run, next_run = self.last_run, self.next_run
        return {
            "task_id": task.task_id,
            "name": task.name,
            "priority": task.priority,
            "tags": sorted(task.tags),
            "critical": self.critical,
            "runs": runs,
            "failures": failures,
            "avg_duration_ms": total / runs if runs else 0.0,
            "last_run": last_run,
            "next_run": next_run,
            "interval_minutes": self.interval_minutes,
            "consecutive_failures": self.consecutive_failures,
        }


class TaskRegistry:
    """The registered tasks of one engine, by ``task_id`` (thread-safe).

    ``clock`` is the engine's: it places each new task's first scheduled run
    one interval after its registration.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._records: dict[str, TaskRecord] = {}
        self._lock = forks.new_rlock()
        # The interval the scheduler was started with (None: never started): every
        # task's, also one registered later, and the longest the policy may set.
        self.ceiling_minutes: float | None = None

    def register(
        self,
        task: WarmingTask,
        critical: bool,
        *,
        source: CachedFunction | None = None,
        replace: bool = False,
    ) -> TaskRecord:
        """Add ``task``; ``ValueError`` if its id is taken, unless ``replace``."""
        with self._lock:
            if not replace and task.task_id in self._records:
                raise ValueError(f"a task with task_id {task.task_id!r} is already registered")
            interval = self.ceiling_minutes or task.interval_minutes
            record = TaskRecord(task, critical, source, interval_minutes=interval)
            record.next_run = self._clock() + interval * 60
            self._records[task.task_id] = record
            return record

    def unregister(self, task_id: str) -> bool:
        """Forget ``task_id``; True if it was registered."""
        with self._lock:
            return self._records.pop(task_id, None) is not None

    def get(self, task_id: str) -> TaskRecord | None:
        """The record of ``task_id``, or None."""
        return self._records.get(task_id)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._records

    def records(self) -> list[TaskRecord]:
        """Every record, highest priority first (registration order among equals)."""
        with self._lock:
            records = list(self._records.values())
        return sorted(records, key=lambda r: -r.task.priority)

    def snapshot(self) -> dict[str, TaskRecord]:
        """A copy of ``task_id -> record``, consistent at one instant."""
        with self._lock:
            return dict(self._records)

    def regions(self) -> list[CacheRegion | str]:
        """The regions tasks name (those using the default region are not listed)."""
        with self._lock:
            return [r.task.region for r in self._records.values() if r.task.region is not None]

    def set_intervals(self, minutes: float) -> None:
        """Give every task ``minutes`` as its interval, its next run one interval after
        its last (or after now, if it never ran); tasks registered later get it too, and
        :meth:`adapt_intervals` never sets a longer one."""
        now = self._clock()
        with self._lock:
            self.ceiling_minutes = minutes
            for record in self._records.values():
                record.interval_minutes = minutes
                record.next_run = (record.last_run or now) + minutes * 60

    def adapt_intervals(self, reads_per_minute: Callable[[str], float]) -> ScheduleReport:
        """Set each task's interval from how often it is read (:func:`interval_for`), at
        most the interval the scheduler was started with.

        ``reads_per_minute(task_id)`` answers for the last hour.
        """
        records = self.records()
        now = self._clock()
        ceiling = self.ceiling_minutes
        adjusted: list[ScheduleChange] = []
        for record in records:
            frequency = reads_per_minute(record.task.task_id)
            interval: float = interval_for(frequency)
            if ceiling is not None:
                interval = min(interval, ceiling)
            if interval != record.interval_minutes:
                adjusted.append(
                    {
                        "task_id": record.task.task_id,
                        "frequency": frequency,
                        "interval_minutes": interval,
                        "previous_interval_minutes": record.interval_minutes,
                    }
                )
                record.interval_minutes = interval
                record.next_run = (record.last_run or now) + interval * 60
        return {"tasks_optimized": len(records), "schedules_adjusted": adjusted}


def interval_for(reads_per_minute: float) -> int:
    """The warming interval, in minutes, for a task read ``reads_per_minute`` times:
    more than 1: 15; more than 0.5: 30; more than 0.1: 60; otherwise 120."""
    if reads_per_minute > 1:
        return 15
    if reads_per_minute > 0.5:
        return 30
    if reads_per_minute > 0.1:
        return 60
    return 120
